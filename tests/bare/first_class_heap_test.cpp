// First-class heaps bound to a region on the bare-metal platform (per-CPU
// heaps; threads play CPUs, as in cpu_heaps_test.cpp). The per-CPU table of
// a heap lives in its region's metadata and keeps each CPU's generation: a
// heap made on the record of a destroyed one must give every CPU a fresh
// heap in the new incarnation, never the old one.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "bare/cpu_threads.h"
#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardtest;
using namespace bare_test;

namespace {

constexpr unsigned kCpus = 4;
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new CpuHooks(kCpus));

struct Live {
  void* p;
  size_t size;
  uint64_t seed;
};

TEST(BareFirstClassHeap, CpusShareARegionHeapWithCrossCpuFrees) {
  shard_region* r = new_region(128 * MiB);
  const size_t region_used = shard_region_used_bytes(r);
  shard_heap* h = shard_heap_new_in_region(r, 64 * MiB);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(shard_region_used_bytes(r), region_used + 64 * MiB);
  const size_t per_cpu = scaled(3000, stress_scale(), 200);
  std::vector<Live> made[kCpus];
  on_cpus(0, kCpus, [&](unsigned cpu) {
    for (size_t i = 0; i < per_cpu; ++i) {
      const size_t size = i % 500 == 0 ? 200000 : 8 + (i * 131 + cpu) % 3000;  // < 8 MiB per CPU
      void* p = shard_heap_malloc(h, size);
      ASSERT_NE(p, nullptr);
      fill_pattern(p, size < 4096 ? size : 64, cpu * 1000000 + i);
      made[cpu].push_back({p, size, cpu * 1000000 + i});
    }
  });
  EXPECT_GT(shard_heap_used_bytes(h), 0u);
  // Each CPU frees the blocks of the next one: every free is remote.
  on_cpus(0, kCpus, [&](unsigned cpu) {
    for (const Live& b : made[(cpu + 1) % kCpus]) {
      EXPECT_EQ(check_pattern(b.p, b.size < 4096 ? b.size : 64, b.seed), SIZE_MAX);
      shard_heap_free(h, b.p);
    }
  });
  EXPECT_EQ(shard_heap_used_bytes(h), 0u);
  shard_heap_destroy(h);
  EXPECT_EQ(shard_region_used_bytes(r), region_used);
}

// Every CPU uses a heap, the heap is destroyed with its blocks, and a new heap
// takes the record (and, the region giving the same block back, the same
// memory): every CPU must get a heap of the new heap, each its own.
TEST(BareFirstClassHeap, ReusedRecordGivesEveryCpuAFreshHeap) {
  shard_region* r = new_region(64 * MiB);
  shard_heap* previous = nullptr;
  int reused = 0;
  for (int round = 0; round < 30; ++round) {
    const size_t region_used = shard_region_used_bytes(r);
    shard_heap* h = shard_heap_new_in_region(r, 8 * MiB);
    ASSERT_NE(h, nullptr);
    reused += h == previous;
    previous = h;
    std::atomic<const void*> heap_of[kCpus] = {};
    std::vector<Live> made[kCpus];
    // CPUs in a different order each round, one at a time: a CPU that took a
    // stale heap would share it with the CPU that now owns that memory.
    const unsigned first = unsigned(round) % kCpus;
    for (unsigned k = 0; k < kCpus; ++k) {
      on_cpus((first + k) % kCpus, 1, [&](unsigned cpu) {
        for (size_t i = 0; i < 200; ++i) {
          const size_t size = 16 + (i * 77 + cpu * 5) % 2000;
          void* p = shard_heap_malloc(h, size);
          ASSERT_NE(p, nullptr);
          fill_pattern(p, size, uint64_t(round) * 10000 + cpu * 1000 + i);
          made[cpu].push_back({p, size, uint64_t(round) * 10000 + cpu * 1000 + i});
          const void* mine = owner_heap(p);
          const void* expected = nullptr;
          if (!heap_of[cpu].compare_exchange_strong(expected, mine)) {
            EXPECT_EQ(expected, mine) << "CPU " << cpu << " allocates from one heap";
          }
        }
      });
    }
    std::set<const void*> distinct;
    for (auto& x : heap_of) distinct.insert(x.load());
    EXPECT_EQ(distinct.size(), size_t{kCpus}) << "round " << round << ": each CPU its own heap";
    for (unsigned cpu = 0; cpu < kCpus; ++cpu) {
      for (const Live& b : made[cpu]) ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
    }
    if (round % 3 == 0) {  // some rounds free first; the others leave it to destroy
      for (unsigned cpu = 0; cpu < kCpus; ++cpu) {
        for (const Live& b : made[cpu]) shard_heap_free(h, b.p);
      }
      EXPECT_EQ(shard_heap_used_bytes(h), 0u);
    }
    shard_heap_destroy(h);
    EXPECT_EQ(shard_region_used_bytes(r), region_used);
  }
  EXPECT_EQ(reused, 29) << "each heap after the first reuses the record";
}

TEST(BareFirstClassHeap, FailuresReturnNull) {
  shard_region* r = new_region(8 * MiB);
  EXPECT_EQ(shard_heap_new_in_region(nullptr, 2 * MiB), nullptr);
  EXPECT_EQ(shard_heap_new_in_region(r, SHARD_HEAP_REGION_MIN_BYTES - 1), nullptr);
  EXPECT_EQ(shard_heap_new_in_region(r, 64 * MiB), nullptr);
  shard_heap* h = shard_heap_new_in_region(r, 2 * MiB);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(shard_heap_malloc(h, SIZE_MAX), nullptr);
  EXPECT_EQ(shard_heap_malloc(h, 8 * MiB), nullptr) << "more than the heap's span";
  EXPECT_EQ(shard_heap_malloc_aligned(h, 8, 3), nullptr);
  void* p = shard_heap_malloc(h, 100);
  ASSERT_NE(p, nullptr);
  shard_heap_free(h, p);
  shard_heap_destroy(h);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

TEST(BareFirstClassHeapDeathTest, ForeignFreeAndUseAfterDestroyAreFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  shard_region* r = new_region(16 * MiB);
  EXPECT_DEATH(
      {
        shard_heap* h = shard_heap_new_in_region(r, 4 * MiB);
        void* p = nullptr;
        (void)shard_region_alloc(r, 64, 8, &p);
        shard_heap_free(h, p);
      },
      "shardalloc fatal: free of a pointer that is not allocated");
  EXPECT_DEATH(
      {
        shard_heap* h = shard_heap_new_in_region(r, 4 * MiB);
        shard_heap_destroy(h);
        (void)shard_heap_malloc(h, 64);
      },
      "shardalloc fatal: use of a destroyed heap");
}

}  // namespace
