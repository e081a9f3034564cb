// Domain::claim_segment across arenas: a freed slot of any arena (its pages
// may still be resident) is taken before a fresh slot of a newer arena.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "core/domain.h"
#include "core/segment.h"

using namespace shardalloc::core;

namespace {

constexpr size_t kArenaBytes = 8 * kSegmentSize;

struct Memory {
  Memory() : p(std::aligned_alloc(kSegmentSize, kArenaBytes)) {}
  ~Memory() { std::free(p); }
  void* p;
};

}  // namespace

TEST(DomainClaim, FreedSlotOfAnOlderArenaBeforeAFreshSlotOfTheNewest) {
  Memory older, newer;
  Domain d;
  d.ensure_secret(0x5eed);
  ASSERT_TRUE(d.add_memory(older.p, kArenaBytes));
  std::vector<Segment*> in_older;
  while (Segment* s = d.claim_segment(1, 0, 0)) in_older.push_back(s);
  ASSERT_GE(in_older.size(), 4u);
  ASSERT_TRUE(d.add_memory(newer.p, kArenaBytes));  // the list's head from now on
  Segment* fresh = d.claim_segment(1, 0, 0);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(d.arena_of(addr(fresh)), d.arena_of(addr(newer.p) + kSegmentSize));

  Segment* freed = in_older[2];
  d.release_segment(freed);
  Segment* again = d.claim_segment(1, 0, 0);
  EXPECT_EQ(again, freed);  // not the newer arena's next fresh slot
  // With no freed slot left, the newer arena's fresh slots.
  Segment* next = d.claim_segment(1, 0, 0);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(d.arena_of(addr(next)), d.arena_of(addr(fresh)));
  for (Segment* s : {fresh, again, next}) d.release_segment(s);
  for (size_t i = 0; i < in_older.size(); ++i)
    if (i != 2) d.release_segment(in_older[i]);
}
