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

// A domain whose older arena is claimed whole, one slot at a time, and whose
// newer arena (the list's head) is empty.
class DomainClaimTwoArenas : public ::testing::Test {
 protected:
  void SetUp() override {
    d.ensure_secret(0x5eed);
    ASSERT_TRUE(d.add_memory(older.p, kArenaBytes));
    while (Segment* s = d.claim_segment(1, 0, 0)) in_older.push_back(s);
    ASSERT_GE(in_older.size(), 5u);
    ASSERT_TRUE(d.add_memory(newer.p, kArenaBytes));  // the list's head from now on
  }
  Memory older, newer;
  Domain d;
  std::vector<Segment*> in_older;
};

}  // namespace

TEST_F(DomainClaimTwoArenas, FreedSlotOfAnOlderArenaBeforeAFreshSlotOfTheNewest) {
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

// A huge block's arena takes one-slot segments only when no other arena has
// a free slot: first fit there put them right after the block, and the span
// it left when freed no longer held two blocks of half its size (sort -S
// 200M: peak RSS +95 MiB, the second half went to a new arena).
TEST(DomainClaim, OneSlotSegmentsStayOutOfAnArenaReservedForHugeBlocks) {
  constexpr size_t kHugeSlots = 8;
  Memory small_arena;
  void* huge_mem = std::aligned_alloc(kSegmentSize, 2 * kArenaBytes);
  ASSERT_NE(huge_mem, nullptr);
  Domain d;
  d.ensure_secret(0x5eed);
  ASSERT_TRUE(d.add_memory(small_arena.p, kArenaBytes));
  ASSERT_TRUE(d.add_memory(huge_mem, 2 * kArenaBytes, /*for_huge=*/true));  // the list's head
  Arena* huge_arena = d.arena_of(addr(huge_mem) + kArenaBytes);
  ASSERT_NE(huge_arena, nullptr);

  Segment* big = d.claim_segment(kHugeSlots, 0, 0);
  ASSERT_NE(big, nullptr);
  ASSERT_EQ(d.arena_of(addr(big)), huge_arena);
  // Segments claimed while the huge block lives: in the other arena.
  std::vector<Segment*> small;
  for (int i = 0; i < 3; ++i) {
    Segment* s = d.claim_segment(1, 0, 0);
    ASSERT_NE(s, nullptr);
    EXPECT_NE(d.arena_of(addr(s)), huge_arena) << i;
    small.push_back(s);
  }
  d.release_segment(big);
  // Its span holds two blocks of half its size plus one slot each.
  Segment* first = d.claim_segment(kHugeSlots / 2 + 1, 0, 0);
  Segment* second = d.claim_segment(kHugeSlots / 2 + 1, 0, 0);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(d.arena_of(addr(first)), huge_arena);
  EXPECT_EQ(d.arena_of(addr(second)), huge_arena);

  // With every other slot taken, one-slot segments do use the huge arena.
  while (Segment* s = d.claim_segment(1, 0, 0)) {
    small.push_back(s);
    if (d.arena_of(addr(s)) == huge_arena) break;
  }
  EXPECT_EQ(d.arena_of(addr(small.back())), huge_arena);
  for (Segment* s : small) d.release_segment(s);
  d.release_segment(first);
  d.release_segment(second);
  std::free(huge_mem);
}

// meta_alloc: a request no slot could hold claims none (it claimed 8 per
// failed call, turning them into metadata for good); the largest one a slot
// holds gets a slot.
TEST(DomainClaim, MetaAllocBeyondWhatASlotHoldsClaimsNoSlot) {
  Memory memory;
  Domain d;
  d.ensure_secret(0x5eed);
  ASSERT_TRUE(d.add_memory(memory.p, kArenaBytes));
  const size_t claimed = d.segments_claimed.load();
  const size_t overhead = d.overhead_bytes.load();
  EXPECT_EQ(d.meta_alloc(Domain::kMetaAllocMax + 1), nullptr);
  EXPECT_EQ(d.meta_alloc(kArenaBytes), nullptr);
  EXPECT_EQ(d.segments_claimed.load(), claimed);
  EXPECT_EQ(d.overhead_bytes.load(), overhead);
  EXPECT_NE(d.meta_alloc(Domain::kMetaAllocMax), nullptr);
}

// Review of the resident hint: a huge block whose whole span is resident in
// two arenas goes to the freed run of exactly its length (in the older
// arena), not to the newer arena's freed slots at the head of a long run of
// fresh ones (that would cut the run later huge blocks need).
TEST_F(DomainClaimTwoArenas, AnExactResidentFitTakesTheRunOfItsLengthInAnyArena) {
  Segment* a = d.claim_segment(1, 0, 0);
  Segment* b = d.claim_segment(1, 0, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(addr(b), addr(a) + kSegmentSize);
  d.release_segment(a);
  d.release_segment(b);  // two resident slots, then the newer arena's fresh ones
  d.release_segment(in_older[2]);
  d.release_segment(in_older[3]);  // a run of exactly two resident slots
  Segment* two = d.claim_segment(2, 0, 0);
  EXPECT_EQ(two, in_older[2]);
  d.release_segment(two);
  for (size_t i = 0; i < in_older.size(); ++i)
    if (i != 2 && i != 3) d.release_segment(in_older[i]);
}
