// SHARD_ASSERT (src/core/assert.h): on in checked builds only, where a broken
// invariant stops the program with its condition and file:line; compiled
// away (its condition not evaluated) otherwise. And one of the invariants it
// guards: a page leaves only the queue it is in (Heap::queue_remove).
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/assert.h"
#include "core/heap.h"
#include "core/page.h"
#include "core/size_class.h"

using namespace shardalloc::core;

namespace {

TEST(ShardAssert, FiresInCheckedBuildsOnly) {
  int evaluated = 0;
  if constexpr (kChecked) {
    EXPECT_DEATH(SHARD_ASSERT(++evaluated == 2),
                 "invariant broken: \\+\\+evaluated == 2 at .*tests/core/assert_test.cpp:[0-9]+");
  } else {
    SHARD_ASSERT(++evaluated == 2);
    EXPECT_EQ(evaluated, 0);  // compiled away: not even evaluated
  }
  SHARD_ASSERT(evaluated == 0);  // holds: silent in every build
}

TEST(ShardAssert, QueueRemoveOfAPageNotInTheQueue) {
  if constexpr (!kChecked) GTEST_SKIP() << "SHARD_ASSERT is off in unchecked builds";
  constexpr size_t kArea = 16 * 1024;
  const unsigned cls = size_class_of(48);
  Heap heap;
  Page pages[2];
  uint8_t* mem[2];
  for (int i = 0; i < 2; ++i) {
    // 64 bytes in front: checked builds write a guard word before a page's first block.
    mem[i] = static_cast<uint8_t*>(std::aligned_alloc(64, kArea + 64));
    pages[i].init(mem[i] + 64, kArea, class_block_size(cls), cls, 0x1234 + i);
  }
  PageQueue& q = heap.queues[cls];
  heap.queue_push_back(q, &pages[0]);
  EXPECT_DEATH(heap.queue_remove(q, &pages[1]), "invariant broken: .*q.first == page");
  // A page in the full queue removed from its class queue.
  pages[1].in_full = 1;
  EXPECT_DEATH(heap.queue_remove(q, &pages[1]), "invariant broken: &q == &queue_of\\(page\\)");
  pages[1].in_full = 0;
  heap.queue_remove(q, &pages[0]);
  EXPECT_EQ(q.first, nullptr);
  for (uint8_t* m : mem) std::free(m);
}

}  // namespace
