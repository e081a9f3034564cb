// A heap's page queues and its direct table (Heap::queue_push_front,
// queue_push_back, queue_remove, set_direct; src/core/heap_queues.cpp),
// driven single-threaded over pages built on plain memory (as page_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/heap.h"
#include "core/page.h"
#include "core/size_class.h"

using namespace shardalloc::core;

namespace {

struct HeapQueueFixture : ::testing::Test {
  static constexpr size_t kArea = 16 * 1024;
  static constexpr unsigned kPages = 3;
  const unsigned cls = size_class_of(48);
  const size_t block = class_block_size(cls);

  void SetUp() override {
    heap = std::make_unique<Heap>();
    for (unsigned i = 0; i < kPages; ++i) {
      // 64 bytes in front: checked builds write a guard word before a page's first block.
      mem[i] = static_cast<uint8_t*>(std::aligned_alloc(64, kArea + 64));
      pages[i].init(mem[i] + 64, kArea, block, cls, 0x1234567 + i);
      pages[i].extend();
    }
  }
  void TearDown() override {
    for (uint8_t* m : mem) std::free(m);
  }
  PageQueue& q() { return heap->queues[cls]; }
  // The direct slots of size class c: (sizes of class c - 1, sizes of class c].
  std::vector<size_t> slots_of(unsigned c) const {
    std::vector<size_t> out;
    for (size_t w = 0; w < kDirectSlots; ++w) {
      if (size_class_of(w == 0 ? 1 : w * kWordSize) == c) out.push_back(w);
    }
    return out;
  }
  std::vector<Page*> order(const PageQueue& queue) const {
    std::vector<Page*> out;
    Page* prev = nullptr;
    for (Page* p = queue.first; p != nullptr; p = p->next) {
      EXPECT_EQ(p->prev, prev);
      out.push_back(p);
      prev = p;
    }
    EXPECT_EQ(queue.last, prev);
    return out;
  }

  std::unique_ptr<Heap> heap;
  uint8_t* mem[kPages] = {};
  Page pages[kPages];
};

}  // namespace

TEST_F(HeapQueueFixture, ANewHeapPointsEveryDirectSlotAtTheEmptyPage) {
  for (size_t w = 0; w < kDirectSlots; ++w) EXPECT_EQ(heap->direct[w], &g_empty_page) << w;
  EXPECT_EQ(heap->alloc_small_fast(block), nullptr);  // the fast path falls through
}

TEST_F(HeapQueueFixture, SetDirectCoversExactlyTheSlotsOfItsClass) {
  heap->set_direct(cls, &pages[0]);
  const std::vector<size_t> mine = slots_of(cls);
  ASSERT_FALSE(mine.empty());
  for (size_t w = 0; w < kDirectSlots; ++w) {
    const bool in_class = std::find(mine.begin(), mine.end(), w) != mine.end();
    EXPECT_EQ(heap->direct[w], in_class ? &pages[0] : &g_empty_page) << w;
  }
  // Every size of the class now allocates from the page, without the slow path.
  for (size_t w : mine) {
    Block* b = heap->alloc_small_fast(w == 0 ? 1 : w * kWordSize);
    ASSERT_NE(b, nullptr);
    EXPECT_GE(reinterpret_cast<uint8_t*>(b), mem[0]);
    EXPECT_LT(reinterpret_cast<uint8_t*>(b), mem[0] + kArea);
  }
}

TEST_F(HeapQueueFixture, TheFirstClassCoversSizeZero) {
  pages[1].size_class = 1;  // the direct table takes only a page of the class (a SHARD_ASSERT)
  heap->set_direct(1, &pages[1]);
  for (size_t w : slots_of(1)) EXPECT_EQ(heap->direct[w], &pages[1]);
  EXPECT_EQ(heap->direct[0], &pages[1]);
  EXPECT_EQ(heap->direct[slots_of(1).back() + 1], &g_empty_page);
}

TEST_F(HeapQueueFixture, ClassesAboveTheDirectTableLeaveItAlone) {
  const unsigned large = size_class_of(kDirectSizeMax + 1);
  pages[0].size_class = uint8_t(large);  // a page of the class (a SHARD_ASSERT)
  heap->set_direct(large, &pages[0]);
  for (size_t w = 0; w < kDirectSlots; ++w) EXPECT_EQ(heap->direct[w], &g_empty_page) << w;
}

TEST_F(HeapQueueFixture, PushFrontAndBackLinkBothWays) {
  heap->queue_push_front(q(), &pages[0]);
  EXPECT_EQ(order(q()), (std::vector<Page*>{&pages[0]}));
  heap->queue_push_front(q(), &pages[1]);
  heap->queue_push_back(q(), &pages[2]);
  EXPECT_EQ(order(q()), (std::vector<Page*>{&pages[1], &pages[0], &pages[2]}));
  // Pushing does not touch the direct table: the caller sets it.
  for (size_t w : slots_of(cls)) EXPECT_EQ(heap->direct[w], &g_empty_page);
}

TEST_F(HeapQueueFixture, RemoveKeepsTheDirectTableOnTheQueueHead) {
  for (Page& p : pages) heap->queue_push_front(q(), &p);  // 2, 1, 0
  heap->set_direct(cls, q().first);
  const size_t slot = slots_of(cls).back();
  ASSERT_EQ(heap->direct[slot], &pages[2]);

  heap->queue_remove(q(), &pages[1]);  // the middle one
  EXPECT_EQ(order(q()), (std::vector<Page*>{&pages[2], &pages[0]}));
  EXPECT_EQ(pages[1].next, nullptr);
  EXPECT_EQ(pages[1].prev, nullptr);
  EXPECT_EQ(heap->direct[slot], &pages[2]);

  heap->queue_remove(q(), &pages[2]);  // the head: the next page takes its slots
  EXPECT_EQ(order(q()), (std::vector<Page*>{&pages[0]}));
  for (size_t w : slots_of(cls)) EXPECT_EQ(heap->direct[w], &pages[0]);

  heap->queue_remove(q(), &pages[0]);  // the last one: back to the empty page
  EXPECT_EQ(q().first, nullptr);
  EXPECT_EQ(q().last, nullptr);
  for (size_t w : slots_of(cls)) EXPECT_EQ(heap->direct[w], &g_empty_page);
  EXPECT_EQ(heap->alloc_small_fast(block), nullptr);
}

TEST_F(HeapQueueFixture, RemovingFromTheFullQueueLeavesTheDirectTableAlone) {
  heap->queue_push_front(q(), &pages[0]);
  heap->set_direct(cls, &pages[0]);
  pages[1].in_full = 1;
  heap->queue_push_back(heap->full, &pages[1]);
  EXPECT_EQ(&heap->queue_of(&pages[1]), &heap->full);
  EXPECT_EQ(&heap->queue_of(&pages[0]), &q());
  heap->queue_remove(heap->full, &pages[1]);
  EXPECT_EQ(heap->full.first, nullptr);
  EXPECT_EQ(heap->full.last, nullptr);
  for (size_t w : slots_of(cls)) EXPECT_EQ(heap->direct[w], &pages[0]);
}
