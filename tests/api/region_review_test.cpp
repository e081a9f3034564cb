// Adversarial review of the region API (region.h) and region-bound heaps
// (heap.h): counts read while other threads run, exactness at quiescence
// after mixed workloads (class boundaries, aligned and huge blocks, remote
// frees, exited threads, region heaps destroyed with live blocks), add_memory
// racing allocation, a region made of many small pieces.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "core/size_class.h"
#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "support/rng.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

struct Blk {
  void* p;
  size_t size;
  size_t align;
  uint64_t seed;
};

shard_region* fresh_region(size_t bytes) {
  shard_region* r = nullptr;
  EXPECT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  return r;
}

// Sizes at every size-class boundary (class size, one below, one above), the
// fast-path limits and sizes above the largest class.
std::vector<size_t> boundary_sizes() {
  std::vector<size_t> v = {0, 1, 7, 8, 9};
  for (unsigned c = 1; c < shardalloc::core::kClassCount; ++c) {
    const size_t s = shardalloc::core::class_block_size(c);
    if (s == 0) continue;
    v.push_back(s - 1);
    v.push_back(s);
    v.push_back(s + 1);
  }
  for (size_t s :
       {size_t{1024}, size_t{1025}, 16 * KiB + 1, 32 * KiB + 1, 128 * KiB + 1, 512 * KiB - 2 * KiB,
        512 * KiB - 2 * KiB + 1, 512 * KiB, 512 * KiB + 1, 1 * MiB - 2 * KiB, 1 * MiB + 1})
    v.push_back(s);
  return v;
}

// ---------------------------------------------------------------------------
// Counts read while other threads allocate and free: a reader must never be
// told that more bytes are used (or available) than the region has.
TEST(RegionReview, ConcurrentReadersNeverSeeUsedAboveTotal) {
  const size_t bytes = 8 * MiB;
  shard_region* r = fresh_region(bytes);
  const size_t total = shard_region_total_bytes(r);
  std::atomic<bool> stop{false};
  std::atomic<size_t> worst_used{0}, worst_avail{0}, worst_sum{0};
  std::atomic<uint64_t> reads{0};
  // Two producer/consumer pairs in opposite heap-list order: A allocates and
  // B frees, and C allocates and D frees (D's heap was made before C's).
  struct Pipe {
    std::mutex m;
    std::vector<Blk> q;
  };
  Pipe pipes[2];
  auto producer = [&](Pipe& pipe, uint64_t seed) {
    Rng rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      const size_t size = rng.chance(50) ? 100 * KiB : 48 * KiB;
      void* p = nullptr;
      if (shard_region_alloc(r, size, 16, &p) != SHARD_OK) {
        std::this_thread::yield();
        continue;
      }
      std::lock_guard<std::mutex> g(pipe.m);
      pipe.q.push_back({p, size, 16, 0});
    }
  };
  auto consumer = [&](Pipe& pipe) {
    std::vector<Blk> mine;
    while (!stop.load(std::memory_order_relaxed)) {
      {
        std::lock_guard<std::mutex> g(pipe.m);
        mine.swap(pipe.q);
      }
      for (const Blk& b : mine) EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
      mine.clear();
    }
  };
  std::vector<std::thread> ts;
  // Heap order in the region's list: newest first. Make D's heap before C's.
  std::atomic<bool> d_ready{false};
  ts.emplace_back([&] {
    void* p;
    EXPECT_EQ(shard_region_alloc(r, 8, 8, &p), SHARD_OK);  // D's heap exists now
    EXPECT_EQ(shard_region_dealloc(r, p, 8, 8), SHARD_OK);
    d_ready = true;
    consumer(pipes[1]);
  });
  while (!d_ready.load()) std::this_thread::yield();
  ts.emplace_back([&] { producer(pipes[0], 1); });
  ts.emplace_back([&] { consumer(pipes[0]); });
  ts.emplace_back([&] { producer(pipes[1], 2); });
  for (int k = 0; k < 2; ++k)
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        const size_t u = shard_region_used_bytes(r);
        const size_t a = shard_region_available_bytes(r);
        size_t w = worst_used.load();
        while (u > w && !worst_used.compare_exchange_weak(w, u)) {
        }
        w = worst_avail.load();
        while (a > w && !worst_avail.compare_exchange_weak(w, a)) {
        }
        w = worst_sum.load();
        while (u + a > w && !worst_sum.compare_exchange_weak(w, u + a)) {
        }
        reads++;
      }
    });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (std::chrono::steady_clock::now() < until && worst_used.load() <= total)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  for (auto& t : ts) t.join();
  for (Pipe& pipe : pipes)
    for (const Blk& b : pipe.q) EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
  EXPECT_LE(worst_used.load(), total) << "a reader was told used_bytes > total_bytes (" << total
                                      << ") after " << reads.load() << " reads";
  EXPECT_LE(worst_avail.load(), total);
}

// ---------------------------------------------------------------------------
// Quiescent exactness after a mixed workload: every class boundary, aligned
// blocks, blocks above the largest class, freed by other threads, some after
// their allocating thread exited. When all is freed, used is 0 and available
// is back at its starting value.
TEST(RegionReview, ExactAfterMixedWorkloadAndAvailableComesBack) {
  shard_region* r = fresh_region(1024 * MiB);
  const std::vector<size_t> sizes = boundary_sizes();
  constexpr int kThreads = 4;
  auto round = [&](int round_no, std::vector<Blk>* leftover) {
    std::vector<std::vector<Blk>> per(kThreads);
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int k = 0; k < kThreads; ++k)
      ts.emplace_back([&, k] {
        Rng rng(uint64_t(round_no) * 100 + unsigned(k));
        for (size_t i = 0; i < sizes.size() * 3; ++i) {
          const size_t size = sizes[(i + unsigned(k)) % sizes.size()];
          const size_t align = rng.chance(30) ? size_t{1} << rng.below(21) : 8;
          void* p = nullptr;
          const shard_status s = shard_region_alloc(r, size, align, &p);
          if (s != SHARD_OK || !is_aligned(p, align)) {
            ADD_FAILURE() << "alloc(" << size << ", " << align << ") = " << s;
            failures++;
            continue;
          }
          const uint64_t seed = uint64_t(round_no) << 40 | uint64_t(k) << 32 | i;
          fill_sparse(p, size, seed, 1024);
          per[k].push_back({p, size, align, seed});
        }
      });
    for (auto& t : ts) t.join();  // these threads exit with live blocks
    EXPECT_EQ(failures.load(), 0) << stats(r);
    size_t sum = 0;
    for (auto& v : per)
      for (auto& b : v) sum += b.size;
    EXPECT_EQ(shard_region_used_bytes(r), sum);
    if (getenv("REVIEW_PRINT"))
      printf("round %d filled: %s\n", round_no, ::testing::PrintToString(stats(r)).c_str());
    const size_t total = shard_region_total_bytes(r);
    EXPECT_LE(shard_region_used_bytes(r) + shard_region_available_bytes(r), total);
    // New threads free the blocks of the exited ones, crosswise; half of
    // thread 0's blocks stay for the main thread.
    ts.clear();
    for (int k = 0; k < kThreads; ++k)
      ts.emplace_back([&, k] {
        std::vector<Blk>& v = per[(k + 1) % kThreads];
        size_t keep = (k + 1) % kThreads == 0 ? v.size() / 2 : 0;
        for (size_t i = keep; i < v.size(); ++i) {
          const Blk& b = v[i];
          if (!check_sparse(b.p, b.size, b.seed, 1024)) failures++;
          if (shard_region_dealloc(r, b.p, b.size, b.align) != SHARD_OK) failures++;
        }
        v.resize(keep);
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(failures.load(), 0);
    size_t left = 0;
    for (auto& b : per[0]) {
      left += b.size;
      leftover->push_back(b);
    }
    EXPECT_EQ(shard_region_used_bytes(r), left);
  };
  // Warm-up: heaps of kThreads * 2 threads and the main thread exist.
  std::vector<Blk> leftover;
  round(0, &leftover);
  for (const Blk& b : leftover) ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
  leftover.clear();
  const RegionStats base = stats(r);
  EXPECT_EQ(base.used, 0u);
  for (int n = 1; n <= 3; ++n) {
    round(n, &leftover);
    for (const Blk& b : leftover) {
      ASSERT_TRUE(check_sparse(b.p, b.size, b.seed, 1024));
      ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
    }
    leftover.clear();
    EXPECT_EQ(stats(r), base) << "round " << n;
  }
}

// ---------------------------------------------------------------------------
// Region-bound heaps destroyed with live blocks while other threads use the
// region itself: the region's counts come back exactly, repeatedly (records
// reused, stale thread caches).
TEST(RegionReview, RegionHeapsDestroyedWithLiveBlocksUnderRegionLoad) {
  shard_region* r = fresh_region(128 * MiB);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  // Background load on the region itself.
  std::thread bg([&] {
    Rng rng(7);
    std::vector<Blk> live;
    while (!stop.load()) {
      if (live.size() < 2000 && rng.chance(60)) {
        const size_t size = rng.chance(2) ? 150 * KiB + rng.below(600 * KiB) : rng.below(3000);
        void* p;
        if (shard_region_alloc(r, size, 16, &p) == SHARD_OK) live.push_back({p, size, 16, 0});
      } else if (!live.empty()) {
        const size_t i = rng.below(live.size());
        if (shard_region_dealloc(r, live[i].p, live[i].size, 16) != SHARD_OK) failures++;
        live[i] = live.back();
        live.pop_back();
      }
    }
    for (auto& b : live)
      if (shard_region_dealloc(r, b.p, b.size, 16) != SHARD_OK) failures++;
  });
  // Warm: main thread's heap in r.
  {
    void* p;
    ASSERT_EQ(shard_region_alloc(r, 8, 8, &p), SHARD_OK);
    ASSERT_EQ(shard_region_dealloc(r, p, 8, 8), SHARD_OK);
  }
  for (int round = 0; round < 30; ++round) {
    shard_heap* h = shard_heap_new_in_region(r, (4 + size_t(round % 5)) * MiB + 12345);
    if (h == nullptr) {
      failures++;
      continue;
    }
    std::vector<std::thread> ts;
    std::mutex m;
    std::vector<void*> shared;
    for (int k = 0; k < 3; ++k)
      ts.emplace_back([&, k] {
        Rng rng(uint64_t(round) * 10 + unsigned(k));
        for (int i = 0; i < 2000; ++i) {
          const size_t size = rng.chance(3) ? 200 * KiB : 8 + rng.below(4000);
          void* p = rng.chance(20) ? shard_heap_malloc_aligned(h, size, size_t{1} << rng.below(14))
                                   : shard_heap_malloc(h, size);
          if (p == nullptr) continue;
          std::memset(p, k, std::min<size_t>(size, 64));
          std::lock_guard<std::mutex> g(m);
          if (rng.chance(50) && !shared.empty()) {
            shard_heap_free(h, shared.back());  // free another thread's block
            shared.pop_back();
          }
          shared.push_back(p);
        }
      });
    for (auto& t : ts) t.join();
    shard_heap_destroy(h);  // with live blocks
  }
  stop = true;
  bg.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// ---------------------------------------------------------------------------
// add_memory racing allocation: threads allocate until the region is out,
// while another hands over many small unaligned pieces. No two blocks
// overlap, every block lies in memory handed over, and total is the sum of
// the sizes handed over.
TEST(RegionReview, AddMemoryRacingAllocationManySmallPieces) {
  const size_t first = 2 * MiB;
  void* m0 = map_memory(first);
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, m0, first), SHARD_OK);
  struct Range {
    uintptr_t a, b;
  };
  std::vector<Range> ranges{{uintptr_t(m0), uintptr_t(m0) + first}};
  std::mutex rm;
  size_t handed = first;
  std::atomic<bool> adding_done{false};
  constexpr int kThreads = 3;
  std::vector<std::vector<Blk>> per(kThreads);
  std::vector<std::thread> ts;
  for (int k = 0; k < kThreads; ++k)
    ts.emplace_back([&, k] {
      Rng rng(uint64_t(k) + 50);
      int misses = 0;
      while (misses < 2000) {
        const size_t size = rng.chance(5) ? 100 * KiB + rng.below(500 * KiB) : 1 + rng.below(9000);
        const size_t align = rng.chance(10) ? size_t{1} << rng.below(16) : 16;
        void* p = nullptr;
        const shard_status s = shard_region_alloc(r, size, align, &p);
        if (s == SHARD_OK) {
          per[k].push_back({p, size, align, 0});
          std::memset(p, 0xa0 + k, std::min<size_t>(size, 256));
          if (!per[k].empty() && rng.chance(20)) {
            const Blk b = per[k][rng.below(per[k].size())];
            auto it = std::find_if(per[k].begin(), per[k].end(),
                                   [&](const Blk& x) { return x.p == b.p; });
            ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
            per[k].erase(it);
          }
        } else {
          ASSERT_EQ(s, SHARD_NO_MEMORY);
          if (adding_done.load()) ++misses;
          std::this_thread::yield();
        }
      }
    });
  std::thread adder([&] {
    Rng rng(99);
    for (int i = 0; i < 60; ++i) {
      // Pieces of 1..3 MiB at an unaligned offset, some adjacent to the last.
      const size_t size = MiB + rng.below(2 * MiB) + 1;
      auto* m = static_cast<unsigned char*>(map_memory(size + 8192));
      unsigned char* start = m + 1 + rng.below(4000);
      const shard_status s = shard_region_add_memory(r, start, size);
      if (s == SHARD_OK) {
        std::lock_guard<std::mutex> g(rm);
        ranges.push_back({uintptr_t(start), uintptr_t(start) + size});
        handed += size;
      } else {
        EXPECT_EQ(s, SHARD_INVALID_PARAM) << "piece of " << size;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    adding_done = true;
  });
  adder.join();
  for (auto& t : ts) t.join();
  EXPECT_EQ(shard_region_total_bytes(r), handed);
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  size_t sum = 0;
  for (int k = 0; k < kThreads; ++k)
    for (const Blk& b : per[k]) {
      sum += b.size;
      const uintptr_t a = uintptr_t(b.p);
      spans.push_back({a, a + std::max<size_t>(b.size, 1)});
      bool inside = false;
      for (const Range& g : ranges) inside |= a >= g.a && a + b.size <= g.b;
      EXPECT_TRUE(inside) << b.p << " size " << b.size;
      const unsigned char want = static_cast<unsigned char>(0xa0 + k);
      for (size_t i = 0; i < std::min<size_t>(b.size, 256); ++i)
        if (static_cast<unsigned char*>(b.p)[i] != want) {
          ADD_FAILURE() << "block " << b.p << " overwritten";
          break;
        }
    }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    ASSERT_LE(spans[i - 1].second, spans[i].first) << "overlapping blocks";
  EXPECT_EQ(shard_region_used_bytes(r), sum);
  for (int k = 0; k < kThreads; ++k)
    for (const Blk& b : per[k]) EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

}  // namespace
