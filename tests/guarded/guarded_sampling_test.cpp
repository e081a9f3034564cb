// Guarded sampling wired to the process heap's sampling trigger (issue 17,
// docs/reliability.md section 7): samples of shard_malloc & co. are replaced
// by guarded pool blocks. Which blocks were sampled is decided by
// guarded_owns, so every bug below hits a guarded block and must be
// reported every time. Release builds only: checked builds do not sample
// (they have their own canaries); there the tests are skipped.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "platform/linux/guarded.h"
#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"

namespace {

using shardalloc::platform::guarded_owns;
using shardalloc::platform::kGuardedMaxSize;

template <typename T>
T launder(T p) {
  __asm__ volatile("" : "+r"(p)::"memory");
  return p;
}

#define SKIP_IN_CHECKED_BUILDS() \
  if (shard_is_checked())        \
  GTEST_SKIP() << "checked builds do not sample (their canaries and quarantine cover it)"

// Every allocation of the calling thread is sampled (a mean gap of 1 byte).
// The rate is set in the test itself, so a death test's child sets it too.
struct EverySample {
  EverySample() { shard_guarded_set_rate(1); }
  ~EverySample() { shard_guarded_set_rate(0); }
};

// Allocates blocks of `size` (at a rate that samples a fraction of them)
// until one is guarded; the others stay live, as in a real heap.
char* first_guarded(size_t size, std::vector<void*>* keep) {
  for (int i = 0; i < 1000000; ++i) {
    void* p = shard_malloc(size);
    if (p == nullptr) std::abort();
    if (guarded_owns(p)) return static_cast<char*>(p);
    keep->push_back(p);
  }
  return nullptr;
}

#define GUARDED_FATAL(bug) "shardalloc: fatal: guarded: " bug " at 0x[0-9a-f]+, block 0x[0-9a-f]+"

class GuardedSamplingDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void overflow_sampled_by_one(size_t size) {
  shard_guarded_set_rate(16 * 1024);  // about one block in 16 KiB / size
  std::vector<void*> keep;
  volatile char* p = launder(first_guarded(size, &keep));
  if (p == nullptr) std::_Exit(3);
  p[size] = 1;  // the guard page (size a multiple of 16) or the slack, checked at free
  shard_free(const_cast<char*>(p));
  std::_Exit(0);
}

TEST_F(GuardedSamplingDeath, S01_OneByteOverflowOfASampledBlockIsReported) {
  SKIP_IN_CHECKED_BUILDS();
  for (size_t size : {size_t{8}, size_t{13}, size_t{64}, size_t{100}, size_t{1024}, size_t{4096}}) {
    EXPECT_EXIT(
        overflow_sampled_by_one(size), ::testing::KilledBySignal(SIGABRT),
        GUARDED_FATAL("heap buffer overflow( \\(into the alignment slack, found at free\\))?"))
        << size;
  }
}

void use_sampled_after_free(size_t size) {
  shard_guarded_set_rate(16 * 1024);
  std::vector<void*> keep;
  volatile char* p = launder(first_guarded(size, &keep));
  if (p == nullptr) std::_Exit(3);
  shard_free(const_cast<char*>(p));
  for (int i = 0; i < 100; ++i) keep.push_back(shard_malloc(size));  // reuse nearby
  p[0] = 1;
  std::_Exit(0);
}

TEST_F(GuardedSamplingDeath, S02_UseAfterFreeOfASampledBlockIsReported) {
  SKIP_IN_CHECKED_BUILDS();
  for (size_t size : {size_t{16}, size_t{48}, size_t{777}, size_t{4096}}) {
    EXPECT_EXIT(use_sampled_after_free(size), ::testing::KilledBySignal(SIGABRT),
                GUARDED_FATAL("use after free"))
        << size;
  }
}

void double_free_sampled() {
  EverySample on;
  void* p = shard_malloc(32);
  if (!guarded_owns(p)) std::_Exit(3);
  shard_free(p);
  shard_free(launder(p));
  std::_Exit(0);
}

TEST_F(GuardedSamplingDeath, S03_DoubleFreeOfASampledBlockIsReported) {
  SKIP_IN_CHECKED_BUILDS();
  EXPECT_EXIT(double_free_sampled(), ::testing::KilledBySignal(SIGABRT),
              GUARDED_FATAL("double free"));
}

TEST(GuardedSampling, OffMeansNoBlockIsGuarded) {
  shard_guarded_set_rate(0);
  std::vector<void*> v;
  for (int i = 0; i < 10000; ++i) {
    v.push_back(shard_malloc(size_t(i % 300) + 1));
    ASSERT_FALSE(guarded_owns(v.back()));
  }
  for (void* p : v) shard_free(p);
}

TEST(GuardedSampling, S04_MallocCallocReallocUsableSizeKeepTheirMeaning) {
  SKIP_IN_CHECKED_BUILDS();
  EverySample on;
  // calloc: zeroed, also in a slot used before.
  for (int round = 0; round < 2 * 256 + 4; ++round) {
    char* p = static_cast<char*>(shard_malloc(200));
    ASSERT_TRUE(guarded_owns(p));
    std::memset(p, 0xab, 200);
    shard_free(p);
    auto* z = static_cast<unsigned char*>(shard_calloc(25, 8));
    ASSERT_TRUE(guarded_owns(z));
    for (int i = 0; i < 200; ++i) ASSERT_EQ(z[i], 0) << i;
    EXPECT_EQ(shard_usable_size(z), 200u);
    shard_free(z);
  }
  // realloc: grows within and out of the pool, shrinks back into it, keeping the bytes.
  auto* p = static_cast<unsigned char*>(shard_malloc(100));
  ASSERT_TRUE(guarded_owns(p));
  for (int i = 0; i < 100; ++i) p[i] = uint8_t(i);
  p = static_cast<unsigned char*>(shard_realloc(p, 3000));
  ASSERT_TRUE(guarded_owns(p));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(p[i], i);
  p = static_cast<unsigned char*>(shard_realloc(p, 100000));  // over a slot: ordinary
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(guarded_owns(p));
  EXPECT_GE(shard_usable_size(p), 100000u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(p[i], i);
  p = static_cast<unsigned char*>(shard_realloc(p, 50));
  ASSERT_TRUE(guarded_owns(p));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(p[i], i);
  EXPECT_EQ(shard_usable_size(p), 50u);
  shard_free(p);
}

TEST(GuardedSampling, S04_AlignedAllocationsAreGuardedUpToAPageAndAligned) {
  SKIP_IN_CHECKED_BUILDS();
  EverySample on;
  for (size_t align : {size_t{16}, size_t{32}, size_t{64}, size_t{256}, size_t{4096}, size_t{8192},
                       size_t{1} << 20}) {
    for (size_t size : {size_t{1}, size_t{40}, size_t{1000}, size_t{4096}, size_t{5000}}) {
      void* p = shard_malloc_aligned(size, align);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(uintptr_t(p) % align, 0u) << size << " " << align;
      EXPECT_EQ(guarded_owns(p), size <= kGuardedMaxSize && align <= kGuardedMaxSize)
          << size << " " << align;
      std::memset(p, 1, size);
      EXPECT_GE(shard_usable_size(p), size);
      shard_free(p);
    }
  }
}

TEST(GuardedSampling, S05_LargerBlocksAndAFullPoolStayOrdinary) {
  SKIP_IN_CHECKED_BUILDS();
  EverySample on;
  void* big = shard_malloc(kGuardedMaxSize + 1);
  EXPECT_FALSE(guarded_owns(big));
  shard_free(big);
  std::vector<void*> live;
  size_t guarded = 0;
  for (size_t i = 0; i < 2 * shardalloc::platform::kGuardedSlots; ++i) {
    live.push_back(shard_malloc(64));
    ASSERT_NE(live.back(), nullptr);
    std::memset(live.back(), 2, 64);
    guarded += guarded_owns(live.back());
  }
  EXPECT_LE(guarded, shardalloc::platform::kGuardedSlots);
  EXPECT_GT(guarded, shardalloc::platform::kGuardedSlots / 2);
  for (void* p : live) shard_free(p);
}

TEST(GuardedSampling, FirstClassHeapsAndRegionsAreNotSampled) {
  SKIP_IN_CHECKED_BUILDS();
  EverySample on;
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  for (int i = 0; i < 1000; ++i) {
    void* p = shard_heap_malloc(h, 64);
    ASSERT_FALSE(guarded_owns(p));
  }
  shard_heap_destroy(h);
  static char memory[4 << 20];
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, memory, sizeof memory), SHARD_OK);
  for (int i = 0; i < 1000; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, 64, 16, &p), SHARD_OK);
    ASSERT_FALSE(guarded_owns(p));
  }
  // The process heap meanwhile is sampled.
  void* p = shard_malloc(64);
  EXPECT_TRUE(guarded_owns(p));
  shard_free(p);
}

// Review (review-sampling): a sampled malloc(0) became a pool block placed at
// its slot's end, i.e. on the guard page after the slot; free and
// malloc_usable_size did not map it back to its slot and stopped the
// program ("free of a pointer that is not allocated"). Zero-size requests
// (malloc(0), calloc(0, n), aligned allocations of 0 bytes) must be freed,
// sized and reallocated like any other sampled block.
void zero_size_sampled_blocks() {
  EverySample on;
  std::vector<void*> blocks;
  size_t guarded = 0;
  for (int i = 0; i < 64; ++i) {
    void* p = (i % 3 == 0)   ? shard_malloc(0)
              : (i % 3 == 1) ? shard_calloc(0, 8)
                             : shard_malloc_aligned(0, 64);
    if (p == nullptr) std::_Exit(2);
    guarded += guarded_owns(p);
    (void)shard_usable_size(p);
    blocks.push_back(p);
  }
  if (guarded == 0) std::_Exit(3);  // nothing sampled: the test would prove nothing
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 2 == 0) {
      shard_free(blocks[i]);
    } else {
      void* q = shard_realloc(blocks[i], 24);
      if (q == nullptr) std::_Exit(4);
      shard_free(q);
    }
  }
  void* p = shard_malloc(0);
  if (shard_realloc(p, 0) != nullptr) std::_Exit(5);
  std::_Exit(0);
}

TEST_F(GuardedSamplingDeath, S06_ZeroSizeSampledBlocksCanBeFreed) {
  SKIP_IN_CHECKED_BUILDS();
  EXPECT_EXIT(zero_size_sampled_blocks(), ::testing::ExitedWithCode(0), "");
}

// A zero-size sampled block has no byte: any access faults at once.
void write_into_zero_size_sampled_block() {
  EverySample on;
  for (int i = 0; i < 1000; ++i) {
    char* p = static_cast<char*>(shard_malloc(0));
    if (!guarded_owns(p)) continue;
    *launder(p) = 1;
    std::_Exit(0);
  }
  std::_Exit(3);
}

TEST_F(GuardedSamplingDeath, S07_AnAccessToAZeroSizeSampledBlockIsReported) {
  SKIP_IN_CHECKED_BUILDS();
  EXPECT_EXIT(write_into_zero_size_sampled_block(), ::testing::KilledBySignal(SIGABRT),
              GUARDED_FATAL("heap buffer overflow"));
}

// Review (review-sampling): while the rate was 0 a sampling heap drew its
// next gap as "never" (2^62 bytes), so shard_guarded_set_rate(N) afterwards
// did not turn sampling back on for the calling thread (nor for any other
// thread that had allocated meanwhile): no block was ever guarded again.
size_t guarded_of(size_t count, size_t size, std::vector<void*>* live) {
  size_t guarded = 0;
  for (size_t i = 0; i < count; ++i) {
    live->push_back(shard_malloc(size));
    guarded += guarded_owns(live->back());
  }
  return guarded;
}

TEST(GuardedSampling, S08_SamplingResumesAfterTheRateWasZero) {
  SKIP_IN_CHECKED_BUILDS();
  std::atomic<int> phase{0};
  size_t other_guarded = 0;
  shard_guarded_set_rate(1);
  // A thread made now samples too (the domain samples); it allocates in each phase.
  std::thread other([&] {
    std::vector<void*> mine;
    guarded_of(8, 200, &mine);
    phase.store(1);
    while (phase.load() != 2) sched_yield();
    guarded_of(2000, 200, &mine);  // while the rate is 0
    phase.store(3);
    while (phase.load() != 4) sched_yield();
    other_guarded = guarded_of(20000, 200, &mine);  // 4 MB at one sample per 16 KiB
    for (void* p : mine) shard_free(p);
  });
  std::vector<void*> live;
  guarded_of(8, 200, &live);
  while (phase.load() != 1) sched_yield();
  shard_guarded_set_rate(0);
  phase.store(2);
  guarded_of(2000, 200, &live);  // pages handed while off
  while (phase.load() != 3) sched_yield();
  shard_guarded_set_rate(16 * 1024);
  phase.store(4);
  // 400 KB at one sample per 16 KiB: about 24 expected; 0 has probability e^-24.
  EXPECT_GT(guarded_of(2000, 200, &live), 0u) << "the calling thread";
  other.join();
  EXPECT_GT(other_guarded, 0u) << "another thread";
  shard_guarded_set_rate(0);
  for (void* p : live) shard_free(p);
}

}  // namespace
