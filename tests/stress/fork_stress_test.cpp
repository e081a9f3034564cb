// fork() while other threads are in the middle of every protocol step
// (docs/protocols.md, "fork"): threads allocate and free remotely through a
// shared transfer array, churn huge blocks, and start short-lived threads
// that use first-class heaps and exit (giving their heaps back under a pin),
// while the main thread forks over and over. Every child checks its heap,
// destroys every first-class heap it can see, allocates and frees in every
// kind of heap, and must exit cleanly within a time limit.
//
// Before the fork gate a child hung now and then: a thread that exited while
// holding a first-class heap's pin left the count at 1 in the child, and
// shard_heap_destroy waited for it for ever.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "support/rng.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kHeaps = 4;
constexpr size_t kTransfer = 512;
constexpr size_t kRegionBytes = 16 * MiB;

std::atomic<shard_heap*> g_heaps[kHeaps];
std::atomic<int>
    g_heap_users[kHeaps];  // threads inside a call on g_heaps[i] (destroy waits for none)
std::atomic<void*> g_transfer[kTransfer];
std::atomic<bool> g_stop{false};
shard_region* g_region = nullptr;

// Process heap blocks handed between threads, so that most frees are remote
// and pages fill up (notifications) in heaps of other threads.
void transfer_worker(uint64_t seed) {
  Rng rng(seed);
  while (!g_stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 256; ++i) {
      const size_t size = rng.chance(2) ? 600 * KiB + rng.below(2 * MiB) : 16 + rng.below(2000);
      void* p = shard_malloc(size);
      if (p == nullptr) continue;
      std::memset(p, 0x5a, size < 64 ? size : 64);
      void* old = g_transfer[rng.below(kTransfer)].exchange(p, std::memory_order_acq_rel);
      shard_free(old);
    }
  }
}

// Short-lived threads, each using a first-class heap and exiting with its
// heap cache full (their exit gives the heaps back under a pin).
void heap_user(uint64_t seed) {
  Rng rng(seed);
  for (int k = 0; k < 3; ++k) {
    const size_t i = rng.below(kHeaps);
    // seq_cst, with the cycler's exchange and load: it sees us, or we see null.
    g_heap_users[i].fetch_add(1);
    if (shard_heap* h = g_heaps[i].load()) {
      // Pages of many classes: giving the heap back at exit takes a while.
      void* blocks[48];
      for (auto& p : blocks) p = shard_heap_malloc(h, 16 + rng.below(12000));
      for (void* p : blocks) shard_heap_free(h, p);
    }
    g_heap_users[i].fetch_sub(1);
  }
  void* r = nullptr;
  if (shard_region_alloc(g_region, 64 + rng.below(3000), 16, &r) == SHARD_OK)
    shard_region_dealloc(g_region, r, 1, 16);
}

void churn_threads(uint64_t seed) {
  Rng rng(seed);
  while (!g_stop.load(std::memory_order_relaxed)) {
    std::thread t(heap_user, rng.next());
    t.join();
  }
}

// First-class heaps made and destroyed all the time (a destroy waits for pins).
void heap_cycler(uint64_t seed) {
  Rng rng(seed);
  while (!g_stop.load(std::memory_order_relaxed)) {
    const size_t i = rng.below(kHeaps);
    shard_heap* old = g_heaps[i].exchange(nullptr);
    while (g_heap_users[i].load() != 0) std::this_thread::yield();  // no call on the heap in flight
    if (old != nullptr) shard_heap_destroy(old);
    g_heaps[i].store(shard_heap_new(), std::memory_order_release);
  }
}

// The child: only async-signal-safe work and the allocator. Exit status 0
// when everything worked.
[[noreturn]] void child() {
  shard_check_heap();
  for (auto& slot : g_heaps) {
    if (shard_heap* h = slot.exchange(nullptr))
      shard_heap_destroy(h);  // hangs on a pin of a vanished thread
  }
  for (auto& slot : g_transfer) shard_free(slot.exchange(nullptr));
  void* blocks[64];
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < 64; ++i) {
      blocks[i] = shard_malloc(i % 8 == 0 ? 700 * KiB : 8 + 24 * i);
      if (blocks[i] == nullptr) _exit(2);
      std::memset(blocks[i], int(i), 8);
    }
    for (size_t i = 0; i < 64; ++i) shard_free(blocks[i]);
  }
  void* r = nullptr;
  if (shard_region_alloc(g_region, 1000, 16, &r) != SHARD_OK) _exit(3);
  if (shard_region_dealloc(g_region, r, 1000, 16) != SHARD_OK) _exit(4);
  shard_heap* h = shard_heap_new();
  if (h == nullptr) _exit(5);
  void* q = shard_heap_malloc(h, 100);
  if (q == nullptr) _exit(6);
  shard_heap_free(h, q);
  shard_heap_destroy(h);
  shard_check_heap();
  _exit(0);
}

// Waits for pid at most `limit`; kills it when it does not exit in time.
// Returns its exit status, or -1 when it hung.
int wait_with_limit(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  int status = 0;
  for (;;) {
    const pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(ForkStress, F01toF09_ChildrenOfABusyProcessWorkAndExit) {
  // qemu-user (tools/cross-test) forks its own emulator threads' state too:
  // children of a process this busy stall in qemu's locks, not in ours.
  if (std::getenv("SHARDALLOC_UNDER_QEMU") != nullptr)
    GTEST_SKIP() << "fork of a busy process under qemu-user";
  ASSERT_EQ(shard_region_init(&g_region, map_memory(kRegionBytes), kRegionBytes), SHARD_OK);
  for (auto& h : g_heaps) h.store(shard_heap_new());
  std::vector<std::thread> threads;
  threads.emplace_back(transfer_worker, 1);
  threads.emplace_back(transfer_worker, 2);
  threads.emplace_back(churn_threads, 3);
  threads.emplace_back(churn_threads, 4);
  threads.emplace_back(churn_threads, 6);
  threads.emplace_back(heap_cycler, 5);

  const size_t forks = scaled(150, stress_scale() * sanitizer_factor(), 40);
  size_t hung = 0, failed = 0;
  for (size_t i = 0; i < forks; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child();
    const int status = wait_with_limit(pid, std::chrono::seconds(10));
    if (status == -1) {
      ++hung;
    } else if (status != 0) {
      ++failed;
      std::printf("child %zu exited with status %d\n", i, status);
    }
  }
  g_stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(hung, 0u) << "children that did not exit within 10 s";
  EXPECT_EQ(failed, 0u);
  std::printf("%zu forks, %zu hung, %zu failed\n", forks, hung, failed);
  for (auto& slot : g_transfer) shard_free(slot.exchange(nullptr));
  for (auto& h : g_heaps) shard_heap_destroy(h.exchange(nullptr));
}

// F10: a prepare handler registered before the library's runs after it and
// takes a lock that another thread holds while it allocates. Steps never wait
// for a fork, so that thread finishes and the fork goes on. (When steps
// waited at a closed gate, this deadlocked 3 times in 3.)
pthread_mutex_t g_app_lock = PTHREAD_MUTEX_INITIALIZER;
void lock_app() { pthread_mutex_lock(&g_app_lock); }
void unlock_app() { pthread_mutex_unlock(&g_app_lock); }
__attribute__((constructor(101))) void register_app_fork_handlers() {
  pthread_atfork(&lock_app, &unlock_app, &unlock_app);
}

TEST(ForkStress, F10_AThreadAllocatingUnderALockThatForkTakesDoesNotDeadlock) {
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load()) {
      pthread_mutex_lock(&g_app_lock);
      void* p = shard_malloc(MiB);  // claims and releases slots: steps
      shard_free(p);
      pthread_mutex_unlock(&g_app_lock);
    }
  });
  const size_t forks = scaled(100, stress_scale() * sanitizer_factor(), 20);
  size_t hung = 0;
  std::atomic<bool> forking_done{false};
  std::thread watchdog([&] {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (!forking_done.load() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!forking_done.load()) {
      std::fprintf(stderr, "fork deadlocked\n");
      std::_Exit(3);
    }
  });
  for (size_t i = 0; i < forks; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      shard_free(shard_malloc(100));
      _exit(0);
    }
    if (wait_with_limit(pid, std::chrono::seconds(10)) != 0) ++hung;
  }
  forking_done.store(true);
  stop.store(true);
  worker.join();
  watchdog.join();
  EXPECT_EQ(hung, 0u);
}

// F12: a child of _Fork() (no atfork handlers ran: it inherits the parent's
// count of steps in flight) forks again; the fork must not wait for steps of
// threads it does not have.
TEST(ForkStress, F12_AChildOfUnderscoreForkForksAgain) {
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load()) shard_free(shard_malloc(MiB));
  });
  const size_t rounds = scaled(100, stress_scale() * sanitizer_factor(), 20);
  size_t slow = 0;
  for (size_t i = 0; i < rounds; ++i) {
    const pid_t pid = _Fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The bounded wait would take 200 ms at every fork of this child (the
      // stale count stays); a reset count takes none. The faster of two
      // forks, so that a loaded machine (qemu-user) is not read as a wait.
      auto fastest = std::chrono::steady_clock::duration::max();
      for (int k = 0; k < 2; ++k) {
        const auto start = Clock::now();
        const pid_t grandchild = fork();
        if (grandchild == 0) _exit(0);
        int status = 0;
        waitpid(grandchild, &status, 0);
        fastest = std::min<std::chrono::steady_clock::duration>(fastest, Clock::now() - start);
      }
      _exit(fastest < std::chrono::milliseconds(150) ? 0 : 1);
    }
    const int status = wait_with_limit(pid, std::chrono::seconds(10));
    if (status != 0) ++slow;
  }
  stop.store(true);
  worker.join();
  EXPECT_EQ(slow, 0u) << "children whose fork waited for steps of vanished threads (or hung)";
}

// F13: a signal handler forks, again and again, while its own thread is in
// and out of steps (a huge block's claim and free are steps). A fork waits
// for steps of other threads, never for its own thread's: a signal that
// landed between a step's count and its depth update made the fork wait
// its full 200 ms for the step it had interrupted, and with a timer faster
// than that a signal was always pending when the handler returned, so the
// thread never got past that instruction (a review: every run stalled after
// 25-117 forks).
namespace f13 {
std::atomic<uint64_t> g_progress{0};
uint64_t g_progress_at_fork = UINT64_MAX;
int g_stalled_forks = 0;  // in a row, each over 150 ms with no progress between

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

void fork_in_handler(int) {
  const int saved = errno;
  const uint64_t start = now_ms();
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  const uint64_t progress = g_progress.load(std::memory_order_relaxed);
  const bool stalled = now_ms() - start > 150 && progress == g_progress_at_fork;
  g_stalled_forks = stalled ? g_stalled_forks + 1 : 0;
  g_progress_at_fork = progress;
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  if (g_stalled_forks >= 10) _exit(2);  // 1.5 s and more without one step of the loop
  errno = saved;
}
}  // namespace f13

TEST(ForkStress, F13_AForkInAHandlerDoesNotWaitForItsOwnThreadsStep) {
  if (std::getenv("SHARDALLOC_UNDER_QEMU") != nullptr)
    GTEST_SKIP() << "a fork every 3 ms under qemu-user";
  const pid_t pid = fork();  // the timer and its children stay out of the test process
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct sigaction sa {};
    sa.sa_handler = &f13::fork_in_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, nullptr);
    const itimerval every_3ms{{0, 3000}, {0, 3000}};
    setitimer(ITIMER_REAL, &every_3ms, nullptr);
    const uint64_t end = f13::now_ms() + 2000;
    while (f13::now_ms() < end) {
      void* volatile p = shard_malloc(300 * KiB);  // a huge block: claim and free are steps
      static_cast<char*>(p)[0] = 1;
      shard_free(p);
      f13::g_progress.fetch_add(1, std::memory_order_relaxed);
    }
    const itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    _exit(0);
  }
  EXPECT_EQ(wait_with_limit(pid, std::chrono::seconds(60)), 0)
      << "2: forks from the handler stalled its thread (-1: the child hung)";
}

// F14: threads that replace huge blocks without pause (a claim and a free
// are steps) while the main thread forks. The fork waits for the steps
// under way when it starts, not for a moment when no thread is in any: it
// waited for the count to read zero, which a stream of steps from two or
// more threads never showed, so every fork took its full 200 ms (a review:
// 19 of 20 forks, 3 threads; glibc 20 ms).
TEST(ForkStress, F14_StepsOfOtherThreadsDoNotStarveTheFork) {
  if (std::getenv("SHARDALLOC_UNDER_QEMU") != nullptr)
    GTEST_SKIP() << "fork of a busy process under qemu-user";
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (uint64_t t = 0; t < 3; ++t) {
    workers.emplace_back([&stop, t] {
      Rng rng(t + 14);
      while (!stop.load(std::memory_order_relaxed)) {
        void* volatile p = shard_malloc((rng.below(64) + 1) * 128 * KiB);
        if (p != nullptr) static_cast<char*>(p)[0] = 1;
        shard_free(p);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Two threads fork at once too: glibc runs their prepare handlers at the
  // same time (a review: a step that entered before one fork's flip was cut
  // when the other fork's flip came between its read and its own flip).
  constexpr int kForks = 20;
  std::atomic<int> slow{0};
  std::atomic<int> failed{0};
  auto forker = [&] {
    for (int i = 0; i < kForks; ++i) {
      const auto start = Clock::now();
      const pid_t pid = fork();
      if (pid == 0) _exit(0);
      const auto took = Clock::now() - start;
      if (pid < 0 || wait_with_limit(pid, std::chrono::seconds(10)) != 0) ++failed;
      if (took > std::chrono::milliseconds(150)) ++slow;
    }
  };
  std::thread second(forker);
  forker();
  second.join();
  stop.store(true);
  for (auto& w : workers) w.join();
  EXPECT_EQ(failed.load(), 0);
  // A loaded machine may stretch a fork or two; the starved gate took 200 ms at every one.
  EXPECT_LE(slow.load(), 4) << "forks (of " << 2 * kForks << ") that waited the gate's full bound";
}

}  // namespace
