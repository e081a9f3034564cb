// Collect requests in the process heap (protocols.md 3, "Owned but idle"),
// under an address-space limit, in a child process: thread A fills the heap
// with 64 KiB blocks until malloc fails (its own failure requests a
// collect, which it answers itself); the main thread C fails right after
// (within the 10 ms pacing interval); thread B frees every block of A; A
// makes one allocation that takes the slow path and claims nothing; C tries
// again. A review found C's request paced away (the requests were paced
// with a deadline): A's slow path did not collect, and C failed again with
// all of A's memory free, for as long as A made no other slow path. Now the
// answers are paced, and a request is never dropped.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "support/address_space.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

int idle_owner_child() {
  std::vector<void*> blocks;
  blocks.reserve(size_t{1} << 16);
  // Room for what the process has now plus 512 MiB.
  if (!shardtest::limit_address_space_to_now_plus(512 * MiB)) return 10;
  std::atomic<int> step{0};
  bool overflow = false;
  std::thread a([&] {
    // A page of 16-byte blocks with room: A's slow path below finds it and claims nothing.
    void* volatile small = shard_malloc(16);
    for (;;) {
      void* p = shard_malloc(64 * KiB);
      if (p == nullptr) break;
      if (blocks.size() == blocks.capacity()) {
        overflow = true;
        shard_free(p);
        break;
      }
      blocks.push_back(p);
    }
    step = 1;
    while (step != 2) std::this_thread::yield();
    // A's failed claim reset its direct pages: the slow path.
    void* volatile again = shard_malloc(16);
    shard_free(again);
    shard_free(small);
    step = 3;
    while (step != 4) std::this_thread::yield();
  });
  while (step != 1) std::this_thread::yield();
  void* first = shard_malloc(8 * MiB);  // C: fails, right after A's failure
  std::thread([&] {
    for (void* p : blocks) shard_free(p);
  }).join();
  step = 2;
  while (step != 3) std::this_thread::yield();
  void* second = shard_malloc(8 * MiB);
  step = 4;
  a.join();
  if (overflow) return 13;
  if (first != nullptr) return 14;  // no failure to begin with: the test proves nothing
  if (second == nullptr) return 15;
  shard_free(second);
  return 0;
}

// A death test by name: cross-test (qemu-user) skips tests named *Death*.
TEST(CollectRequestDeath, ARequestRightAfterAnotherHeapsOwnFailureIsAnswered) {
#if defined(SHARDTEST_SANITIZED)
  GTEST_SKIP() << "sanitizers reserve address space an RLIMIT_AS cannot leave them";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // 15: C failed again after A's slow path.
  EXPECT_EXIT(std::exit(idle_owner_child()), ::testing::ExitedWithCode(0), "");
}

}  // namespace
