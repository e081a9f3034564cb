// Memory of exited threads comes back when other threads free their blocks
// (protocol 3 of docs/protocols.md, sealed pages): threads allocate and exit,
// another thread frees everything they allocated, and the abandoned heaps
// give their pages and segments back at once, without a new thread adopting
// them and without a sweep (regions have no clock, so they never sweep
// unless they run short; the process heap sweeps at most every 200 ms, and
// the test checks that none ran).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/snapshot_support.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

struct Block {
  void* p;
  size_t size;
  uint64_t seed;
};

// Sizes of every kind of page: small (most), medium and large blocks.
size_t pick_size(uint64_t r, size_t i) {
  if (i % 97 == 0) return 20000 + r % 12000;   // medium pages
  if (i % 251 == 0) return 40000 + r % 80000;  // large pages
  return 16 + r % 1000;
}

constexpr int kThreads = 4;
constexpr size_t kBlocksPerThread = 3000;

// Holds a thread, at the end of its scope (an early return included), until
// all kThreads threads have reached theirs.
struct WaitForAll {
  std::atomic<int>& arrived;
  ~WaitForAll() {
    arrived.fetch_add(1);
    while (arrived.load() < kThreads) std::this_thread::yield();
  }
};

// Each of kThreads threads allocates with `alloc` and exits; returns the
// blocks. No thread exits before all have allocated: a thread that started
// after another had exited (a loaded machine runs them one after the other)
// would adopt the heap that one abandoned.
template <class Alloc>
std::vector<Block> allocate_and_exit(Alloc alloc) {
  std::vector<std::vector<Block>> per(kThreads);
  std::vector<std::thread> ts;
  std::atomic<int> arrived{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      const WaitForAll wait{arrived};
      uint64_t r = mix64(uint64_t(t) + 17);
      for (size_t i = 0; i < kBlocksPerThread; ++i) {
        r = mix64(r);
        const size_t n = pick_size(r, i);
        void* p = alloc(n);
        ASSERT_NE(p, nullptr);
        fill_pattern(p, n, r);
        per[size_t(t)].push_back({p, n, r});
      }
    });
  }
  for (auto& t : ts) t.join();  // their heaps are abandoned now (exit destructors ran)
  std::vector<Block> all;
  for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
  return all;
}

TEST(AbandonedHeaps, RegionPagesComeBackWhenAnotherThreadFreesEverything) {
  const size_t bytes = 256 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  void* mine = nullptr;  // this thread has a heap of its own, with one block
  ASSERT_EQ(shard_region_alloc(r, 64, 16, &mine), SHARD_OK);
  shard_stats before;
  ASSERT_EQ(shard_region_stats(r, &before), SHARD_OK);

  std::vector<Block> blocks = allocate_and_exit([r](size_t n) {
    void* p = nullptr;
    return shard_region_alloc(r, n, 16, &p) == SHARD_OK ? p : nullptr;
  });
  shard_stats during;
  ASSERT_EQ(shard_region_stats(r, &during), SHARD_OK);
  EXPECT_EQ(during.heaps_abandoned, uint64_t(kThreads));
  EXPECT_GT(abandoned_segments(region_snapshot(r)), uint64_t(kThreads));

  for (const Block& b : blocks) {
    ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
    ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, 16), SHARD_OK);
  }
  shard_stats after;
  ASSERT_EQ(shard_region_stats(r, &after), SHARD_OK);
  // Nothing adopted or swept them: the frees gave the memory back.
  EXPECT_EQ(after.heaps_abandoned, uint64_t(kThreads));
  EXPECT_EQ(after.heaps_adopted, before.heaps_adopted);
  EXPECT_EQ(after.heaps_swept, before.heaps_swept);
  EXPECT_EQ(abandoned_segments(region_snapshot(r)), 0u);
  EXPECT_EQ(after.live_blocks, 1u);
  EXPECT_EQ(after.pages, before.pages);
  // Every segment the threads claimed is free again (metadata slots made for
  // their heap records stay).
  EXPECT_LE(after.segments, before.segments + 1) << "segments during: " << during.segments;
  EXPECT_EQ(shard_region_dealloc(r, mine, 64, 16), SHARD_OK);
}

TEST(AbandonedHeaps, ProcessPagesComeBackWhenAnotherThreadFreesEverything) {
#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
  GTEST_SKIP() << "checked mode keeps this thread's last 256 frees in its quarantine, so their "
                  "pages complete only when later frees push them out or the thread exits";
#endif
  shard_free(shard_malloc(64));  // this thread has a heap of its own
  shard_stats before;
  shard_stats_get(&before);
  std::vector<Block> blocks = allocate_and_exit([](size_t n) { return shard_malloc(n); });
  shard_stats during;
  shard_stats_get(&during);
  EXPECT_GE(during.heaps_abandoned, uint64_t(kThreads));
  EXPECT_GT(abandoned_segments(process_snapshot()), uint64_t(kThreads));
  for (const Block& b : blocks) {
    ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
    shard_free(b.p);
  }
  shard_stats after;
  shard_stats_get(&after);
  if (after.heaps_swept != before.heaps_swept) {
    GTEST_SKIP() << "a periodic sweep ran (a slow machine: more than 200 ms passed); it would give "
                    "the memory back too";
  }
  EXPECT_EQ(after.heaps_adopted, before.heaps_adopted);
  EXPECT_EQ(abandoned_segments(process_snapshot()), 0u);
  EXPECT_LE(after.segments, before.segments + 1) << "segments during: " << during.segments;
}

// Many threads free into the same abandoned heaps at once, while new threads
// adopt heaps and the region runs short and sweeps: every block stays
// intact, and at the end every abandoned heap has given its segments back.
TEST(AbandonedHeaps, ConcurrentFreesAdoptionsAndSweeps) {
  const size_t bytes = 64 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  auto region_alloc = [r](size_t n) {
    void* p = nullptr;
    return shard_region_alloc(r, n, 16, &p) == SHARD_OK ? p : nullptr;
  };
  const int rounds = int(scaled(12, stress_scale(), 2));
  for (int round = 0; round < rounds; ++round) {
    std::vector<Block> blocks = allocate_and_exit(region_alloc);
    std::atomic<size_t> next{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) {
      ts.emplace_back([&, t] {
        // Freers interleave with allocations of their own (threads that
        // adopt the abandoned heaps, or make new ones) and exit.
        std::vector<std::pair<void*, size_t>> own;
        for (size_t i; (i = next.fetch_add(7)) < blocks.size();) {
          for (size_t k = i; k < i + 7 && k < blocks.size(); ++k) {
            const Block& b = blocks[k];
            ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
            ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, 16), SHARD_OK);
          }
          if (t == 0 && i % 91 == 0) {
            const size_t n = 100 + i % 2000;
            void* p = region_alloc(n);
            ASSERT_NE(p, nullptr);
            own.emplace_back(p, n);
          }
        }
        for (auto [p, n] : own) ASSERT_EQ(shard_region_dealloc(r, p, n, 16), SHARD_OK);
      });
    }
    for (auto& t : ts) t.join();
  }
  EXPECT_EQ(abandoned_segments(region_snapshot(r)), 0u);
  shard_stats s;
  ASSERT_EQ(shard_region_stats(r, &s), SHARD_OK);
  EXPECT_EQ(s.live_blocks, 0u);
}

#if defined(SHARDTEST_TSAN) || defined(SHARDTEST_ASAN)
#define ABANDONED_TEST_SANITIZED 1
#endif

size_t rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return size_t(resident) * size_t(sysconf(_SC_PAGESIZE));
}

// A thread frees most of its blocks and exits, keeping one block in each
// of its segments: the segments stay (a block is live in each), their other
// pages are free but resident. A sweep (the heap has no owner) gives the
// memory of pages free for the purge delay back to the OS.
TEST(AbandonedHeaps, SweepsGiveBackFreePagesOfSegmentsKeptForALiveBlock) {
#ifdef ABANDONED_TEST_SANITIZED
  GTEST_SKIP() << "RSS includes the sanitizer's shadow memory";
#endif
  shard_free(shard_malloc(64));  // this thread has a heap of its own
  std::vector<void*> kept;
  std::thread([&] {
    std::vector<void*> all;
    for (int i = 0; i < 4096; ++i) {
      void* p = shard_malloc(1000);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x5a, 1000);  // resident
      all.push_back(p);
    }
    uintptr_t last_segment = 0;
    for (void* p : all) {
      const uintptr_t segment = reinterpret_cast<uintptr_t>(p) >> 19;
      if (segment != last_segment) {
        last_segment = segment;
        kept.push_back(p);  // the first block of each segment stays live
      } else {
        shard_free(p);
      }
    }
  }).join();
  ASSERT_GE(kept.size(), 4u);
  const size_t before = rss_bytes();
  // Sweeps run at most every 200 ms on the allocator's slow paths (a huge
  // block's free is one); pages are purged once free for 100 ms.
  size_t now = before;
  for (int round = 0; round < 60 && now + MiB > before; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    shard_free(shard_malloc(2 * MiB));
    now = rss_bytes();
  }
  EXPECT_LE(now + MiB, before) << "RSS before " << before / 1024 << " KiB, after " << now / 1024
                               << " KiB";
  for (void* p : kept) shard_free(p);
}

}  // namespace
