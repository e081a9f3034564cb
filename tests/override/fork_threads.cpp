// fork() while other threads allocate (run under LD_PRELOAD=libshardalloc.so).
//
// Worker threads allocate, hand blocks to each other and free them without
// pause while the main thread (and once a worker) forks. Each child, with a
// snapshot of a heap that other threads were in the middle of using,
// allocates and frees a lot, frees blocks the parent's threads allocated
// before the fork (remote frees into heaps whose threads do not exist in the
// child), runs threads of its own, and exits 0. A watchdog alarm turns a
// deadlock into a failure. The parent checks every child's status and its
// own blocks afterwards.
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "override_check.h"
#include "support/rng.h"

namespace {

constexpr int kWorkers = 4;
constexpr int kForks = 16;
constexpr int kInheritedPerWorker = 2000;

using shardtest::mix64;  // splitmix64 finaliser (tests/support/rng.h)

size_t pick_size(uint64_t r) {
  switch (r % 16) {
    case 0:
      return 8192 + r % 60000;  // medium
    case 1:
      return r % 64 == 1 ? 300000 + r % 500000 : 2000 + r % 6000;  // rarely huge
    default:
      return 1 + r % 512;  // small
  }
}

// A block with its size and a seed in its first bytes, so anyone can check it.
struct Header {
  size_t size;
  uint64_t seed;
};
void* make_block(uint64_t r) {
  const size_t n = sizeof(Header) + pick_size(r);
  auto* h = static_cast<Header*>(std::malloc(n));
  if (h == nullptr) return nullptr;
  h->size = n;
  h->seed = r;
  auto* b = reinterpret_cast<unsigned char*>(h + 1);
  const size_t body = n - sizeof(Header);
  for (size_t i = 0; i < body; i += 61) b[i] = static_cast<unsigned char>(r + i);
  if (body > 0) b[body - 1] = static_cast<unsigned char>(r ^ 0x5a);
  return h;
}
bool check_block(const void* p) {
  auto* h = static_cast<const Header*>(p);
  auto* b = reinterpret_cast<const unsigned char*>(h + 1);
  const size_t body = h->size - sizeof(Header);
  for (size_t i = 0; i < body; i += 61)
    if (b[i] != static_cast<unsigned char>(h->seed + i) && !(i == body - 1)) return false;
  return body == 0 || b[body - 1] == static_cast<unsigned char>(h->seed ^ 0x5a);
}

// Written by the workers before the first fork, read-only afterwards.
void* g_inherited[kWorkers][kInheritedPerWorker];

std::atomic<bool> g_stop{false};
std::atomic<int> g_ready{0};
std::atomic<long> g_worker_errors{0};
std::atomic<long> g_worker_ops{0};
// Blocks passed between workers (touched only by the workers and the parent;
// never by a child, which could inherit the mutex locked, nor by the child's
// exit: hence never destroyed).
std::mutex g_exchange_mu;
std::vector<void*>& g_exchange = *new std::vector<void*>;

// Child: lots of allocation with a live set, inherited frees, own threads.
[[noreturn]] void child_main(int id) {
  alarm(30);  // a deadlock becomes SIGALRM, reported by the parent
  int errors = 0;
  uint64_t r = mix64(uint64_t(id) * 7919 + 1);
  std::vector<void*> live(512, nullptr);
  for (int i = 0; i < 20000; ++i) {
    r = mix64(r);
    void*& slot = live[r % live.size()];
    if (slot != nullptr) {
      if (!check_block(slot)) ++errors;
      std::free(slot);
    }
    slot = make_block(r);
    if (slot == nullptr) ++errors;
  }
  // Remote frees into heaps of threads that do not exist here.
  for (int w = 0; w < kWorkers; ++w) {
    for (int i = id % 2; i < kInheritedPerWorker; i += 2) {
      if (!check_block(g_inherited[w][i])) ++errors;
      std::free(g_inherited[w][i]);
    }
  }
  // Threads of the child's own, freeing each other's blocks.
  std::vector<void*> handoff(4000);
  std::thread a([&] {
    uint64_t s = r;
    for (auto& p : handoff) p = make_block(s = mix64(s));
  });
  a.join();
  std::thread b([&] {
    for (void* p : handoff) {
      if (!check_block(p)) ++errors;
      std::free(p);
    }
  });
  b.join();
  std::string s;
  for (int i = 0; i < 2000; ++i) s += std::to_string(i);
  if (s.size() != 6890) ++errors;
  for (void* p : live) {
    if (p != nullptr && !check_block(p)) ++errors;
    std::free(p);
  }
  if (errors != 0)
    std::fprintf(stderr, "fork_threads: child %d: %d corrupted blocks\n", id, errors);
  std::exit(errors == 0 ? 0 : 3);
}

// Returns false (and says why) unless the child exited 0.
bool wait_child(pid_t pid, int id) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    std::perror("waitpid");
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFSIGNALED(status)) {
    std::fprintf(stderr, "fork_threads: FAIL: child %d killed by signal %d (%s)\n", id,
                 WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? "watchdog: deadlock?" : strsignal(WTERMSIG(status)));
  } else {
    std::fprintf(stderr, "fork_threads: FAIL: child %d exited with status %d\n", id,
                 WEXITSTATUS(status));
  }
  return false;
}

std::atomic<int> g_worker_fork_failures{0};
std::atomic<bool> g_worker_fork_done{false};

void worker(int w) {
  uint64_t r = mix64(uint64_t(w) + 100);
  for (int i = 0; i < kInheritedPerWorker; ++i) g_inherited[w][i] = make_block(r = mix64(r));
  g_ready.fetch_add(1);
  std::vector<void*> mine(256, nullptr);
  bool forked = false;
  while (!g_stop.load(std::memory_order_relaxed)) {
    for (int k = 0; k < 64; ++k) {
      r = mix64(r);
      void*& slot = mine[r % mine.size()];
      if (slot != nullptr) {
        if (!check_block(slot)) g_worker_errors.fetch_add(1);
        std::free(slot);
      }
      slot = make_block(r);
    }
    // Hand some blocks to other workers, free what they handed us.
    std::vector<void*> take;
    {
      std::lock_guard<std::mutex> lock(g_exchange_mu);
      take.swap(g_exchange);
      for (int k = 0; k < 16; ++k) g_exchange.push_back(make_block(r = mix64(r)));
    }
    for (void* p : take) {
      if (!check_block(p)) g_worker_errors.fetch_add(1);
      std::free(p);
    }
    g_worker_ops.fetch_add(80, std::memory_order_relaxed);
    // Keep allocating, but leave the CPUs some room for the children (2 cores).
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    // Worker 0 also forks once, from a non-main thread.
    if (w == 0 && !forked && g_worker_ops.load(std::memory_order_relaxed) > 200000) {
      forked = true;
      const pid_t pid = fork();
      if (pid == 0) child_main(1000);
      if (pid < 0 || !wait_child(pid, 1000)) g_worker_fork_failures.fetch_add(1);
      g_worker_fork_done = true;
    }
  }
  for (void* p : mine) {
    if (p != nullptr && !check_block(p)) g_worker_errors.fetch_add(1);
    std::free(p);
  }
}

}  // namespace

int main() {
  shardtest::require_override("fork_threads");
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) workers.emplace_back(worker, w);
  // Let every worker fill its inherited set and get going.
  while (g_ready.load() < kWorkers || g_worker_ops.load() < 40000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  int failures = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kForks; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      ++failures;
      continue;
    }
    if (pid == 0) child_main(i);
    if (!wait_child(pid, i)) ++failures;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Worker 0's own fork happens once enough work is done.
  while (!g_worker_fork_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  g_stop = true;
  for (auto& t : workers) t.join();
  for (void* p : g_exchange) {
    if (!check_block(p)) g_worker_errors.fetch_add(1);
    std::free(p);
  }
  for (auto& row : g_inherited) {
    for (void* p : row) {
      if (!check_block(p)) g_worker_errors.fetch_add(1);
      std::free(p);
    }
  }
  failures += g_worker_fork_failures.load();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (g_worker_errors.load() != 0) {
    std::fprintf(stderr, "fork_threads: FAIL: %ld corrupted blocks in the parent\n",
                 g_worker_errors.load());
    ++failures;
  }
  std::printf(
      "fork_threads: %d forks from main + 1 from a worker while %d threads allocated (%ld ops), "
      "%.2f s: %s\n",
      kForks, kWorkers, g_worker_ops.load(), secs, failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
