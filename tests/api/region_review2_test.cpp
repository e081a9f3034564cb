// Adversarial review of the region API, part 2: introspection (stats,
// snapshots) read while other threads churn huge blocks, region-bound heaps
// and add_memory; idle owners and exited threads holding remote frees;
// exhaustion and recovery with several threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/checked.h"
#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "shardalloc/stats.h"
#include "support/rng.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

shard_region* fresh_region(size_t bytes) {
  shard_region* r = nullptr;
  EXPECT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  return r;
}

// Stats and snapshots of a region read on one thread while others allocate
// and free huge blocks (segments claimed and released), make and destroy
// region-bound heaps, and add memory: no crash, and the figures stay within
// what the region has.
TEST(RegionReview2, StatsAndSnapshotsWhileOthersChurn) {
  shard_region* r = fresh_region(32 * MiB);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int k = 0; k < 2; ++k)
    ts.emplace_back([&, k] {
      Rng rng(uint64_t(k) + 3);
      std::vector<std::pair<void*, size_t>> live;
      while (!stop.load(std::memory_order_relaxed)) {
        if (live.size() < 40 && rng.chance(55)) {
          const size_t size = rng.chance(50) ? 130 * KiB + rng.below(2 * MiB) : rng.below(40000);
          void* p;
          if (shard_region_alloc(r, size, 16, &p) == SHARD_OK) live.push_back({p, size});
        } else if (!live.empty()) {
          const size_t i = rng.below(live.size());
          if (shard_region_dealloc(r, live[i].first, live[i].second, 16) != SHARD_OK) failures++;
          live[i] = live.back();
          live.pop_back();
        }
      }
      for (auto& b : live)
        if (shard_region_dealloc(r, b.first, b.second, 16) != SHARD_OK) failures++;
    });
  ts.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      shard_heap* h = shard_heap_new_in_region(r, 2 * MiB);
      if (h == nullptr) continue;
      for (int i = 0; i < 50; ++i) shard_heap_malloc(h, 100 + size_t(i) * 1000);
      shard_heap_destroy(h);
    }
  });
  ts.emplace_back([&] {
    for (int i = 0; i < 20 && !stop.load(); ++i) {
      const size_t size = 3 * MiB + 12345;
      ASSERT_EQ(shard_region_add_memory(r, static_cast<char*>(map_memory(size + 64)) + 7, size),
                SHARD_OK);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<char> buf(4 * MiB);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  size_t snaps = 0;
  while (std::chrono::steady_clock::now() < until) {
    shard_stats st;
    ASSERT_EQ(shard_region_stats(r, &st), SHARD_OK);
    EXPECT_LE(st.segments * st.segment_size, st.reserved_bytes) << "more slots claimed than exist";
    EXPECT_LE(st.live_bytes, st.reserved_bytes);
    const size_t n = shard_region_heap_snapshot(r, buf.data(), buf.size());
    ASSERT_LT(n, buf.size());
    ASSERT_EQ(std::strncmp(buf.data(), "shardalloc-snapshot 1", 21), 0);
    char json[8192];
    ASSERT_LT(shard_region_stats_json(r, json, sizeof json), sizeof json);
    ++snaps;
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(snaps, 5u);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// Exhaustion with several threads at once, then recovery: each thread fills
// the region until SHARD_NO_MEMORY, then all free (crosswise), then each can
// fill it again to (about) the same amount: nothing is lost for good.
TEST(RegionReview2, ExhaustAndRecoverManyThreadsCrosswise) {
  shard_region* r = fresh_region(24 * MiB);
  constexpr int kThreads = 4;
  size_t got[3] = {0, 0, 0};
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<std::vector<std::pair<void*, size_t>>> per(kThreads);
    std::vector<std::thread> ts;
    for (int k = 0; k < kThreads; ++k)
      ts.emplace_back([&, k] {
        Rng rng(uint64_t(pass) * 10 + unsigned(k));
        int misses = 0;
        while (misses < 50) {
          const size_t size =
              rng.chance(10) ? 100 * KiB + rng.below(300 * KiB) : 16 + rng.below(3000);
          void* p;
          const shard_status s = shard_region_alloc(r, size, 16, &p);
          if (s == SHARD_OK) {
            per[k].push_back({p, size});
          } else {
            ASSERT_EQ(s, SHARD_NO_MEMORY);
            ++misses;
          }
        }
      });
    for (auto& t : ts) t.join();  // exit with their blocks live
    size_t sum = 0;
    for (auto& v : per)
      for (auto& b : v) sum += b.first ? b.second : 0;
    got[pass] = sum;
    EXPECT_EQ(shard_region_used_bytes(r), sum);
    ts.clear();
    for (int k = 0; k < kThreads; ++k)
      ts.emplace_back([&, k] {
        for (auto& b : per[(k + 1) % kThreads])
          EXPECT_EQ(shard_region_dealloc(r, b.first, b.second, 16), SHARD_OK);
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(shard_region_used_bytes(r), 0u);
  }
  // A big block must fit after everything was freed.
  void* big = nullptr;
  EXPECT_EQ(shard_region_alloc(r, 16 * MiB, 16, &big), SHARD_OK) << stats(r);
  if (big) {
    EXPECT_EQ(shard_region_dealloc(r, big, 16 * MiB, 16), SHARD_OK);
  }
  EXPECT_GT(got[1], got[0] / 2) << got[0] << " then " << got[1];
  EXPECT_GT(got[2], got[0] / 2) << got[0] << " then " << got[2];
}

// A thread fills the region and exits; the main thread frees everything;
// with no other thread ever starting, the main thread can take one block
// spanning most of the region (exited threads' memory comes back without
// adoption).
TEST(RegionReview2, ExitedFillerMemoryComesBackWithoutAdoption) {
  shard_region* r = fresh_region(32 * MiB);
  void* warm;
  ASSERT_EQ(shard_region_alloc(r, 8, 8, &warm), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, warm, 8, 8), SHARD_OK);
  const RegionStats base = stats(r);
  std::vector<std::pair<void*, size_t>> blocks;
  std::thread([&] {
    Rng rng(5);
    for (;;) {
      const size_t size = rng.chance(5) ? 20000 + rng.below(100000) : 8 + rng.below(2000);
      void* p;
      if (shard_region_alloc(r, size, 16, &p) != SHARD_OK) break;
      blocks.push_back({p, size});
    }
  }).join();
  for (auto& b : blocks) ASSERT_EQ(shard_region_dealloc(r, b.first, b.second, 16), SHARD_OK);
  EXPECT_EQ(stats(r), base);
  void* big = nullptr;
  EXPECT_EQ(shard_region_alloc(r, 24 * MiB, 16, &big), SHARD_OK) << stats(r);
  if (big) {
    EXPECT_EQ(shard_region_dealloc(r, big, 24 * MiB, 16), SHARD_OK);
  }
}

}  // namespace

// Sizes and alignments at and around 2^62 (kMaxRequest), for the region and a
// region-bound heap: clean failures, nothing changes.
TEST(RegionReview2, RequestsAroundTheLargestAreCleanFailures) {
  shard_region* r = fresh_region(16 * MiB);
  void* w;
  ASSERT_EQ(shard_region_alloc(r, 8, 8, &w), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, w, 8, 8), SHARD_OK);
  shard_heap* h = shard_heap_new_in_region(r, 4 * MiB);
  ASSERT_NE(h, nullptr);
  const RegionStats base = stats(r);
  const size_t big = size_t{1} << 62;
  const size_t sizes[] = {
      big - 1, big, big + 1, big - 4096, big - 512 * KiB, (size_t{1} << 63) - 1};
  const size_t aligns[] = {1, 16, 4096, 512 * KiB, big >> 1, big, size_t{1} << 63};
  for (size_t s : sizes)
    for (size_t a : aligns) {
      void* p = reinterpret_cast<void*>(1);
      const shard_status st = shard_region_alloc(r, s, a, &p);
      EXPECT_EQ(st, SHARD_NO_MEMORY) << "size " << s << " align " << a;
      EXPECT_EQ(shard_heap_malloc_aligned(h, s, a), nullptr) << "size " << s << " align " << a;
    }
  for (size_t a : {big >> 1, big, size_t{1} << 63}) {
    void* p = nullptr;
    EXPECT_EQ(shard_region_alloc(r, 100, a, &p), SHARD_NO_MEMORY) << "align " << a;
    EXPECT_EQ(shard_heap_malloc_aligned(h, 100, a), nullptr) << "align " << a;
  }
  EXPECT_EQ(shard_heap_new_in_region(r, big), nullptr);
  EXPECT_EQ(shard_heap_new_in_region(r, big - 1), nullptr);
  EXPECT_EQ(shard_heap_new_in_region(r, SIZE_MAX), nullptr);
  EXPECT_EQ(stats(r), base);
  shard_heap_destroy(h);
}

// Region-bound heaps made and destroyed on several threads at once, in a
// region too small for all of them (some shard_heap_new_in_region calls
// fail), with blocks freed by threads other than the allocating one and
// heaps destroyed by a thread other than their maker. Afterwards the region
// is back where it was after a first such round (records are reused, not
// made anew).
TEST(RegionReview2, RegionHeapsMadeAndDestroyedConcurrentlyInASmallRegion) {
  shard_region* r = fresh_region(24 * MiB);
  constexpr int kThreads = 4;
  std::atomic<int> made{0}, refused{0}, bad{0};
  auto round = [&](int round_no) {
    std::mutex m;
    std::vector<shard_heap*> to_destroy;
    std::vector<std::thread> ts;
    for (int k = 0; k < kThreads; ++k)
      ts.emplace_back([&, k] {
        Rng rng(uint64_t(round_no) * 100 + unsigned(k));
        for (int i = 0; i < 40; ++i) {
          shard_heap* h = shard_heap_new_in_region(r, MiB + rng.below(6 * MiB));
          if (h == nullptr) {
            refused++;
          } else {
            made++;
            std::vector<void*> blocks;
            for (int j = 0; j < 200; ++j) {
              const size_t size = rng.chance(5) ? 150 * KiB : 16 + rng.below(5000);
              void* p = shard_heap_malloc(h, size);
              if (p != nullptr) {
                std::memset(p, 0x5c, std::min<size_t>(size, 128));
                blocks.push_back(p);
              }
            }
            for (size_t j = 0; j < blocks.size(); j += 2) shard_heap_free(h, blocks[j]);
            std::lock_guard<std::mutex> g(m);
            to_destroy.push_back(h);  // another thread may destroy it
          }
          // Destroy someone's heap (maybe our own), with live blocks.
          shard_heap* victim = nullptr;
          {
            std::lock_guard<std::mutex> g(m);
            if (!to_destroy.empty() && rng.chance(70)) {
              const size_t at = rng.below(to_destroy.size());
              victim = to_destroy[at];
              to_destroy[at] = to_destroy.back();
              to_destroy.pop_back();
            }
          }
          if (victim != nullptr) shard_heap_destroy(victim);
          // Some region blocks too.
          void* p = nullptr;
          if (shard_region_alloc(r, 3000, 16, &p) == SHARD_OK &&
              shard_region_dealloc(r, p, 3000, 16) != SHARD_OK)
            bad++;
        }
      });
    for (auto& t : ts) t.join();
    for (shard_heap* h : to_destroy) shard_heap_destroy(h);
  };
  round(0);
  const RegionStats base = stats(r);
  EXPECT_EQ(base.used, 0u);
  for (int n = 1; n <= 4; ++n) {
    round(n);
    EXPECT_EQ(stats(r), base) << "round " << n;
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(made.load(), 0);
  std::printf("heaps made %d, refused %d\n", made.load(), refused.load());
  void* big = nullptr;
  EXPECT_EQ(shard_region_alloc(r, 16 * MiB, 16, &big), SHARD_OK) << stats(r);
  if (big) {
    EXPECT_EQ(shard_region_dealloc(r, big, 16 * MiB, 16), SHARD_OK);
  }
}

// More regions (and region-bound heaps) than a thread keeps at hand (8):
// each call into a ninth gives a heap back. Threads go round 10 regions and
// 3 region-bound heaps, allocating in each and freeing blocks of the others
// (remote frees into heaps given back meanwhile); then, with the threads
// still alive and caching them, the region-bound heaps are destroyed (live
// blocks in them) and the threads go on with the regions. Every region ends
// exact, and those without a region-bound heap back at their starting
// available.
TEST(RegionReview2, MoreRegionsThanSlotsWithRegionHeapsAndRemoteFrees) {
  constexpr int kRegions = 10, kHeaps = 3, kThreads = 3;
  shard_region* rs[kRegions];
  for (int i = 0; i < kRegions; ++i) rs[i] = fresh_region(16 * MiB);
  std::barrier sync(kThreads + 1);
  RegionStats base[kRegions];
  shard_heap* hs[kHeaps] = {};
  struct RB {
    int region;
    void* p;
    size_t size;
  };
  std::mutex m;
  std::vector<RB> pool;
  std::atomic<int> bad{0};
  auto work = [&](Rng& rng, bool with_heaps) {
    for (int i = 0; i < 8000; ++i) {
      const int which = int(rng.below(with_heaps ? kRegions + kHeaps : kRegions));
      if (which >= kRegions) {
        shard_heap* h = hs[which - kRegions];
        void* p = shard_heap_malloc(h, 16 + rng.below(4000));
        if (p != nullptr && rng.chance(50)) shard_heap_free(h, p);
        continue;
      }
      shard_region* r = rs[which];
      const size_t size = rng.chance(3) ? 200 * KiB : 8 + rng.below(3000);
      void* p;
      if (shard_region_alloc(r, size, 16, &p) != SHARD_OK) {
        bad++;
        continue;
      }
      std::memset(p, which, std::min<size_t>(size, 32));
      RB got{-1, nullptr, 0};
      {
        std::lock_guard<std::mutex> g(m);
        pool.push_back({which, p, size});
        if (pool.size() > 300 || rng.chance(40)) {
          const size_t at = rng.below(pool.size());
          got = pool[at];
          pool[at] = pool.back();
          pool.pop_back();
        }
      }
      if (got.p != nullptr && shard_region_dealloc(rs[got.region], got.p, got.size, 16) != SHARD_OK)
        bad++;
    }
  };
  std::vector<std::thread> ts;
  for (int k = 0; k < kThreads; ++k)
    ts.emplace_back([&, k] {
      Rng rng(uint64_t(k) + 31);
      for (auto* r : rs) {  // every thread's heap in every region exists
        void* p;
        EXPECT_EQ(shard_region_alloc(r, 8, 8, &p), SHARD_OK);
        EXPECT_EQ(shard_region_dealloc(r, p, 8, 8), SHARD_OK);
      }
      sync.arrive_and_wait();  // 1: baseline, heaps made
      sync.arrive_and_wait();  // 2
      work(rng, true);
      sync.arrive_and_wait();  // 3: heaps destroyed by the main thread
      sync.arrive_and_wait();  // 4
      work(rng, false);
    });
  sync.arrive_and_wait();  // 1
  for (int i = 0; i < kRegions; ++i) base[i] = stats(rs[i]);
  for (int i = 0; i < kHeaps; ++i) {
    hs[i] = shard_heap_new_in_region(rs[i], 4 * MiB);
    ASSERT_NE(hs[i], nullptr);
  }
  sync.arrive_and_wait();  // 2
  sync.arrive_and_wait();  // 3
  for (auto* h : hs) shard_heap_destroy(h);
  sync.arrive_and_wait();  // 4
  for (auto& t : ts) t.join();
  for (const RB& b : pool) EXPECT_EQ(shard_region_dealloc(rs[b.region], b.p, b.size, 16), SHARD_OK);
  EXPECT_EQ(bad.load(), 0);
  for (int i = 0; i < kRegions; ++i) {
    EXPECT_EQ(shard_region_used_bytes(rs[i]), 0u) << "region " << i;
    if (i >= kHeaps) {
      EXPECT_EQ(stats(rs[i]), base[i]) << "region " << i;
    }
  }
}

// Threads that exit while other threads are freeing their blocks (abandon
// racing remote frees, sealed pages): short-lived producers hand every block
// to long-lived consumers and exit at once. In the end nothing is used, the
// region's available is back at its baseline, and one block of most of the
// region can be had: no memory stays with an exited thread's heap.
TEST(RegionReview2, ProducersExitWhileConsumersFreeTheirBlocks) {
  const size_t bytes = 48 * MiB;
  shard_region* r = fresh_region(bytes);
  struct Q {
    std::mutex m;
    std::vector<std::pair<void*, size_t>> v;
  } q;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  auto consume = [&] {
    std::vector<std::pair<void*, size_t>> mine;
    for (;;) {
      {
        std::lock_guard<std::mutex> g(q.m);
        mine.swap(q.v);
      }
      if (mine.empty()) {
        if (stop.load()) break;
        std::this_thread::yield();
      }
      for (auto& b : mine)
        if (shard_region_dealloc(r, b.first, b.second, 16) != SHARD_OK) bad++;
      mine.clear();
    }
  };
  // Baseline: a warm round with the consumers' heaps and one producer heap.
  void* w;
  ASSERT_EQ(shard_region_alloc(r, 8, 8, &w), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, w, 8, 8), SHARD_OK);
  std::thread c1(consume), c2(consume);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::thread> ps;
    for (int k = 0; k < 2; ++k)
      ps.emplace_back([&, k] {
        Rng rng(uint64_t(round) * 2 + unsigned(k));
        std::vector<std::pair<void*, size_t>> made;
        for (int i = 0; i < 400; ++i) {
          const size_t size = rng.chance(2)    ? 100 * KiB
                              : rng.chance(10) ? 20000
                                               : 16 + rng.below(1000);
          void* p;
          if (shard_region_alloc(r, size, 16, &p) != SHARD_OK) continue;
          made.push_back({p, size});
          if (made.size() == 64) {
            std::lock_guard<std::mutex> g(q.m);
            q.v.insert(q.v.end(), made.begin(), made.end());
            made.clear();
          }
        }
        std::lock_guard<std::mutex> g(q.m);
        q.v.insert(q.v.end(), made.begin(), made.end());
      });  // exits at once
    for (auto& t : ps) t.join();
  }
  stop = true;
  c1.join();
  c2.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
  void* big = nullptr;
  EXPECT_EQ(shard_region_alloc(r, 40 * MiB, 16, &big), SHARD_OK) << stats(r);
  if (big) {
    EXPECT_EQ(shard_region_dealloc(r, big, 40 * MiB, 16), SHARD_OK);
  }
}

// dealloc of pointers into a live segment that are no block: its header,
// the gap before the first page's area, past the last block, on the owner
// thread and on another one (the fast paths differ). Each must be
// SHARD_NOT_ALLOCATED (or INVALID_PARAM) and change nothing.
TEST(RegionReview2, DeallocOfSegmentHeaderAndGapPointers) {
  shard_region* r = fresh_region(16 * MiB);
  std::vector<void*> live;
  for (size_t size : {size_t{16}, size_t{100}, size_t{1000}, size_t{5000}, size_t{20000},
                      size_t{60000}, size_t{120000}, size_t{300000}}) {
    void* p;
    ASSERT_EQ(shard_region_alloc(r, size, 16, &p), SHARD_OK);
    live.push_back(p);
  }
  const RegionStats before = stats(r);
  auto probe = [&](const char* who) {
    for (void* p : live) {
      const uintptr_t seg = uintptr_t(p) & ~(uintptr_t(512 * KiB) - 1);
      for (uintptr_t off :
           {uintptr_t(0), uintptr_t(8), uintptr_t(16), uintptr_t(64), uintptr_t(512),
            uintptr_t(1024), uintptr_t(2032), uintptr_t(2048) - 16}) {
        void* q = reinterpret_cast<void*>(seg + off);
        if (q == p) continue;
        for (size_t size : {size_t{0}, size_t{16}}) {
          const shard_status s = shard_region_dealloc(r, q, size, 16);
          EXPECT_TRUE(s == SHARD_NOT_ALLOCATED || s == SHARD_INVALID_PARAM)
              << who << ": dealloc(" << q << ") in the segment of " << p << " = " << s;
        }
      }
      for (uintptr_t q : {uintptr_t(p) - 16, uintptr_t(p) - 8}) {
        const shard_status s = shard_region_dealloc(r, reinterpret_cast<void*>(q), 0, 16);
        EXPECT_TRUE(s == SHARD_NOT_ALLOCATED || s == SHARD_INVALID_PARAM)
            << who << ": dealloc(" << reinterpret_cast<void*>(q) << ") before " << p << " = " << s;
      }
    }
    EXPECT_EQ(stats(r), before) << who;
  };
  probe("owner");
  std::thread([&] { probe("other thread"); }).join();
  for (void* p : live) (void)p;
  const size_t sizes[] = {16, 100, 1000, 5000, 20000, 60000, 120000, 300000};
  for (size_t i = 0; i < live.size(); ++i)
    EXPECT_EQ(shard_region_dealloc(r, live[i], sizes[i], 16), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// Region-bound heaps destroyed while the threads that used them exit (heap.h
// allows it), and the span given back is at once taken again from the region
// and filled: an exiting thread that still wrote into its heap in the old
// span would show in the pattern.
TEST(RegionReview2, RegionHeapDestroyedWhileItsThreadsExitSpanReusedAtOnce) {
  // Room for 4 threads at once, each with a page of each of about 60
  // classes (64 KiB each: about 4 MiB a thread; with an 8 MiB span a malloc
  // ran out when the threads overlapped, under TSan or load); checked
  // builds' guards and quarantine need more. The region has little room
  // besides the span, so that the blocks taken after the destroy land in it.
  const size_t span = shardalloc::core::kChecked ? 96 * MiB : 48 * MiB;
  shard_region* r = fresh_region(span + 16 * MiB);
  for (int round = 0; round < 30; ++round) {
    shard_heap* h = shard_heap_new_in_region(r, span);
    ASSERT_NE(h, nullptr);
    const int threads = 4;
    std::atomic<int> done{0};
    std::atomic<bool> ok{true};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        std::vector<void*> blocks;
        for (int i = 0; i < 300; ++i) {
          void* p = shard_heap_malloc(h, 16 + size_t((i * 53 + t) % 6000));
          if (p == nullptr) ok = false;
          blocks.push_back(p);
        }
        for (size_t i = 0; i < blocks.size(); i += 2) shard_heap_free(h, blocks[i]);
        done.fetch_add(1);  // the last call on h: from here on the thread only exits
      });
    while (done.load() != threads) std::this_thread::yield();
    shard_heap_destroy(h);  // races with the threads' exit
    // Take the memory back at once, as big blocks, and fill it.
    std::vector<std::pair<void*, size_t>> reuse;
    for (size_t i = 0; i < (span + 16 * MiB) / (2 * MiB); ++i) {
      void* p = nullptr;
      if (shard_region_alloc(r, 2 * MiB - 4096, 16, &p) != SHARD_OK) break;
      std::memset(p, 0xc3, 2 * MiB - 4096);
      reuse.push_back({p, 2 * MiB - 4096});
    }
    for (auto& t : ts) t.join();
    EXPECT_TRUE(ok.load());
    for (auto& b : reuse) {
      const auto* c = static_cast<const unsigned char*>(b.first);
      for (size_t i = 0; i < b.second; i += 64)
        if (c[i] != 0xc3) {
          ADD_FAILURE() << "round " << round << ": byte " << i << " of reused block " << b.first
                        << " changed after its span's heap was destroyed";
          break;
        }
      EXPECT_EQ(shard_region_dealloc(r, b.first, b.second, 16), SHARD_OK);
    }
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

namespace {

// As BareRegionReviewDeathTest.ARecordAtItsLastGenerationIsNotReusedUnderAStaleCpuSlot
// (tests/bare/region_review_test.cpp), hosted: a thread's heap cache entry
// keeps (domain, heap, 32-bit generation) (platform/linux/thread_heaps.cpp).
// A thread that used a region-bound heap once and then waited while the
// record went through its last generation: the record is not claimed again
// (had the generation wrapped, the entry would pass for current after 2^32
// incarnations), and the thread's next heap works in memory of its own.
void hosted_generation_wrap_scenario() {
  shard_region* r = fresh_region(64 * MiB);
  shard_heap* h = shard_heap_new_in_region(r, 4 * MiB);
  if (h == nullptr) std::_Exit(10);
  std::atomic<int> step{0};
  void* q = nullptr;
  shard_heap* h2 = nullptr;
  std::thread t([&] {
    shard_heap_free(h, shard_heap_malloc(h, 64));  // the cache entry: generation g
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    q = shard_heap_malloc(h2, 64);
    step = 3;
  });
  while (step.load() != 1) std::this_thread::yield();
  auto* record = reinterpret_cast<std::atomic<uint64_t>*>(h);  // DomainLife::word, first member
  const uint32_t g = uint32_t(record->load() >> 32);
  shard_heap_destroy(h);
  if (g == UINT32_MAX) std::_Exit(14);
  record->store(uint64_t{UINT32_MAX} << 32);  // FREE(2^32 - 1): what the last incarnation leaves
  void* filler = nullptr;
  if (shard_region_alloc(r, 4 * MiB, 16, &filler) != SHARD_OK) std::_Exit(11);
  std::memset(filler, 0xab, 4 * MiB);
  h2 = shard_heap_new_in_region(r, 4 * MiB);
  if (h2 == nullptr) std::_Exit(12);
  if (h2 == h) {
    std::fprintf(stderr, "the record was claimed again after its last generation\n");
    std::_Exit(13);
  }
  if (record->load() != uint64_t{UINT32_MAX} << 32) std::_Exit(15);
  step = 2;
  while (step.load() != 3) std::this_thread::yield();
  t.join();
  exit_checking_filler(filler, 4 * MiB, 0xab, q, "the thread's");
}

}  // namespace

TEST(RegionReview2DeathTest, ARecordAtItsLastGenerationIsNotReusedUnderAStaleCacheEntry) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(hosted_generation_wrap_scenario(), ::testing::ExitedWithCode(0), "");
}
