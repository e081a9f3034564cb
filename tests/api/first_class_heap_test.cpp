// First-class heaps (include/shardalloc/heap.h): malloc semantics within a
// heap, destroy (everything at once, memory given back, records reused),
// many threads on one heap, threads that outlive or exit during a destroy,
// shard_free of a heap's blocks, heaps bound to a region (exact region
// accounting), the C++ wrapper, and the fatal errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory_resource>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/checked.h"
#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/shardalloc.hpp"
#include "shardalloc/stats.h"
#include "support/address_space.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

#if defined(SHARDTEST_TSAN) || defined(SHARDTEST_ASAN)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

struct Live {
  void* p;
  size_t size;
  uint64_t seed;
};

// Sizes across every kind of page: small, medium, large, huge.
const size_t kSizes[] = {0,     1,     7,      8,      15,     16,      24,     100,
                         1000,  1024,  1025,   4096,   8192,   8193,    10000,  32768,
                         32769, 65536, 131072, 131073, 500000, 1 << 20, 3 << 20};

size_t used(const shard_heap* h) { return shard_heap_used_bytes(h); }

// Fills n bytes of p with the pattern of `seed` (sparse for big blocks).
void fill(void* p, size_t n, uint64_t seed) {
  if (n > 64 * KiB) {
    fill_sparse(p, n, seed);
  } else {
    fill_pattern(p, n, seed);
  }
}
bool intact(const void* p, size_t n, uint64_t seed) {
  return n > 64 * KiB ? check_sparse(p, n, seed) : check_pattern(p, n, seed) == SIZE_MAX;
}

// ---------------------------------------------------------------------------
// malloc semantics within one heap

TEST(FirstClassHeap, MallocAndFreeEverySizeWithPatterns) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(used(h), 0u);
  std::vector<Live> live;
  uint64_t seed = 1;
  size_t asked = 0;
  for (int round = 0; round < 3; ++round) {
    for (size_t size : kSizes) {
      void* p = shard_heap_malloc(h, size);
      ASSERT_NE(p, nullptr) << size;
      if (size >= 16) {
        EXPECT_TRUE(is_aligned(p, 16)) << size;
      }
      EXPECT_GE(shard_usable_size(p), size);
      fill(p, size, seed);
      live.push_back({p, size, seed++});
      asked += size;
    }
  }
  EXPECT_GE(used(h), asked);
  for (const Live& b : live) EXPECT_TRUE(intact(b.p, b.size, b.seed)) << b.size;
  // Free in an order other than allocation, checking the others stay intact.
  std::reverse(live.begin(), live.end());
  for (size_t i = 0; i < live.size(); i += 2) shard_heap_free(h, live[i].p);
  for (size_t i = 1; i < live.size(); i += 2) {
    EXPECT_TRUE(intact(live[i].p, live[i].size, live[i].seed)) << live[i].size;
    shard_heap_free(h, live[i].p);
  }
  EXPECT_EQ(used(h), 0u);
  shard_heap_free(h, nullptr);  // nothing
  shard_heap_destroy(h);
}

TEST(FirstClassHeap, CallocZeroesReusedMemoryAndRejectsOverflow) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  for (size_t size : {size_t{24}, size_t{3000}, size_t{40000}, size_t{2} << 20}) {
    void* dirty = shard_heap_malloc(h, size);
    ASSERT_NE(dirty, nullptr);
    std::memset(dirty, 0xab, size);
    shard_heap_free(h, dirty);
    auto* c = static_cast<unsigned char*>(shard_heap_calloc(h, 1, size));
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(std::all_of(c, c + size, [](unsigned char x) { return x == 0; })) << size;
    shard_heap_free(h, c);
  }
  errno = 0;
  EXPECT_EQ(shard_heap_calloc(h, SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(shard_heap_calloc(h, size_t{1} << 32, size_t{1} << 32), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
}

TEST(FirstClassHeap, AlignedAllocations) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  std::vector<Live> live;
  uint64_t seed = 7;
  for (size_t align = 1; align <= (size_t{4} << 20); align <<= 1) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{24}, size_t{200}, size_t{5000}, size_t{70000},
                        size_t{600000}}) {
      void* p = shard_heap_malloc_aligned(h, size, align);
      ASSERT_NE(p, nullptr) << size << " align " << align;
      EXPECT_TRUE(is_aligned(p, align)) << p << " align " << align;
      fill(p, size, seed);
      live.push_back({p, size, seed++});
    }
  }
  for (const Live& b : live) {
    EXPECT_TRUE(intact(b.p, b.size, b.seed));
    shard_heap_free(h, b.p);
  }
  EXPECT_EQ(used(h), 0u);
  for (size_t bad : {size_t{0}, size_t{3}, size_t{24}, size_t{1000}}) {
    errno = 0;
    EXPECT_EQ(shard_heap_malloc_aligned(h, 64, bad), nullptr) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
  errno = 0;
  EXPECT_EQ(shard_heap_malloc_aligned(h, 64, size_t{1} << 63), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  shard_heap_destroy(h);
}

TEST(FirstClassHeap, ReallocKeepsContentsAcrossEveryKind) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  void* p = shard_heap_realloc(h, nullptr, 8);  // realloc(NULL) allocates
  ASSERT_NE(p, nullptr);
  const uint64_t base = 0x1234567;
  size_t size = 8;
  fill_with_base(p, size, base);
  // Grow through small, medium, large and huge, then shrink back.
  std::vector<size_t> steps = {24,     100,     1000,   9000, 40000, 130000,
                               700000, 3 << 20, 200000, 5000, 64,    8};
  for (size_t next : steps) {
    void* q = shard_heap_realloc(h, p, next);
    ASSERT_NE(q, nullptr) << next;
    const size_t kept = std::min(size, next) & ~size_t{7};  // whole words keep the pattern
    EXPECT_EQ(check_with_base(q, kept, base), SIZE_MAX) << size << " -> " << next;
    fill_with_base(q, next, base);
    p = q;
    size = next;
  }
  // Failure leaves p untouched.
  errno = 0;
  EXPECT_EQ(shard_heap_realloc(h, p, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(check_with_base(p, size, base), SIZE_MAX);
  // realloc(p, 0) frees p and returns NULL.
  EXPECT_EQ(shard_heap_realloc(h, p, 0), nullptr);
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
}

// A realloc that shrinks a block by less than half keeps it in ordinary
// builds; checked builds move it, as shard_realloc does, so that its usable
// size is the new size and the bytes past it are checked at free (a review:
// a first-class heap kept the block and its old size record).
TEST(FirstClassHeap, AShrinkingReallocKeepsTheBlockButInCheckedBuilds) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  for (const size_t first : {size_t{1000}, size_t{700000}}) {
    void* p = shard_heap_malloc(h, first);
    ASSERT_NE(p, nullptr);
    const size_t smaller = shard_usable_size(p) * 6 / 10;  // over half of what p holds
    ASSERT_LE(smaller, first);
    fill_with_base(p, first, 0xabc);
    void* q = shard_heap_realloc(h, p, smaller);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(check_with_base(q, smaller & ~size_t{7}, 0xabc), SIZE_MAX) << first;
    if (shardalloc::core::kChecked) {
      EXPECT_NE(q, p) << first;
      EXPECT_EQ(shard_usable_size(q), smaller) << first;
    } else {
      EXPECT_EQ(q, p) << first;
    }
    shard_heap_free(h, q);
  }
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
}

TEST(FirstClassHeap, ImpossibleRequestsAndNullArguments) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  for (size_t size : {SIZE_MAX, size_t(PTRDIFF_MAX), (size_t{1} << 62) + 1}) {
    errno = 0;
    EXPECT_EQ(shard_heap_malloc(h, size), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM);
  }
  void* p = shard_heap_malloc(h, 100);  // the heap keeps working
  ASSERT_NE(p, nullptr);
  shard_heap_free(h, p);

  errno = 0;
  EXPECT_EQ(shard_heap_malloc(nullptr, 8), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(shard_heap_calloc(nullptr, 1, 8), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(shard_heap_malloc_aligned(nullptr, 8, 64), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(shard_heap_realloc(nullptr, nullptr, 8), nullptr);
  EXPECT_EQ(errno, EINVAL);
  shard_heap_free(nullptr, nullptr);
  shard_heap_destroy(nullptr);
  EXPECT_EQ(shard_heap_used_bytes(nullptr), 0u);
  shard_stats s;
  EXPECT_EQ(shard_heap_stats(nullptr, &s), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_heap_stats(h, nullptr), SHARD_INVALID_PARAM);
  // Success does not touch errno.
  errno = 12345;
  p = shard_heap_malloc(h, 50);
  EXPECT_EQ(errno, 12345);
  shard_heap_free(h, p);
  shard_heap_destroy(h);
}

// ---------------------------------------------------------------------------
// destroy

TEST(FirstClassHeap, DestroyWithLiveBlocksUnmapsEverything) {
  const size_t mib = kSanitized ? 48 : 192;
  // The first heap's record maps the process domain's first arena (records
  // live in its metadata, for good): make it before measuring.
  shard_heap_destroy(shard_heap_new());
  const ProcMemory before = proc_memory();
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  size_t total = 0;
  for (size_t i = 0; total < mib * MiB; ++i) {
    const size_t size = i % 16 == 0 ? 2 * MiB + i : 16 + (i * 37) % 30000;
    void* p = shard_heap_malloc(h, size);
    ASSERT_NE(p, nullptr);
    std::memset(p, int(i), size);
    total += size;
  }
  EXPECT_GE(used(h), total);
  shard_stats s;
  ASSERT_EQ(shard_heap_stats(h, &s), SHARD_OK);
  EXPECT_GE(s.reserved_bytes, total);
  EXPECT_GE(s.arenas, 1u);
  const ProcMemory peak = proc_memory();
  EXPECT_GE(peak.vm, before.vm + total);
  shard_heap_destroy(h);  // every block still live: freed at once
  const ProcMemory after = proc_memory();
  std::printf("[ destroy ] VM %zu -> %zu -> %zu MiB, RSS %zu -> %zu -> %zu MiB\n", before.vm / MiB,
              peak.vm / MiB, after.vm / MiB, before.rss / MiB, peak.rss / MiB, after.rss / MiB);
  EXPECT_LE(after.vm, before.vm + 8 * MiB) << "the heap's arenas are unmapped";
  if (!kSanitized) {
    EXPECT_LE(after.rss, before.rss + 8 * MiB);
  }
}

TEST(FirstClassHeap, TwoHundredNewDestroyCyclesDoNotGrow) {
  std::set<shard_heap*> handles;
  size_t live_mapped = 0;  // while one heap is alive, at its largest
  auto cycle = [&](int i) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    handles.insert(h);
    EXPECT_EQ(used(h), 0u) << "a new heap starts empty, even on a reused record";
    std::vector<Live> live;
    for (size_t k = 0; k < 40; ++k) {
      const size_t size = k == 0 ? MiB + size_t(i) : 8 + (k * 997 + size_t(i)) % 20000;
      void* p = shard_heap_malloc(h, size);
      ASSERT_NE(p, nullptr);
      fill(p, size, uint64_t(i) * 100 + k);
      live.push_back({p, size, uint64_t(i) * 100 + k});
    }
    for (const Live& b : live) ASSERT_TRUE(intact(b.p, b.size, b.seed));
    if (i % 50 == 0) live_mapped = std::max(live_mapped, mapped_bytes());
    if (i % 2 == 0) {  // half the cycles free first, half drop everything at once
      for (const Live& b : live) shard_heap_free(h, b.p);
      EXPECT_EQ(used(h), 0u);
    }
    shard_heap_destroy(h);
  };
  for (int i = 0; i < 10; ++i) cycle(i);  // warm up: records, the process domain's metadata
  const ProcMemory warm = proc_memory();
  const size_t warm_mapped = mapped_bytes();
  live_mapped = 0;
  for (int i = 10; i < 210; ++i) cycle(i);
  const ProcMemory after = proc_memory();
  const size_t after_mapped = mapped_bytes();
  std::printf(
      "[ cycles ] mapped %zu -> %zu MiB (%zu with a heap alive), VM %zu -> %zu MiB, RSS %zu -> %zu "
      "MiB, "
      "%zu distinct handles\n",
      warm_mapped / MiB, after_mapped / MiB, live_mapped / MiB, warm.vm / MiB, after.vm / MiB,
      warm.rss / MiB, after.rss / MiB, handles.size());
  EXPECT_GE(live_mapped, warm_mapped + 64 * MiB) << "a live heap's arena shows in the mappings";
  EXPECT_LE(after_mapped, warm_mapped + 4 * MiB) << "every destroy unmaps what its heap mapped";
  // (RSS is not compared: under qemu-user statm counts qemu's own bookkeeping
  // of every guest address range it has seen; DestroyWithLiveBlocks checks RSS.)
  EXPECT_LE(handles.size(), 4u) << "records are reused";
}

TEST(FirstClassHeap, HeapsMadeAndDestroyedOnManyThreadsAtOnce) {
  const int threads = 4;
  const int cycles = int(scaled(60, stress_scale(), 6));
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int c = 0; c < cycles; ++c) {
        shard_heap* h = shard_heap_new();
        if (h == nullptr) {
          ++failures;
          return;
        }
        std::vector<Live> live;
        for (size_t k = 0; k < 30; ++k) {
          const size_t size = 16 + (k * 131 + size_t(t) * 7 + size_t(c)) % 5000;
          void* p = shard_heap_malloc(h, size);
          if (p == nullptr) {
            ++failures;
            break;
          }
          fill_pattern(p, size, k + 1000 * uint64_t(t));
          live.push_back({p, size, k + 1000 * uint64_t(t)});
        }
        for (const Live& b : live) {
          if (check_pattern(b.p, b.size, b.seed) != SIZE_MAX) ++failures;
        }
        if (c % 3 == 0) {
          for (const Live& b : live) shard_heap_free(h, b.p);
          if (used(h) != 0) ++failures;
        }
        shard_heap_destroy(h);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---------------------------------------------------------------------------
// threads

// Blocks handed between threads: each thread frees blocks other threads allocated.
struct Mailbox {
  std::mutex m;
  std::vector<Live> blocks;
  void put(const Live& b) {
    std::lock_guard<std::mutex> g(m);
    blocks.push_back(b);
  }
  bool take(Live* out) {
    std::lock_guard<std::mutex> g(m);
    if (blocks.empty()) return false;
    *out = blocks.back();
    blocks.pop_back();
    return true;
  }
  // After the threads: checks and frees into h every block still here.
  void drain_into(shard_heap* h) {
    Live b;
    while (take(&b)) {
      EXPECT_TRUE(intact(b.p, b.size, b.seed));
      shard_heap_free(h, b.p);
    }
  }
};

TEST(FirstClassHeap, ManyThreadsShareOneHeapWithCrossThreadFrees) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  const int threads = 8;
  const size_t ops = scaled(40000, stress_scale(), 2000);
  Mailbox mailbox;
  std::atomic<size_t> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      Rng rng(uint64_t(t) + 1);
      std::vector<Live> mine;
      for (size_t i = 0; i < ops; ++i) {
        const unsigned what = unsigned(rng.below(10));
        if (what < 5) {
          size_t size = rng.chance(2) ? 150000 + rng.below(MiB) : rng.below(3000);
          void* p = rng.chance(10) ? shard_heap_malloc_aligned(h, size, size_t{1} << rng.below(13))
                                   : shard_heap_malloc(h, size);
          if (p == nullptr) {
            ++bad;
            continue;
          }
          const uint64_t seed = rng.next();
          fill(p, size, seed);
          (rng.chance(50) ? mailbox.put({p, size, seed}) : mine.push_back({p, size, seed}));
        } else if (what < 8) {
          Live b;
          if (!mailbox.take(&b)) continue;
          if (!intact(b.p, b.size, b.seed)) ++bad;
          // Half through the heap, half through shard_free (which finds the heap).
          if (rng.chance(50)) {
            shard_heap_free(h, b.p);
          } else {
            shard_free(b.p);
          }
        } else if (!mine.empty()) {
          const size_t k = rng.below(mine.size());
          if (!intact(mine[k].p, mine[k].size, mine[k].seed)) ++bad;
          if (rng.chance(30)) {
            const size_t size = rng.below(5000);
            void* q = shard_heap_realloc(h, mine[k].p, size);
            if (q == nullptr && size != 0) {
              ++bad;
              continue;
            }
            if (size == 0) {
              mine[k] = mine.back();
              mine.pop_back();
              continue;
            }
            mine[k] = {q, size, rng.next()};
            fill(q, size, mine[k].seed);
          } else {
            shard_heap_free(h, mine[k].p);
            mine[k] = mine.back();
            mine.pop_back();
          }
        }
      }
      for (const Live& b : mine) {
        if (!intact(b.p, b.size, b.seed)) ++bad;
        shard_heap_free(h, b.p);
      }
    });
  }
  for (auto& t : ts) t.join();
  mailbox.drain_into(h);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
}

// A thread uses a heap; the heap is destroyed (the thread still caches its
// part of it); a new heap takes the record (same handle, next generation).
// In even rounds the thread then uses the new heap (its lookup must drop the
// stale entry, not hand out the old heap), in odd rounds it exits at once
// with the stale entry (its exit handler must neither release the old heap,
// which went with the memory, nor touch the new one). Either way the new heap
// works on the main thread afterwards.
TEST(FirstClassHeap, ThreadOutlivesItsHeapThenUsesTheNextOneAndExits) {
  int reused = 0;
  for (int round = 0; round < 40; ++round) {
    const bool uses_next = round % 2 == 0;
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    std::atomic<int> step{0};
    std::atomic<shard_heap*> next{nullptr};
    std::atomic<bool> ok{true};
    std::thread t([&] {
      void* p = shard_heap_malloc(h, 100);
      void* q = shard_heap_malloc(h, 100000);
      if (p == nullptr || q == nullptr) ok = false;
      shard_heap_free(h, p);  // q stays: destroy takes it
      step = 1;
      while (step.load() != 2) std::this_thread::yield();
      if (!uses_next) return;  // exit with only the stale entry
      shard_heap* h2 = next.load();
      for (int i = 0; i < 100; ++i) {
        void* r = shard_heap_malloc(h2, 64 + size_t(i) * 40);
        if (r == nullptr) {
          ok = false;
          break;
        }
        fill_pattern(r, 64, uint64_t(i));
        if (check_pattern(r, 64, uint64_t(i)) != SIZE_MAX) ok = false;
        if (i % 2 == 0) shard_heap_free(h2, r);
      }
      // Exit with the new heap's part in the cache: it is given back.
    });
    while (step.load() != 1) std::this_thread::yield();
    shard_heap_destroy(h);
    shard_heap* h2 = shard_heap_new();
    ASSERT_NE(h2, nullptr);
    reused += h2 == h;
    next = h2;
    step = 2;
    t.join();
    EXPECT_TRUE(ok.load());
    if (uses_next) {
      EXPECT_GT(used(h2), 0u) << "half the thread's blocks are still live";
    } else {
      EXPECT_EQ(used(h2), 0u) << "the thread's old heap must not show up in the new one";
    }
    std::vector<void*> blocks;  // adopts the heap the thread gave back, if any
    for (int i = 0; i < 300; ++i) {
      void* p = shard_heap_malloc(h2, 64 + size_t(i) * 40);
      ASSERT_NE(p, nullptr);
      fill_pattern(p, 64, uint64_t(i));
      blocks.push_back(p);
    }
    for (int i = 0; i < 300; ++i) {
      ASSERT_EQ(check_pattern(blocks[size_t(i)], 64, uint64_t(i)), SIZE_MAX);
      shard_heap_free(h2, blocks[size_t(i)]);
    }
    shard_heap_destroy(h2);
  }
  EXPECT_EQ(reused, 40) << "a destroyed heap's record goes to the next heap";
}

// Threads exit (their exit handlers give their heaps back) while the heap
// they used is being destroyed: destroy waits for the handlers that pinned
// the heap; the others find it gone and leave it alone.
TEST(FirstClassHeap, ThreadsExitWhileTheirHeapIsDestroyed) {
  const int rounds = int(scaled(40, stress_scale(), 5));
  for (int round = 0; round < rounds; ++round) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    const int threads = 6;
    std::atomic<int> done{0};
    std::atomic<bool> ok{true};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::vector<void*> blocks;
        for (int i = 0; i < 200; ++i) {
          void* p = shard_heap_malloc(h, 16 + size_t((i * 53 + t) % 4000));
          if (p == nullptr) ok = false;
          blocks.push_back(p);
        }
        for (size_t i = 0; i < blocks.size(); i += 2) shard_heap_free(h, blocks[i]);
        done.fetch_add(1);  // last call on h: from here on the thread only exits
      });
    }
    while (done.load() != threads) std::this_thread::yield();
    shard_heap_destroy(h);  // races with the exit handlers
    for (auto& t : ts) t.join();
    EXPECT_TRUE(ok.load());
  }
  // The records are fine afterwards.
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  void* p = shard_heap_malloc(h, 64);
  ASSERT_NE(p, nullptr);
  shard_heap_free(h, p);
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
}

// One thread uses more heaps at once than its heap cache holds (8): entries
// are given back and re-adopted, destroyed ones dropped.
TEST(FirstClassHeap, MoreHeapsThanCacheSlotsWithDestroysInBetween) {
  constexpr int kHeaps = 20;
  shard_heap* heaps[kHeaps];
  for (auto& h : heaps) {
    h = shard_heap_new();
    ASSERT_NE(h, nullptr);
  }
  std::vector<Live> live[kHeaps];
  uint64_t seed = 1;
  for (int round = 0; round < 30; ++round) {
    for (int i = 0; i < kHeaps; ++i) {
      for (int k = 0; k < 5; ++k) {
        const size_t size = 8 + size_t((round * 31 + i * 17 + k * 5) % 2000);
        void* p = shard_heap_malloc(heaps[i], size);
        ASSERT_NE(p, nullptr);
        fill_pattern(p, size, seed);
        live[i].push_back({p, size, seed++});
      }
      if (live[i].size() > 12) {
        for (size_t k = 0; k < 6; ++k) {
          ASSERT_EQ(check_pattern(live[i][k].p, live[i][k].size, live[i][k].seed), SIZE_MAX);
          shard_heap_free(heaps[i], live[i][k].p);
        }
        live[i].erase(live[i].begin(), live[i].begin() + 6);
      }
    }
    // Every few rounds a heap goes and another takes (maybe) its record.
    const int victim = (round * 7) % kHeaps;
    shard_heap_destroy(heaps[victim]);
    live[victim].clear();
    heaps[victim] = shard_heap_new();
    ASSERT_NE(heaps[victim], nullptr);
  }
  for (int i = 0; i < kHeaps; ++i) {
    for (const Live& b : live[i]) {
      ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
      shard_heap_free(heaps[i], b.p);
    }
    EXPECT_EQ(used(heaps[i]), 0u);
    shard_heap_destroy(heaps[i]);
  }
}

// ---------------------------------------------------------------------------
// the process heap's functions on a heap's blocks

TEST(FirstClassHeap, ShardFreeReturnsABlockToItsHeap) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  std::vector<void*> blocks;
  for (size_t size : kSizes) blocks.push_back(shard_heap_malloc(h, size));
  blocks.push_back(shard_heap_malloc_aligned(h, 100, 4096));
  blocks.push_back(shard_heap_malloc_aligned(h, 100, 1 << 20));
  for (void* p : blocks) ASSERT_NE(p, nullptr);
  ASSERT_GT(used(h), 0u);
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_GE(shard_usable_size(blocks[i]), i < std::size(kSizes) ? kSizes[i] : 100u);
  }
  // Half on this thread, half on another thread.
  const size_t half = blocks.size() / 2;
  for (size_t i = 0; i < half; ++i) shard_free(blocks[i]);
  std::thread t([&] {
    for (size_t i = half; i < blocks.size(); ++i) shard_free(blocks[i]);
  });
  t.join();
  EXPECT_EQ(used(h), 0u);
  // shard_realloc moves a block into the process heap.
  auto* p = static_cast<char*>(shard_heap_malloc(h, 100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x3c, 100);
  auto* q = static_cast<char*>(shard_realloc(p, 5000));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(std::all_of(q, q + 100, [](char c) { return c == 0x3c; }));
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
  shard_free(q);  // a process-heap block, alive after the heap is gone
}

// A review: shard_realloc kept an OS heap's block that fit (shrinking by less
// than half, or the same size), so it stayed in the heap and went with its
// destroy. heap.h: shard_realloc moves it into the process heap, always.
TEST(FirstClassHeap, ShardReallocMovesABlockThatFitsOutOfItsHeap) {
  for (const size_t size : {size_t{100}, size_t{20000}, size_t{700000}}) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    auto* p = static_cast<char*>(shard_heap_malloc(h, size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, size);
    const size_t fits = size * 9 / 10;
    auto* q = static_cast<char*>(shard_realloc(p, fits));
    ASSERT_NE(q, nullptr) << size;
    EXPECT_NE(q, p) << size;
    EXPECT_EQ(used(h), 0u) << size;
    shard_heap_destroy(h);
    // q is a process-heap block: readable after the heap's memory is gone.
    EXPECT_TRUE(std::all_of(q, q + fits, [](char c) { return c == 0x5a; })) << size;
    shard_free(q);
  }
}

// A review (checked builds): shard_realloc grew an OS heap's huge block in
// place when the growth fit the block's slack (the in-place growth of
// checked realloc), so it stayed in the heap and went with its destroy: the
// program's pointer faulted. Every build moves it.
TEST(FirstClassHeap, ShardReallocMovesAHugeBlockThatGrowsWithinItsSlackOutOfItsHeap) {
  for (size_t size = 600001; size < 600001 + 16; ++size) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    auto* p = static_cast<char*>(shard_heap_malloc(h, size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5b, size);
    auto* q = static_cast<char*>(shard_realloc(p, size + 1));
    ASSERT_NE(q, nullptr) << size;
    EXPECT_NE(q, p) << size;
    EXPECT_EQ(used(h), 0u) << size;
    shard_heap_destroy(h);
    if (q == p) continue;  // its memory is gone: reading it would fault
    EXPECT_TRUE(std::all_of(q, q + size, [](char c) { return c == 0x5b; })) << size;
    shard_free(q);
  }
}

// A review: a pointer to a block slot of a live page that the heap never
// handed out was freed as if live: used_bytes dropped and the slot went out
// twice. A slot past the page's capacity (extend builds 4 KiB of blocks at a
// time: 64 of 64 bytes; slot 100 never was) is "not allocated" now, freed
// from the thread that owns the page or from another (the remote path).
// (A slot below capacity, on a free list, is a limit: hostile-input.md C18b.)
// A death test by name too: cross-test (qemu-user) skips tests named *Death*,
// whose re-executed child qemu cannot start.
TEST(FirstClassHeapFreeDeath, ASlotNeverHandedOutIsNotAccepted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const bool remote : {false, true}) {
    EXPECT_EXIT(
        {
          shard_heap* h = shard_heap_new();
          char* a = static_cast<char*>(shard_heap_malloc(h, 64));
          char* volatile never = a + 64 * 100;
          if (remote) {
            std::thread([&] { shard_heap_free(h, never); }).join();
          } else {
            shard_heap_free(h, never);
          }
        },
        ::testing::KilledBySignal(SIGABRT),
        "shardalloc: fatal: free of a pointer that is not allocated")
        << (remote ? "another thread" : "the owner");
  }
}

// ---------------------------------------------------------------------------
// heaps bound to a region

TEST(FirstClassHeap, RegionBoundHeapGivesItsBlockBackExactly) {
  const size_t region_bytes = 64 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(region_bytes), region_bytes), SHARD_OK);
  // The thread's own heap in the region, and the record, exist after the
  // first round; from then on available bytes come back exactly too.
  RegionStats first{};
  for (int round = 0; round < 6; ++round) {
    const RegionStats before = stats(r);
    shard_heap* h = shard_heap_new_in_region(r, 16 * MiB);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(stats(r).used, before.used + 16 * MiB);
    // Fill the heap until it says no: it never takes more from the region.
    std::vector<Live> live;
    size_t total = 0;
    for (size_t i = 0;; ++i) {
      const size_t size = i % 8 == 0 ? 700000 : 24 + (i * 389) % 9000;
      errno = 0;
      void* p = shard_heap_malloc(h, size);
      if (p == nullptr) {
        EXPECT_EQ(errno, ENOMEM);
        break;
      }
      ASSERT_LT(i, size_t{1} << 20) << "the heap never fills up";
      fill(p, size, i);
      live.push_back({p, size, i});
      total += size;
    }
    EXPECT_GT(total, 8 * MiB) << "most of the span serves blocks";
    EXPECT_LE(total, 16 * MiB);
    EXPECT_EQ(stats(r).used, before.used + 16 * MiB) << "the heap grows only inside its span";
    for (const Live& b : live) ASSERT_TRUE(intact(b.p, b.size, b.seed));
    // Blocks of the heap are not the region's.
    EXPECT_EQ(shard_region_dealloc(r, live[1].p, live[1].size, 8), SHARD_NOT_ALLOCATED);
    if (round % 2 == 0) {
      for (const Live& b : live) shard_heap_free(h, b.p);
      EXPECT_EQ(used(h), 0u);
    }
    shard_heap_destroy(h);  // live blocks or not
    const RegionStats after = stats(r);
    EXPECT_EQ(after.used, before.used) << "round " << round;
    EXPECT_EQ(after.total, before.total);
    if (round == 0) first = after;
    if (round > 0) {
      EXPECT_EQ(after, first) << "round " << round;
    }
  }
}

TEST(FirstClassHeap, RegionBoundHeapArguments) {
  const size_t region_bytes = 8 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(region_bytes), region_bytes), SHARD_OK);
  const RegionStats before = stats(r);
  errno = 0;
  EXPECT_EQ(shard_heap_new_in_region(nullptr, 4 * MiB), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(shard_heap_new_in_region(r, SHARD_HEAP_REGION_MIN_BYTES - 1), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(shard_heap_new_in_region(r, 64 * MiB), nullptr) << "more than the region has";
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(shard_heap_new_in_region(r, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(stats(r).used, before.used);
  // The smallest span works.
  shard_heap* h = shard_heap_new_in_region(r, SHARD_HEAP_REGION_MIN_BYTES);
  ASSERT_NE(h, nullptr);
  void* p = shard_heap_malloc(h, 1000);
  ASSERT_NE(p, nullptr);
  shard_heap_free(h, p);
  shard_heap_destroy(h);
  EXPECT_EQ(stats(r).used, before.used);
}

TEST(FirstClassHeap, RegionBoundHeapSharedByThreads) {
  const size_t region_bytes = 96 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(region_bytes), region_bytes), SHARD_OK);
  const size_t region_used = stats(r).used;
  shard_heap* h = shard_heap_new_in_region(r, 64 * MiB);
  ASSERT_NE(h, nullptr);
  const int threads = 6;
  const size_t ops = scaled(20000, stress_scale(), 1000);
  Mailbox mailbox;
  std::atomic<size_t> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      Rng rng(uint64_t(t) + 99);
      for (size_t i = 0; i < ops; ++i) {
        if (rng.chance(55)) {
          const size_t size = rng.chance(1) ? 200000 : 8 + rng.below(6000);
          void* p = shard_heap_malloc(h, size);
          if (p == nullptr) continue;  // the heap may run full for a moment
          const uint64_t seed = rng.next();
          fill(p, size, seed);
          mailbox.put({p, size, seed});
        } else {
          Live b;
          if (!mailbox.take(&b)) continue;
          if (!intact(b.p, b.size, b.seed)) ++bad;
          shard_heap_free(h, b.p);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  mailbox.drain_into(h);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(used(h), 0u);
  shard_heap_destroy(h);
  EXPECT_EQ(stats(r).used, region_used);
}

// ---------------------------------------------------------------------------
// C++

TEST(FirstClassHeap, CppHeapIsAMemoryResource) {
  {
    shardalloc::heap heap;
    ASSERT_NE(heap.get(), nullptr);
    std::pmr::vector<std::pmr::string> strings(&heap);
    for (int i = 0; i < 1000; ++i)
      strings.emplace_back(std::string(size_t(i % 300), char('a' + i % 26)));
    EXPECT_GT(heap.used_bytes(), 100000u);
    for (int i = 0; i < 1000; ++i) {
      EXPECT_EQ(std::string_view(strings[size_t(i)]),
                std::string(size_t(i % 300), char('a' + i % 26)));
    }
    auto* over_aligned = static_cast<char*>(heap.allocate(3000, 4096));
    EXPECT_TRUE(is_aligned(over_aligned, 4096));
    heap.deallocate(over_aligned, 3000, 4096);
    EXPECT_TRUE(heap.is_equal(heap));
    EXPECT_FALSE(heap.is_equal(*std::pmr::new_delete_resource()));
    // Arena style: the strings' memory goes with the heap, so the vector is
    // dropped without running destructors.
    new (&strings) std::pmr::vector<std::pmr::string>(std::pmr::new_delete_resource());
  }
  // The heap is gone; a new one may reuse its record.
  shardalloc::heap again;
  EXPECT_EQ(again.used_bytes(), 0u);

  const size_t region_bytes = 16 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(region_bytes), region_bytes), SHARD_OK);
  const size_t region_used = stats(r).used;
  {
    shardalloc::heap in_region(r, 8 * MiB);
    std::pmr::vector<int> v(&in_region);
    for (int i = 0; i < 100000; ++i) v.push_back(i);
    EXPECT_EQ(v[77777], 77777);
  }
  EXPECT_EQ(stats(r).used, region_used);
  EXPECT_THROW({ shardalloc::heap too_big(r, 64 * MiB); }, std::bad_alloc);
}

// ---------------------------------------------------------------------------
// Fatal errors: one line on stderr, then abort.

class FirstClassHeapDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

#define EXPECT_FATAL(stmt, what)                        \
  EXPECT_EXIT(stmt, ::testing::KilledBySignal(SIGABRT), \
              "shardalloc: fatal: " what " \\(pointer 0x[0-9a-f]+\\)")

void free_stack_pointer_into_heap() {
  shard_heap* h = shard_heap_new();
  uint64_t on_stack[4] = {1, 2, 3, 4};
  void* volatile p = on_stack;
  shard_heap_free(h, p);
}

void free_process_block_into_heap() {
  shard_heap* h = shard_heap_new();
  shard_heap_free(h, shard_heap_malloc(h, 64));  // the heap has memory of its own
  void* volatile p = shard_malloc(64);
  shard_heap_free(h, p);
}

void free_block_of_another_heap() {
  shard_heap* a = shard_heap_new();
  shard_heap* b = shard_heap_new();
  shard_heap_free(a, shard_heap_malloc(a, 64));
  void* volatile p = shard_heap_malloc(b, 64);
  shard_heap_free(a, p);
}

void free_huge_block_of_another_heap() {
  shard_heap* a = shard_heap_new();
  shard_heap* b = shard_heap_new();
  void* volatile p = shard_heap_malloc(b, 3 << 20);
  shard_heap_free(a, p);
}

shard_region* small_region() {
  shard_region* r = nullptr;
  shard_region_init(&r, map_memory(16 * MiB), 16 * MiB);
  return r;
}

void free_region_heap_block_into_os_heap() {
  shard_heap* os = shard_heap_new();
  shard_heap* in_region = shard_heap_new_in_region(small_region(), 4 * MiB);
  shard_heap_free(os, shard_heap_malloc(os, 64));
  void* volatile p = shard_heap_malloc(in_region, 64);
  shard_heap_free(os, p);
}

void free_os_heap_block_into_region_heap() {
  shard_heap* os = shard_heap_new();
  shard_heap* in_region = shard_heap_new_in_region(small_region(), 4 * MiB);
  void* volatile p = shard_heap_malloc(os, 64);
  shard_heap_free(in_region, p);
}

void free_interior_pointer_into_heap() {
  shard_heap* h = shard_heap_new();
  char* volatile p = static_cast<char*>(shard_heap_malloc(h, 256));
  shard_heap_free(h, p + 16);
}

void double_free_in_heap() {
  shard_heap* h = shard_heap_new();
  void* volatile keep = shard_heap_malloc(h, 64);
  void* volatile p = shard_heap_malloc(h, 64);
  shard_heap_free(h, p);
  shard_heap_free(h, p);
  (void)keep;
}

void double_free_from_another_thread() {
  shard_heap* h = shard_heap_new();
  void* volatile keep = shard_heap_malloc(h, 64);
  void* p = shard_heap_malloc(h, 64);
  std::thread t([&] {
    shard_heap_free(h, p);
    shard_heap_free(h, p);
  });
  t.join();
  (void)keep;
}

void free_into_null_heap() {
  shard_heap* h = shard_heap_new();
  void* volatile p = shard_heap_malloc(h, 64);
  shard_heap_free(nullptr, p);
}

void shard_free_of_region_heap_block() {
  shard_heap* h = shard_heap_new_in_region(small_region(), 4 * MiB);
  void* volatile p = shard_heap_malloc(h, 64);
  shard_free(p);
}

void shard_free_after_destroy() {
  shard_heap* h = shard_heap_new();
  void* volatile p = shard_heap_malloc(h, 64);
  shard_heap_destroy(h);
  shard_free(p);  // the arena is unmapped and out of the arena map
}

void malloc_after_destroy() {
  shard_heap* h = shard_heap_new();
  shard_heap_destroy(h);
  shard_heap_malloc(h, 64);
}

void destroy_twice() {
  shard_heap* h = shard_heap_new_in_region(small_region(), 4 * MiB);
  shard_heap_destroy(h);
  shard_heap_destroy(h);
}

// A review: an interior pointer of a padded aligned block (its page hands
// out interior pointers) freed the enclosing block; a later aligned malloc
// then handed out the block the program still held.
void free_interior_of_aligned_block(bool remote) {
  shard_heap* h = shard_heap_new();
  char* a = static_cast<char*>(shard_heap_malloc_aligned(h, 100, 256));
  char* b = static_cast<char*>(shard_heap_malloc_aligned(h, 100, 256));
  if (a == nullptr || b == nullptr) return;
  char* volatile interior = b + 40;
  if (remote) {
    std::thread([&] { shard_heap_free(h, interior); }).join();
  } else {
    shard_heap_free(h, interior);
  }
}

// A review: shard_heap_realloc returned an interior or a freed pointer as a
// live block when the new size fit it (heaps.md: realloc of an interior
// pointer stops; the process heap's realloc stops a freed block, C23).
void realloc_interior_that_fits() {
  shard_heap* h = shard_heap_new();
  char* volatile p = static_cast<char*>(shard_heap_malloc(h, 100));
  shard_heap_realloc(h, p + 16, 60);
}
void realloc_freed_block(bool remote) {
  shard_heap* h = shard_heap_new();
  void* volatile keep = shard_heap_malloc(h, 100);
  void* volatile p = shard_heap_malloc(h, 100);
  if (remote) {
    std::thread([&] { shard_heap_free(h, p); }).join();
  } else {
    shard_heap_free(h, p);
  }
  shard_heap_realloc(h, p, 100);
  (void)keep;
}
// The same through shard_realloc, which moves the block into the process heap.
void shard_realloc_interior_of_heap_block() {
  shard_heap* h = shard_heap_new();
  char* volatile p = static_cast<char*>(shard_heap_malloc(h, 100));
  shard_realloc(p + 16, 60);
}
void shard_realloc_freed_heap_block() {
  shard_heap* h = shard_heap_new();
  void* volatile keep = shard_heap_malloc(h, 100);
  void* volatile p = shard_heap_malloc(h, 100);
  shard_heap_free(h, p);
  shard_realloc(p, 100);
  (void)keep;
}

TEST_F(FirstClassHeapDeath, FreeOfInteriorPointerOfAlignedBlock) {
  EXPECT_FATAL(free_interior_of_aligned_block(false), "free of a pointer that is not allocated");
  EXPECT_FATAL(free_interior_of_aligned_block(true), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, ReallocOfInteriorPointer) {
  EXPECT_FATAL(realloc_interior_that_fits(), "realloc of a pointer that is not allocated");
  if (!shardalloc::core::kChecked) {
    EXPECT_FATAL(shard_realloc_interior_of_heap_block(),
                 "realloc of a pointer that is not allocated");
  } else {  // checked builds move every block; the free of p stops
    EXPECT_DEATH(shard_realloc_interior_of_heap_block(), "shardalloc: fatal: .*not allocated");
  }
}
TEST_F(FirstClassHeapDeath, ReallocOfFreedBlock) {
  // Checked builds: shard_realloc moves every block and the free of p stops.
  if (shardalloc::core::kChecked) {
    EXPECT_FATAL(realloc_freed_block(false), "realloc of a freed block \\(use after free\\)");
    EXPECT_DEATH(shard_realloc_freed_heap_block(), "shardalloc: fatal: ");
    return;
  }
  EXPECT_FATAL(realloc_freed_block(false), "realloc of a freed block \\(use after free\\)");
  EXPECT_FATAL(realloc_freed_block(true), "realloc of a freed block \\(use after free\\)");
  EXPECT_FATAL(shard_realloc_freed_heap_block(), "realloc of a freed block \\(use after free\\)");
}
TEST_F(FirstClassHeapDeath, FreeOfStackPointer) {
  EXPECT_FATAL(free_stack_pointer_into_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, FreeOfProcessHeapBlock) {
  EXPECT_FATAL(free_process_block_into_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, FreeOfAnotherHeapsBlock) {
  EXPECT_FATAL(free_block_of_another_heap(), "free of a pointer that is not allocated");
  EXPECT_FATAL(free_huge_block_of_another_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, FreeAcrossOsAndRegionHeaps) {
  EXPECT_FATAL(free_region_heap_block_into_os_heap(), "free of a pointer that is not allocated");
  EXPECT_FATAL(free_os_heap_block_into_region_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, FreeOfInteriorPointer) {
  EXPECT_FATAL(free_interior_pointer_into_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, DoubleFree) {
  EXPECT_FATAL(double_free_in_heap(), "double free detected");
  EXPECT_FATAL(double_free_from_another_thread(), "double free detected");
}
TEST_F(FirstClassHeapDeath, FreeIntoNullHeap) {
  EXPECT_FATAL(free_into_null_heap(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, ShardFreeOfRegionHeapBlock) {
  EXPECT_FATAL(shard_free_of_region_heap_block(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, ShardFreeAfterDestroy) {
  EXPECT_FATAL(shard_free_after_destroy(), "free of a pointer that is not allocated");
}
TEST_F(FirstClassHeapDeath, UseAfterDestroy) {
  EXPECT_FATAL(malloc_after_destroy(), "use of a destroyed heap");
  EXPECT_FATAL(destroy_twice(), "use of a destroyed heap");
}

}  // namespace
