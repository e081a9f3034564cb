// capture_stack (src/platform/linux/stack_walk.cpp): the stacks it returns
// equal glibc's backtrace() of the same call, whether they come from a walk
// or from its cache, when different callers reach it from the same depth
// (the same cache key), from different depths, and from several threads.
#include <execinfo.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "platform/linux/stack_walk.h"

namespace sp = shardalloc::platform;

namespace {

struct Stacks {
  void* walked[sp::kStackMaxFrames];
  void* reference[sp::kStackMaxFrames + 1];
  int walked_n = 0;
  int reference_n = 0;
};

// Both stacks from one frame: the first frame of each is in this function
// (after either call); from the second on they must be the same.
__attribute__((noinline)) void take(Stacks& s, int max) {
  s.reference_n = backtrace(s.reference, sp::kStackMaxFrames + 1);
  s.walked_n = sp::capture_stack(s.walked, max);
  asm volatile("" ::: "memory");  // keep this frame (no tail call)
}

void expect_same(const Stacks& s, int max) {
  const int expected = s.reference_n < max ? s.reference_n : max;
  ASSERT_EQ(s.walked_n, expected);
  for (int i = 1; i < s.walked_n; ++i) EXPECT_EQ(s.walked[i], s.reference[i]) << "frame " << i;
}

// Two callers with the same frame: `take` runs at the same stack address from
// either, so the cache must tell them apart by their return addresses.
__attribute__((noinline)) void via_a(Stacks& s, int max) {
  take(s, max);
  asm volatile("" ::: "memory");
}
__attribute__((noinline)) void via_b(Stacks& s, int max) {
  take(s, max);
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void nested(Stacks& s, int depth, int max) {
  if (depth == 0)
    take(s, max);
  else
    nested(s, depth - 1, max);
  asm volatile("" ::: "memory");
}

class StackWalk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sp::stack_walk_start(); }
};

TEST_F(StackWalk, SameKeyDifferentCallersAreToldApart) {
  const uint64_t hits_before = sp::stack_walk_cache_hits();
  void* first_a = nullptr;
  void* first_b = nullptr;
  for (int round = 0; round < 50; ++round) {
    Stacks a, b;
    via_a(a, sp::kStackMaxFrames);
    via_b(b, sp::kStackMaxFrames);
    expect_same(a, sp::kStackMaxFrames);
    expect_same(b, sp::kStackMaxFrames);
    ASSERT_GE(a.walked_n, 2);
    if (round == 0) {
      first_a = a.walked[1];
      first_b = b.walked[1];
      EXPECT_NE(first_a, first_b);  // the return addresses into via_a and via_b
    }
    EXPECT_EQ(a.walked[1], first_a);
    EXPECT_EQ(b.walked[1], first_b);
  }
#if defined(__x86_64__)
  // Alternating callers evict each other's entry (same key) or hit it; the
  // repeated same-caller calls below must hit.
  for (int i = 0; i < 20; ++i) {
    Stacks a;
    via_a(a, sp::kStackMaxFrames);
    expect_same(a, sp::kStackMaxFrames);
  }
  EXPECT_GE(sp::stack_walk_cache_hits() - hits_before, 19u);
#else
  (void)hits_before;
#endif
}

TEST_F(StackWalk, DepthsAndShortRequests) {
  for (int round = 0; round < 20; ++round) {
    for (int depth : {0, 3, 7, 3, 60}) {
      for (int max : {sp::kStackMaxFrames, 4, 1}) {
        Stacks s;
        nested(s, depth, max);
        expect_same(s, max);
      }
    }
  }
}

TEST_F(StackWalk, ThreadsWithTheirOwnStacks) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int round = 0; round < 200; ++round) {
        Stacks s;
        if ((round + t) % 3 == 0)
          via_a(s, sp::kStackMaxFrames);
        else if ((round + t) % 3 == 1)
          via_b(s, sp::kStackMaxFrames);
        else
          nested(s, round % 5, sp::kStackMaxFrames);
        expect_same(s, sp::kStackMaxFrames);
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace
