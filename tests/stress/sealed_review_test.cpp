// Review of sealed pages (protocol 3 of docs/protocols.md): short-lived
// threads allocate (plain, aligned, medium, large, now and then huge blocks)
// and exit at once, so their heaps are abandoned, adopted and abandoned again
// in quick succession while long-lived threads free their blocks remotely
// (countdowns, completing frees that reclaim unowned heaps), signal handlers
// free blocks of other threads' heaps and allocate (borrowed heaps) at any
// instruction, huge allocations drive the periodic sweeps, and now and then a
// thread forks (the child frees and allocates, then exits).
//
// Checked: every block keeps its contents until freed; no fatal error; every
// fork child finishes; at the end no block is live (every countdown reached
// zero exactly once), no heap is owned and abandoned heaps hold no segment
// (every page came back).
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/rng.h"
#include "support/snapshot_support.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

struct Item {
  void* p;
  uint32_t size;
};

uint64_t tag_of(const void* p, size_t size) {
  return reinterpret_cast<uintptr_t>(p) * 0x9e3779b97f4a7c15ull ^ size;
}

void stamp(void* p, size_t size) {
  auto* w = static_cast<uint64_t*>(p);
  w[0] = tag_of(p, size);
  if (size >= 16) w[(size / 8) - 1] = ~tag_of(p, size);
}

bool intact(const Item& it) {
  const auto* w = static_cast<const uint64_t*>(it.p);
  if (w[0] != tag_of(it.p, it.size)) return false;
  if (it.size >= 16 && w[(it.size / 8) - 1] != ~tag_of(it.p, it.size)) return false;
  return true;
}

// The pool the long-lived threads free from.
std::mutex g_pool_lock;
std::vector<Item> g_pool;

// Blocks handed to signal handlers: a handler takes one (exchange) and frees it.
constexpr int kMailboxes = 64;
std::atomic<void*> g_mailbox[kMailboxes];
std::atomic<uint64_t> g_handler_errors{0};
std::atomic<uint64_t> g_handler_frees{0};

void handler(int) {
  const int saved = errno;
  static std::atomic<unsigned> cursor{0};
  const unsigned start = cursor.fetch_add(7, std::memory_order_relaxed);
  for (int k = 0; k < 4; ++k) {
    void* p = g_mailbox[(start + unsigned(k)) % kMailboxes].exchange(nullptr);
    if (p == nullptr) continue;
    if (*static_cast<uint64_t*>(p) != tag_of(p, 64)) g_handler_errors.fetch_add(1);
    shard_free(p);
    g_handler_frees.fetch_add(1, std::memory_order_relaxed);
  }
  void* q = shard_malloc(48);  // a borrowed heap when the thread is in a call
  if (q == nullptr) {
    g_handler_errors.fetch_add(1);
  } else {
    static_cast<volatile char*>(q)[0] = 1;
    shard_free(q);
  }
  errno = saved;
}

size_t pick_size(uint64_t r) {
  switch (r % 64) {
    case 0:
      return 20000 + (r >> 8) % 12000;  // medium
    case 1:
      return 40000 + (r >> 8) % 80000;  // large
    default:
      return 16 + ((r >> 8) % 1000) / 8 * 8;
  }
}

TEST(SealedPagesReview, ShortLivedThreadsRemoteFreersHandlersSweepsAndForks) {
#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
  GTEST_SKIP() << "checked mode keeps each freeing thread's last 256 frees in its quarantine, so "
                  "pages complete only when later frees push them out or the thread exits";
#endif
  struct sigaction sa {};
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  shard_free(shard_malloc(64));
  shard_stats before;
  shard_stats_get(&before);

  const int rounds = int(scaled(3000, stress_scale(), 100));
  std::atomic<bool> done{false};
  std::atomic<int> fork_failures{0};
  std::atomic<int> forks{0};
  std::atomic<int> corrupt{0};

  // Long-lived freers: take blocks from the pool, check and free them; now
  // and then a huge block (slow path: sweeps) or a fork.
  std::vector<pthread_t> freer_ids(2);
  std::vector<std::thread> freers;
  std::atomic<int> freers_ready{0};
  for (int f = 0; f < 2; ++f) {
    freers.emplace_back([&, f] {
      freer_ids[size_t(f)] = pthread_self();
      freers_ready.fetch_add(1);
      uint64_t r = mix64(uint64_t(f) + 99);
      for (uint64_t n = 0;; ++n) {
        std::vector<Item> batch;
        {
          std::lock_guard<std::mutex> g(g_pool_lock);
          const size_t take = g_pool.size() < 16 ? g_pool.size() : 16;
          batch.assign(g_pool.end() - long(take), g_pool.end());
          g_pool.resize(g_pool.size() - take);
        }
        if (batch.empty()) {
          if (done.load()) break;
          std::this_thread::yield();
          continue;
        }
        for (const Item& it : batch) {
          if (!intact(it)) corrupt.fetch_add(1);
          r = mix64(r);
          if (r % 50 == 0) {
            void* q = shard_realloc(it.p, it.size + 100);
            if (q == nullptr) {
              corrupt.fetch_add(1);
              continue;
            }
            if (*static_cast<uint64_t*>(q) != tag_of(it.p, it.size)) corrupt.fetch_add(1);
            shard_free(q);
          } else {
            shard_free(it.p);
          }
        }
        if (n % 64 == 0) shard_free(shard_malloc(3 * MiB));  // slow path: sweeps every 200 ms
        if (f == 0 && n % 128 == 127) {
          const pid_t pid = fork();
          if (pid == 0) {
            // The child: frees its copies of a few pool blocks, allocates, exits.
            // Nothing from the system allocator here: another thread may have
            // held its lock at the fork (ASan's did: a child stuck in a
            // std::vector's operator new, 3 runs of 31 at load 8).
            int bad = 0;
            void* mine[200];
            for (int i = 0; i < 200; ++i) {
              void* p = shard_malloc(16 + size_t(i) * 8);
              if (p == nullptr) bad = 1;
              mine[i] = p;
            }
            for (void* p : mine) shard_free(p);
            // (The pool's lock may be copied held by another thread: then skip.)
            if (g_pool_lock.try_lock()) {
              for (size_t i = 0; i < g_pool.size() && i < 64; ++i) shard_free(g_pool[i].p);
            }
            _exit(bad);
          }
          forks.fetch_add(1);
          if (pid < 0) {
            fork_failures.fetch_add(1);
          } else {
            int status = 0;
            int waited = 0;
            while (waitpid(pid, &status, WNOHANG) == 0 && waited < 20000) {
              usleep(1000);
              ++waited;
            }
            if (waited >= 20000) {
              kill(pid, SIGKILL);
              waitpid(pid, &status, 0);
              fork_failures.fetch_add(1);
              std::fprintf(stderr, "fork child %d: stuck for 20 s\n", int(pid));
            } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
              fork_failures.fetch_add(1);
              std::fprintf(stderr, "fork child %d: %s %d\n", int(pid),
                           WIFEXITED(status) ? "exit" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            }
          }
        }
      }
    });
  }
  while (freers_ready.load() != 2) std::this_thread::yield();

  // A signal source: interrupts the freers at random points.
  std::thread signaller([&] {
    uint64_t r = 5;
    while (!done.load()) {
      r = mix64(r);
      pthread_kill(freer_ids[r % 2], SIGUSR1);
      std::this_thread::sleep_for(std::chrono::microseconds(50 + r % 200));
    }
  });

  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t) {
      ts.emplace_back([round, t] {
        uint64_t r = mix64(uint64_t(round) * 31 + uint64_t(t) + 1);
        std::vector<Item> keep;
        const int count = 100 + int(r % 300);
        for (int i = 0; i < count; ++i) {
          r = mix64(r);
          size_t n = pick_size(r);
          void* p;
          if (r % 7 == 0) {
            p = shard_malloc_aligned(n, size_t{64} << (r >> 20) % 4);
          } else if (r % 1000 == 3) {
            n = 2 * MiB + (r >> 12) % MiB;
            p = shard_malloc(n);
          } else {
            p = shard_malloc(n);
          }
          if (p == nullptr) std::abort();
          stamp(p, n);
          keep.push_back({p, uint32_t(n)});
        }
        // Some for the handlers, some freed here, the rest for the freers.
        for (Item& it : keep) {
          r = mix64(r);
          if (r % 5 == 0) {
            void* m = shard_malloc(64);
            stamp(m, 64);
            void* old = g_mailbox[r % kMailboxes].exchange(m);
            if (old != nullptr) shard_free(old);
          }
          if (r % 3 == 0) {
            shard_free(it.p);
            it.p = nullptr;
          }
        }
        std::lock_guard<std::mutex> g(g_pool_lock);
        for (const Item& it : keep) {
          if (it.p != nullptr) g_pool.push_back(it);
        }
      });  // exits at once: its heap is abandoned with live blocks
    }
    for (auto& t : ts) t.join();
  }
  done.store(true);
  signaller.join();
  for (auto& t : freers) t.join();
  for (auto& m : g_mailbox) {
    if (void* p = m.exchange(nullptr)) shard_free(p);
  }
  std::printf("forks %d, handler frees %llu\n", forks.load(),
              (unsigned long long)g_handler_frees.load());
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(g_handler_errors.load(), 0u);
  EXPECT_EQ(fork_failures.load(), 0);
  shard_stats after;
  shard_stats_get(&after);
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  if (abandoned_segments(shardtest::process_snapshot()) != 0 ||
      after.live_blocks != before.live_blocks) {
    // What is left: the abandoned heaps' slots and their pages in use.
    std::string snap(shard_heap_snapshot(nullptr, 0) + 1, '\0');
    snap.resize(shard_heap_snapshot(snap.data(), snap.size()));
    bool in_abandoned = false;
    size_t at = 0;
    while (at < snap.size()) {
      size_t end = snap.find('\n', at);
      if (end == std::string::npos) end = snap.size();
      const std::string line = snap.substr(at, end - at);
      at = end + 1;
      if (line.rfind("heap ", 0) == 0 && line.find("abandoned=1") != std::string::npos &&
          line.find("segments=0") == std::string::npos) {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      if (line.rfind("slot ", 0) == 0) in_abandoned = line.find("abandoned=1") != std::string::npos;
      if (in_abandoned) std::fprintf(stderr, "  %s\n", line.c_str());
    }
  }
  EXPECT_EQ(abandoned_segments(shardtest::process_snapshot()), 0u)
      << "pages left in abandoned heaps with no live block";
  EXPECT_EQ(after.heaps_owned, before.heaps_owned) << "a heap stayed owned";
}

}  // namespace
