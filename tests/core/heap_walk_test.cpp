// The checked walk of core/heap_walk.h on headers a reader may meet while
// their owners change them: forged in a slot in the middle of a huge block
// (memory of ours, claimed in the region's arena), each must come out as a
// slot and pages with possible figures only: unknown kinds and wrong
// geometries as metadata, pages that do not fit their segment left out,
// counts clamped, remote-free lists followed only inside their page, owners
// looked up by address.
#include "core/heap_walk.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/heap.h"
#include "core/segment.h"
#include "core/size_class.h"
#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardalloc::core;

namespace {

class HeapWalk : public ::testing::Test {
 protected:
  void SetUp() override {
    // Never unmapped: this thread keeps a heap inside each region it used.
    ASSERT_EQ(shard_region_init(&r_, shardtest::map_memory(kBytes), kBytes), SHARD_OK);
    d_ = reinterpret_cast<Domain*>(r_);  // shard_region holds its domain first
    // A huge block over three slots; its second slot is ours to forge in.
    ASSERT_EQ(shard_region_alloc(r_, 2 * kSegmentSize, 8, &huge_), SHARD_OK);
    slot_ = reinterpret_cast<uintptr_t>(segment_of(huge_)) + kSegmentSize;
    arena_ = d_->arena_of(slot_);
    ASSERT_NE(arena_, nullptr);
    index_ = arena_->slot_index(slot_);
    ASSERT_TRUE(arena_->is_claimed(index_));
  }
  // A header of this domain and arena, every other byte 0x41 (a huge block's data).
  Segment* forge(SegmentKind kind) {
    auto* s = reinterpret_cast<Segment*>(slot_);
    std::memset(reinterpret_cast<void*>(slot_), 0x41, kSegmentHeaderSize);
    s->cookie = d_->cookie_of(s);
    s->domain = d_;
    s->arena = arena_;
    s->kind = kind;
    return s;
  }
  Segment* forge_small() {
    Segment* s = forge(SegmentKind::kSmall);
    s->span_slots = 1;
    s->page_count = kSmallPagesPerSegment;
    s->page_shift = kSmallPageShift;
    s->used_pages = 1;
    return s;
  }
  // Page 1 of a forged small segment as fresh_page would set it up for 64-byte blocks.
  Page& forge_page(Segment* s) {
    Page& p = s->pages()[1];
    p.in_use = 1;
    p.in_full = 0;
    p.size_class = uint8_t(size_class_of(64));
    p.block_size = 64;
    p.area = reinterpret_cast<uint8_t*>(slot_ + kSmallPageSize);
    p.reserved = uint32_t(kSmallPageSize / 64);
    p.capacity = 100;
    p.used = 10;
    p.thread_free.store(0);
    return p;
  }
  SlotView read(RemoteLists remote = RemoteLists::kCount) {
    SlotView v;
    const HeapList heaps(*d_);
    read_slot(*d_, &heaps, *arena_, index_, remote, &v);
    return v;
  }

  static constexpr size_t kBytes = 16 << 20;
  shard_region* r_ = nullptr;
  Domain* d_ = nullptr;
  void* huge_ = nullptr;
  uintptr_t slot_ = 0;
  Arena* arena_ = nullptr;
  size_t index_ = 0;
};

TEST_F(HeapWalk, HugeBlockDataWithoutACookieIsMetadata) {
  std::memset(reinterpret_cast<void*>(slot_), 0x41, kSegmentHeaderSize);
  const SlotView v = read();
  EXPECT_EQ(v.kind, SlotKind::kMeta);
  EXPECT_EQ(v.span, 1u);
  EXPECT_EQ(v.page_views, 0u);
}

TEST_F(HeapWalk, UnknownKindIsMetadata) {
  forge(static_cast<SegmentKind>(0x41));
  EXPECT_EQ(read().kind, SlotKind::kMeta);
}

TEST_F(HeapWalk, ForeignDomainOrArenaIsMetadata) {
  Segment* s = forge_small();
  s->domain = reinterpret_cast<Domain*>(0x4141414141414141);
  EXPECT_EQ(read().kind, SlotKind::kMeta);
  s = forge_small();
  s->arena = reinterpret_cast<Arena*>(0x4141414141414141);
  EXPECT_EQ(read().kind, SlotKind::kMeta);
}

TEST_F(HeapWalk, WrongGeometryIsMetadata) {
  Segment* s = forge_small();
  s->page_count = 0x4141;
  EXPECT_EQ(read().kind, SlotKind::kMeta);
  s = forge_small();
  s->span_slots = 3;
  EXPECT_EQ(read().kind, SlotKind::kMeta);
}

TEST_F(HeapWalk, PagesOfGarbageAreLeftOut) {
  forge_small();  // every page header is 0x41...: class 65, in_use 0x41
  const SlotView v = read();
  EXPECT_EQ(v.kind, SlotKind::kSmall);
  EXPECT_EQ(v.page_views, 0u);
  EXPECT_EQ(v.heap, -1) << "0x4141... is none of the domain's heaps";
}

TEST_F(HeapWalk, PageOfAClassOfAnotherKindIsLeftOut) {
  Segment* s = forge_small();
  Page& p = forge_page(s);
  p.size_class = uint8_t(size_class_of(kMediumBlockMax));
  p.block_size = class_block_size(p.size_class);
  EXPECT_EQ(read().page_views, 0u);
}

TEST_F(HeapWalk, PageWhoseAreaIsNotInItsPageIsLeftOut) {
  Segment* s = forge_small();
  Page& p = forge_page(s);
  p.area = reinterpret_cast<uint8_t*>(slot_ + 3 * kSmallPageSize);  // page 3's
  EXPECT_EQ(read().page_views, 0u);
  p.area = reinterpret_cast<uint8_t*>(slot_ + kSmallPageSize + 4);  // misaligned
  EXPECT_EQ(read().page_views, 0u);
}

TEST_F(HeapWalk, CountsAreClamped) {
  Segment* s = forge_small();
  Page& p = forge_page(s);
  p.capacity = 0x41414141;
  p.used = 0x41414141;
  const SlotView v = read();
  ASSERT_EQ(v.page_views, 1u);
  const PageView& view = v.pages[0];
  EXPECT_EQ(view.index, 1u);
  EXPECT_EQ(view.size_class, size_class_of(64));
  EXPECT_EQ(view.block_size, 64u);
  EXPECT_EQ(view.reserved, kSmallPageSize / 64);
  EXPECT_EQ(view.capacity, view.reserved);
  EXPECT_EQ(view.used, view.capacity);
}

TEST_F(HeapWalk, RemoteFreesAreFollowedOnlyInsideThePage) {
  Segment* s = forge_small();
  Page& p = forge_page(s);
  auto* blocks = reinterpret_cast<Block*>(p.area);
  // Three blocks, then a link out of the page: three counted, the link not followed.
  blocks[0].next = &blocks[8];
  blocks[8].next = &blocks[16];
  blocks[16].next = reinterpret_cast<Block*>(0x4141414141414140);
  p.thread_free.store(reinterpret_cast<uintptr_t>(&blocks[0]));
  if (!kChecked) {
    EXPECT_EQ(read().pages[0].remote, 3u);
  }
  // A cycle: counted at most `used` times.
  blocks[16].next = &blocks[0];
  EXPECT_LE(read().pages[0].remote, 10u);
  // A head in the middle of a block, or outside the page: nothing followed.
  p.thread_free.store(reinterpret_cast<uintptr_t>(&blocks[0]) + 24);
  EXPECT_EQ(read().pages[0].remote, 0u);
  p.thread_free.store(slot_ + 5 * kSmallPageSize);
  EXPECT_EQ(read().pages[0].remote, 0u);
}

// Statistics walk with RemoteLists::kSkip: the same well-formed list is not
// read at all (its blocks could be anywhere in the page's memory).
TEST_F(HeapWalk, RemoteFreesAreNotFollowedWhenTheWalkSkipsThem) {
  Segment* s = forge_small();
  Page& p = forge_page(s);
  auto* blocks = reinterpret_cast<Block*>(p.area);
  blocks[0].next = &blocks[8];
  blocks[8].next = nullptr;
  p.thread_free.store(reinterpret_cast<uintptr_t>(&blocks[0]));
  if (!kChecked) {
    EXPECT_EQ(read(RemoteLists::kCount).pages[0].remote, 2u);
  }
  const SlotView v = read(RemoteLists::kSkip);
  EXPECT_EQ(v.page_views, 1u);
  EXPECT_EQ(v.pages[0].remote, 0u);
}

TEST_F(HeapWalk, HugeSpanBeyondTheArenaIsMetadata) {
  Segment* s = forge(SegmentKind::kHuge);
  s->page_count = 1;
  s->span_slots = size_t{1} << 40;
  s->pages()[0].area = reinterpret_cast<uint8_t*>(slot_ + kSegmentHeaderSize);
  s->pages()[0].block_size = (s->span_slots << kSegmentShift) - kSegmentHeaderSize;
  EXPECT_EQ(read().kind, SlotKind::kMeta);
  s->span_slots = 1;  // fits, but its block size does not match the span
  EXPECT_EQ(read().kind, SlotKind::kMeta);
  s->pages()[0].block_size = kSegmentSize - kSegmentHeaderSize;
  s->pages()[0].used = 1;
  s->pages()[0].thread_free.store(0);
  const SlotView v = read();
  EXPECT_EQ(v.kind, SlotKind::kHuge);
  EXPECT_EQ(v.span, 1u);
  EXPECT_EQ(v.huge_block_size, kSegmentSize - kSegmentHeaderSize);
  EXPECT_TRUE(v.huge_live);
}

TEST_F(HeapWalk, OwnerIsFoundByAddressAmongTheDomainsHeaps) {
  void* p = nullptr;
  ASSERT_EQ(shard_region_alloc(r_, 64, 8, &p),
            SHARD_OK);  // this thread's heap: the list's only record
  Segment* s = forge_small();
  s->heap = segment_of(p)->heap;
  const SlotView v = read();
  EXPECT_EQ(v.heap, 0);
  EXPECT_FALSE(v.heap_abandoned);
}

// A walk over the whole region visits every slot once, the huge block as one span.
struct SlotCounter {
  size_t arenas = 0, slots = 0, covered = 0, huge = 0;
  void arena(const ArenaView& a) {
    ++arenas;
    slots += a.slot_count;
  }
  void free_slots(const ArenaView&, size_t, size_t count) { covered += count; }
  void slot(const ArenaView&, const SlotView& s) {
    covered += s.span;
    if (s.kind == SlotKind::kHuge) ++huge;
  }
};

TEST_F(HeapWalk, WalkCoversEverySlotOnce) {
  SlotCounter counter;
  walk_arenas(*d_, nullptr, RemoteLists::kSkip, counter);
  EXPECT_EQ(counter.arenas, 1u);
  EXPECT_EQ(counter.covered, counter.slots);
  EXPECT_EQ(counter.huge, 1u);
}

}  // namespace
