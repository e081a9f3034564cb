// The bare-metal platform on the host: per-CPU heaps, threads play CPUs
// (cpu_threads.h).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "bare/cpu_threads.h"
#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardtest;
using namespace bare_test;

namespace {

constexpr unsigned kCpus = 8;
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new CpuHooks(kCpus));

}  // namespace

TEST(CpuHook, SettingsAreFixedOnceHeapsExist) {
  shard_region* r = new_region(8 * MiB);
  void* p = nullptr;
  ASSERT_EQ(shard_region_alloc(r, 32, 8, &p), SHARD_OK);  // CPU 0's heap exists now
  EXPECT_EQ(shard_set_cpu_hook(current_cpu, kCpus), SHARD_OK) << "the same settings again are fine";
  EXPECT_EQ(shard_set_cpu_hook(current_cpu, kCpus * 2), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_set_cpu_hook(nullptr, 1), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_set_cpu_hook(current_cpu, 0), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_set_cpu_hook(nullptr, 2), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_dealloc(r, p, 32, 8), SHARD_OK);
}

TEST(CpuHeaps, OneHeapPerCpuKeptAcrossThreads) {
  shard_region* r = new_region(16 * MiB);
  const void* heap[3] = {};
  // CPU 3 twice, in two threads one after the other (a kernel thread that
  // migrated between calls, or two threads scheduled on CPU 3), then CPU 4.
  for (unsigned k = 0; k < 3; ++k) {
    on_cpus(k < 2 ? 3 : 4, 1, [&](unsigned) {
      void* p = nullptr;
      ASSERT_EQ(shard_region_alloc(r, 100, 8, &p), SHARD_OK);
      heap[k] = owner_heap(p);
      ASSERT_EQ(shard_region_dealloc(r, p, 100, 8), SHARD_OK);
    });
  }
  EXPECT_NE(heap[0], nullptr);
  EXPECT_EQ(heap[0], heap[1]) << "a CPU keeps its heap";
  EXPECT_NE(heap[0], heap[2]) << "each CPU has its own heap";
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// CPU c passes blocks to CPU c+1 through a ring while receiving from CPU c-1:
// every free is remote and races with the owner's allocations.
TEST(CpuHeaps, CrossCpuFreeStream) {
  constexpr unsigned kN = 4;
  constexpr size_t kSlots = 256;
  const size_t blocks = scaled(100000, stress_scale(), 2000);
  shard_region* r = new_region(256 * MiB);
  on_cpus(0, kN, [&](unsigned) {  // warm-up: every CPU's heap exists
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, 8, 8, &p), SHARD_OK);
    ASSERT_EQ(shard_region_dealloc(r, p, 8, 8), SHARD_OK);
  });
  const RegionStats before = stats(r);

  struct Msg {
    void* p;
    size_t size;
  };
  struct Ring {
    alignas(64) std::atomic<size_t> head{0};
    alignas(64) std::atomic<size_t> tail{0};
    Msg slots[kSlots];
  };
  std::vector<Ring> rings(kN);
  std::atomic<size_t> bad{0};
  on_cpus(0, kN, [&](unsigned cpu) {
    Ring& out = rings[cpu];
    Ring& in = rings[(cpu + kN - 1) % kN];
    Rng rng(cpu + 1);
    size_t produced = 0, consumed = 0;
    while (produced < blocks || consumed < blocks) {
      const size_t h = out.head.load(std::memory_order_relaxed);
      if (produced < blocks && h - out.tail.load(std::memory_order_acquire) < kSlots) {
        const size_t k = rng.below(100);
        const size_t size = k < 90   ? 8 + rng.below(256)
                            : k < 99 ? 256 + rng.below(16 * KiB)
                                     : 16 * KiB + rng.below(600 * KiB);
        void* p = nullptr;
        if (shard_region_alloc(r, size, 8, &p) != SHARD_OK) {
          bad++;
          return;
        }
        fill_pattern(p, size < 4 * KiB ? size : 64, cpu);
        out.slots[h % kSlots] = {p, size};
        out.head.store(h + 1, std::memory_order_release);
        ++produced;
      }
      const size_t t = in.tail.load(std::memory_order_relaxed);
      if (t != in.head.load(std::memory_order_acquire)) {
        const Msg m = in.slots[t % kSlots];
        const unsigned from = (cpu + kN - 1) % kN;
        if (check_pattern(m.p, m.size < 4 * KiB ? m.size : 64, from) != SIZE_MAX) bad++;
        if (shard_region_dealloc(r, m.p, m.size, 8) != SHARD_OK) bad++;
        in.tail.store(t + 1, std::memory_order_release);
        ++consumed;
      }
    }
  });
  EXPECT_EQ(bad.load(), 0u);
  const RegionStats after = stats(r);
  EXPECT_EQ(after.used, 0u);
  EXPECT_EQ(after.available, before.available) << "every block came back";
}

// Checks and frees a block of ThreadsMigrateBetweenCalls (its size in its first word).
bool free_sized(shard_region* r, void* p) {
  size_t size;
  std::memcpy(&size, p, sizeof size);
  return check_pattern(static_cast<char*>(p) + 8, 8, 7) == SIZE_MAX &&
         shard_region_dealloc(r, p, size, 8) == SHARD_OK;
}

// More threads than CPUs: a thread takes a free CPU id (the scheduler putting
// it on a CPU with preemption off), makes a few calls, gives the id back and
// takes another (migration between calls). Blocks are freed by whichever
// thread, on whichever CPU, holds them later.
TEST(CpuHeaps, ThreadsMigrateBetweenCalls) {
  constexpr unsigned kThreads = 12, kN = 4;
  const size_t turns = scaled(20000, stress_scale(), 500);
  shard_region* r = new_region(128 * MiB);
  std::atomic<unsigned> cpu_busy[kN] =
      {};  // not bool: riscv64 has no 1-byte CAS (GCC 12 calls libatomic)
  std::atomic<void*> shared[64] = {};
  std::atomic<size_t> bad{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      Rng rng(100 + t);
      for (size_t turn = 0; turn < turns; ++turn) {
        unsigned cpu = unsigned(rng.below(kN));
        unsigned expected = 0;
        // acquire: the previous holder's calls on this CPU happen-before ours.
        while (!cpu_busy[cpu].compare_exchange_weak(expected, 1, std::memory_order_acquire)) {
          expected = 0;
          cpu = (cpu + 1) % kN;
        }
        tl_cpu = cpu;
        for (int k = 0; k < 4; ++k) {
          void* p = nullptr;
          const size_t size = 16 + rng.below(1000);
          if (shard_region_alloc(r, size, 8, &p) != SHARD_OK) {
            bad++;
            continue;
          }
          // The block's size in its first word, a pattern in the next 8 bytes.
          std::memcpy(p, &size, sizeof size);
          fill_pattern(static_cast<char*>(p) + 8, 8, 7);
          // Swap into a shared slot; free what was there (allocated elsewhere).
          void* old = shared[rng.below(64)].exchange(p, std::memory_order_acq_rel);
          if (old != nullptr && !free_sized(r, old)) bad++;
        }
        tl_cpu = kCpus;  // off-CPU: any call now would be a bug
        cpu_busy[cpu].store(0, std::memory_order_release);
      }
    });
  }
  for (auto& th : ts) th.join();
  tl_cpu = 0;
  for (auto& s : shared) {
    if (void* p = s.exchange(nullptr)) {
      EXPECT_TRUE(free_sized(r, p));
    }
  }
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

TEST(CpuHeaps, GrowsWhenMemoryIsAdded) {
  shard_region* r = new_region(4 * MiB);
  std::vector<void*> blocks;
  for (;;) {
    void* p = nullptr;
    const shard_status s = shard_region_alloc(r, 60 * KiB, 8, &p);
    if (s == SHARD_NO_MEMORY) break;
    ASSERT_EQ(s, SHARD_OK);
    blocks.push_back(p);
    ASSERT_LT(blocks.size(), 1000u) << "a 4 MiB region cannot hold this many 60 KiB blocks";
  }
  ASSERT_GT(blocks.size(), 10u);
  // Other CPUs run out too; more memory makes every CPU allocate again.
  on_cpus(1, 3, [&](unsigned) {
    void* p = nullptr;
    EXPECT_EQ(shard_region_alloc(r, 60 * KiB, 8, &p), SHARD_NO_MEMORY);
  });
  ASSERT_EQ(shard_region_add_memory(r, map_memory(8 * MiB), 8 * MiB), SHARD_OK);
  on_cpus(1, 3, [&](unsigned) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, 60 * KiB, 8, &p), SHARD_OK);
    ASSERT_EQ(shard_region_dealloc(r, p, 60 * KiB, 8), SHARD_OK);
  });
  for (void* p : blocks) {
    ASSERT_EQ(shard_region_dealloc(r, p, 60 * KiB, 8), SHARD_OK);
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

TEST(CpuHeapsDeathTest, CpuIdOutOfRangeIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  shard_region* r = new_region(4 * MiB);
  EXPECT_DEATH(
      {
        tl_cpu = kCpus;
        void* p = nullptr;
        (void)shard_region_alloc(r, 16, 8, &p);
      },
      "shardalloc fatal: current_cpu\\(\\) returned an id >= cpu_count");
}

// The most CPUs a table of CPU heaps can have (region.h). Beyond it the
// settings were taken, and every alloc then failed while turning 8 slots
// into metadata for good (an adversarial review: cpu_count 40000). In a
// child process of its own, where no table exists yet.
TEST(CpuHeapsDeathTest, CpuCountAboveTheMaximumIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (shard_set_cpu_hook(current_cpu, SHARD_CPU_COUNT_MAX + 1) != SHARD_INVALID_PARAM)
          std::_Exit(1);
        if (shard_set_cpu_hook(current_cpu, 40000) != SHARD_INVALID_PARAM) std::_Exit(2);
        if (shard_set_cpu_hook(current_cpu, SHARD_CPU_COUNT_MAX) != SHARD_OK) std::_Exit(3);
        shard_region* r = new_region(8 * MiB);
        void* p = nullptr;
        tl_cpu = SHARD_CPU_COUNT_MAX - 1;  // the highest id has its slot
        if (shard_region_alloc(r, 64, 8, &p) != SHARD_OK) std::_Exit(4);
        if (shard_region_dealloc(r, p, 64, 8) != SHARD_OK) std::_Exit(5);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}
