// The guarded pool of guarded sampling (src/platform/linux/guarded.h), driven
// by direct calls (the sampling trigger's use of it: guarded_sampling_test.cpp).
// Every bug runs in a death-test child and must be reported every time.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "platform/linux/guarded.h"
#include "shardalloc/shardalloc.h"

namespace {

using shardalloc::platform::guarded_alloc;
using shardalloc::platform::guarded_free;
using shardalloc::platform::guarded_owns;
using shardalloc::platform::guarded_usable_size;
using shardalloc::platform::kGuardedMaxSize;
using shardalloc::platform::kGuardedSlots;

template <typename T>
T launder(T p) {
  __asm__ volatile("" : "+r"(p)::"memory");
  return p;
}

// The report's first line, then the allocation site's.
#define GUARDED_FATAL(bug)           \
  "shardalloc: fatal: guarded: " bug \
  " at 0x[0-9a-f]+, block 0x[0-9a-f]+ of [0-9]+ bytes\nshardalloc:   allocated at 0x[0-9a-f]+"

class GuardedDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void overflow_by_one(size_t size) {
  volatile char* p = static_cast<char*>(guarded_alloc(size, 0));
  if (p == nullptr) std::_Exit(3);
  p[size] = 1;  // a multiple of 16: the guard page; else the slack, checked at free
  guarded_free(const_cast<char*>(p));
  std::_Exit(0);
}

TEST_F(GuardedDeath, G01_OneByteOverflowFaultsAndIsReported) {
  for (size_t size : {size_t{16}, size_t{64}, size_t{1024}, kGuardedMaxSize}) {
    EXPECT_EXIT(overflow_by_one(size), ::testing::KilledBySignal(SIGABRT),
                GUARDED_FATAL("heap buffer overflow"))
        << size;
  }
}

TEST_F(GuardedDeath, G02_OneByteOverflowIntoTheAlignmentSlackIsReportedAtFree) {
  for (size_t size : {size_t{1}, size_t{13}, size_t{100}, kGuardedMaxSize - 1}) {
    EXPECT_EXIT(overflow_by_one(size), ::testing::KilledBySignal(SIGABRT),
                GUARDED_FATAL("heap buffer overflow \\(into the alignment slack, found at free\\)"))
        << size;
  }
}

void underflow_of_full_page() {
  volatile char* p = static_cast<char*>(guarded_alloc(kGuardedMaxSize, 0));
  p[-1] = 1;
  std::_Exit(0);
}

TEST_F(GuardedDeath, G03_UnderflowOfAPageSizedBlockFaults) {
  EXPECT_EXIT(underflow_of_full_page(), ::testing::KilledBySignal(SIGABRT),
              GUARDED_FATAL("heap buffer underflow"));
}

void use_after_free(bool write) {
  volatile char* p = static_cast<char*>(guarded_alloc(40, 0));
  guarded_free(const_cast<char*>(p));
  if (write) {
    p[3] = 1;
  } else {
    (void)p[3];
  }
  std::_Exit(0);
}

TEST_F(GuardedDeath, G04_UseAfterFreeFaultsAndNamesTheFreeSite) {
  for (bool write : {false, true}) {
    EXPECT_EXIT(use_after_free(write), ::testing::KilledBySignal(SIGABRT),
                GUARDED_FATAL("use after free") ".*\nshardalloc:   freed at 0x[0-9a-f]+")
        << write;
  }
}

void double_free() {
  void* p = guarded_alloc(8, 0);
  guarded_free(p);
  guarded_free(launder(p));
  std::_Exit(0);
}

TEST_F(GuardedDeath, G05_DoubleFreeIsReported) {
  EXPECT_EXIT(double_free(), ::testing::KilledBySignal(SIGABRT), GUARDED_FATAL("double free"));
}

TEST_F(GuardedDeath, G06_InteriorPointerFreeIsReported) {
  auto interior = [] {
    char* p = static_cast<char*>(guarded_alloc(64, 0));
    guarded_free(launder(p + 8));
  };
  EXPECT_EXIT(interior(), ::testing::KilledBySignal(SIGABRT),
              "shardalloc: fatal: free of a pointer that is not allocated");
}

// Faults outside the pool still reach the handler that was there before.
TEST_F(GuardedDeath, G07_OtherFaultsChainToThePreviousHandler) {
  auto wild = [] {
    signal(SIGSEGV, [](int) { std::_Exit(42); });
    guarded_free(guarded_alloc(8, 0));  // the pool (and its handler) exist now
    *launder(static_cast<volatile int*>(nullptr)) = 1;
  };
  EXPECT_EXIT(wild(), ::testing::ExitedWithCode(42), "");
}

TEST(Guarded, BlocksSitAgainstTheGuardAndHonourAlignment) {
  for (size_t align : {size_t{0}, size_t{16}, size_t{64}, size_t{4096}}) {
    for (size_t size : {size_t{1}, size_t{16}, size_t{100}, size_t{4096}}) {
      char* p = static_cast<char*>(guarded_alloc(size, align));
      ASSERT_NE(p, nullptr);
      const size_t a = align < 16 ? 16 : align;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % a, 0u);
      const uintptr_t end = (reinterpret_cast<uintptr_t>(p) | 4095) + 1;
      EXPECT_LT(end - (reinterpret_cast<uintptr_t>(p) + size), a) << size << " " << align;
      EXPECT_TRUE(guarded_owns(p));
      EXPECT_EQ(guarded_usable_size(p), size);
      for (size_t i = 0; i < size; ++i) p[i] = char(i);
      guarded_free(p);
    }
  }
  EXPECT_EQ(guarded_alloc(kGuardedMaxSize + 1, 0), nullptr);
  EXPECT_EQ(guarded_alloc(16, 8192), nullptr);
  int local = 0;
  EXPECT_FALSE(guarded_owns(&local));
}

// free, realloc and malloc_usable_size (here shard_*) take pool pointers.
TEST(Guarded, G08_TheProcessHeapFunctionsTakePoolPointers) {
  char* p = static_cast<char*>(guarded_alloc(24, 0));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(shard_usable_size(p), 24u);
  for (int i = 0; i < 24; ++i) p[i] = char(i);
  char* q = static_cast<char*>(shard_realloc(p, 200));
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(guarded_owns(q));
  for (int i = 0; i < 24; ++i) EXPECT_EQ(q[i], char(i));
  shard_free(q);
  void* r = guarded_alloc(8, 0);
  shard_free(r);
  EXPECT_DEATH((void)shard_usable_size(launder(r)),
               "usable size of a pointer that is not allocated");
}

// Exhaustion, then reuse oldest-freed first: a freed slot is not handed out
// again while an older freed one waits.
TEST(Guarded, G09_ExhaustionReturnsNullAndFreedSlotsComeBackOldestFirst) {
  std::vector<void*> live;
  for (;;) {
    void* p = guarded_alloc(32, 0);
    if (p == nullptr) break;
    live.push_back(p);
    ASSERT_LE(live.size(), kGuardedSlots);
  }
  ASSERT_EQ(live.size(), kGuardedSlots);  // this process used the pool only here and above
  EXPECT_EQ(guarded_alloc(32, 0), nullptr);
  guarded_free(live[5]);
  guarded_free(live[9]);
  void* a = guarded_alloc(32, 0);
  void* b = guarded_alloc(32, 0);
  EXPECT_EQ(a, live[5]);
  EXPECT_EQ(b, live[9]);
  live[5] = a;
  live[9] = b;
  for (void* p : live) guarded_free(p);
}

TEST(Guarded, ManyThreadsAllocateAndFreeAtOnce) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 2000; ++i) {
        char* p = static_cast<char*>(guarded_alloc(size_t(1 + i % 200), 0));
        if (p == nullptr) continue;  // all slots busy for a moment
        p[0] = 1;
        guarded_free(p);
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace
