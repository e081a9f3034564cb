// Page free lists and the thread-free word, driven single-threaded step by step.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "core/page.h"
#include "core/segment.h"
#include "core/size_class.h"
#include "core/thread_free.h"

using namespace shardalloc::core;

namespace {

struct PageFixture : ::testing::Test {
  static constexpr size_t kBlock = 48;
  static constexpr size_t kArea = 64 * 1024;
  void SetUp() override {
    // 64 bytes before the area: checked builds write guard words there.
    mem = static_cast<uint8_t*>(std::aligned_alloc(64, kArea + 64));
    page.init(mem + 64, kArea, kBlock, 5, 0x1234567);
  }
  void TearDown() override { std::free(mem); }
  void push_remote(Block* b) {
    ThreadFreeWord w(page.thread_free.load());
    page.set_next(b, w.head());
    page.thread_free.store(ThreadFreeWord(b, w.state()).raw());
  }
  uint8_t* mem = nullptr;
  Page page;
};

}  // namespace

TEST_F(PageFixture, ExtendBuildsAddressOrderedBlocksLazily) {
  EXPECT_EQ(page.reserved, kArea / kBlock);
  EXPECT_EQ(page.capacity, 0u);
  page.extend();
  EXPECT_GT(page.capacity, 0u);
  EXPECT_LE(page.capacity * kBlock, 4096 + kBlock);
  Block* prev = nullptr;
  for (uint32_t i = 0; i < page.capacity; ++i) {
    Block* b = page.pop_free();
    ASSERT_NE(b, nullptr);
    if (prev != nullptr) {
      EXPECT_EQ(reinterpret_cast<uint8_t*>(b) - reinterpret_cast<uint8_t*>(prev), long(kBlock));
    }
    prev = b;
  }
  EXPECT_EQ(page.pop_free(), nullptr);
  EXPECT_EQ(page.used, page.capacity);
}

TEST_F(PageFixture, CollectMovesLocalAndRemoteFreesAndCountsThem) {
  page.extend();
  std::vector<Block*> blocks;
  while (Block* b = page.pop_free()) blocks.push_back(b);
  const uint32_t used = page.used;
  page.local_free = blocks[0];
  page.set_next(blocks[0], nullptr);
  --page.used;
  push_remote(blocks[1]);
  push_remote(blocks[2]);
  EXPECT_EQ(page.collect(), 2u);
  EXPECT_EQ(page.used, used - 3);
  std::set<Block*> got;
  while (Block* b = page.pop_free()) got.insert(b);
  EXPECT_EQ(got, (std::set<Block*>{blocks[0], blocks[1], blocks[2]}));
  EXPECT_EQ(ThreadFreeWord(page.thread_free.load()).head(), nullptr);
}

TEST_F(PageFixture, CollectKeepsTheNotifyState) {
  page.extend();
  Block* b = page.pop_free();
  page.thread_free.store(ThreadFreeWord(nullptr, NotifyState::kNotified).raw());
  push_remote(b);
  page.collect();
  EXPECT_EQ(ThreadFreeWord(page.thread_free.load()).state(), NotifyState::kNotified);
  EXPECT_EQ(ThreadFreeWord(page.thread_free.load()).head(), nullptr);
}

TEST_F(PageFixture, BlockOfRoundsInteriorPointersOnlyWhenFlagged) {
  page.extend();
  uint8_t* p = mem + 64 + 3 * kBlock + 17;
  EXPECT_EQ(page.block_of(p), reinterpret_cast<Block*>(p));
  page.has_interior = 1;
  EXPECT_EQ(page.block_of(p), reinterpret_cast<Block*>(mem + 64 + 3 * kBlock));
}

// usable_from answers from a block start without dividing and from an
// interior pointer (aligned allocations) by dividing: both the bytes to the
// block's end (canary excluded). Compared with the division for every
// address of the first blocks.
TEST_F(PageFixture, UsableFromIsTheBytesToTheEndOfTheBlock) {
  uint8_t* const area = mem + 64;
  for (size_t off = 0; off < 8 * kBlock; ++off) {
    const size_t want = kBlock - off % kBlock - kCanaryBytes;
    ASSERT_EQ(page.usable_from(area + off), want) << "offset " << off;
  }
  EXPECT_EQ(page.usable_from(area + (page.reserved - 1) * kBlock), kBlock - kCanaryBytes);
}

// A huge block's page (class 0) answers the block size at its area and the
// rest of the block inside it, also for blocks of 4 GiB and more, whose
// 32-bit divisibility constants (is_block_start) say nothing. Only
// addresses are computed: nothing is read or written there.
TEST(UsableFrom, HugePagesAnswerByTheArea) {
  for (size_t block :
       {size_t{1} << 20, (size_t{1} << 20) + 4096, size_t{1} << 32, (size_t{3} << 32) + 65536}) {
    // A made-up address: init writes nothing into a huge page's area.
    uint8_t* const area = reinterpret_cast<uint8_t*>(uintptr_t{1} << 44);
    Page page;
    page.init(area, block, block, 0, 0x1234567);
    EXPECT_EQ(page.usable_from(area), block - kCanaryBytes) << block;
    for (size_t off : {size_t{16}, size_t{4096}, size_t{1} << 20, block - 16}) {
      if (off >= block) continue;
      EXPECT_EQ(page.usable_from(area + off), block - off - kCanaryBytes) << block << " " << off;
    }
    if (block > (size_t{1} << 32)) {
      // 4 GiB into the block: the low 32 bits of the offset are 0.
      EXPECT_EQ(page.usable_from(area + (size_t{1} << 32)),
                block - (size_t{1} << 32) - kCanaryBytes);
    }
  }
}

TEST(ThreadFreeWordTest, PacksHeadAndState) {
  alignas(8) Block b{};
  ThreadFreeWord w(&b, NotifyState::kFull);
  EXPECT_EQ(w.head(), &b);
  EXPECT_EQ(w.state(), NotifyState::kFull);
  EXPECT_EQ(w.with_state(NotifyState::kNormal).head(), &b);
  EXPECT_EQ(w.with_head(nullptr).state(), NotifyState::kFull);
}

TEST(SegmentMath, SegmentOfMapsBlocksToTheirHeader) {
  const uintptr_t seg = uintptr_t{7} << kSegmentShift;
  EXPECT_EQ(
      reinterpret_cast<uintptr_t>(segment_of(reinterpret_cast<void*>(seg + kSegmentHeaderSize))),
      seg);
  EXPECT_EQ(
      reinterpret_cast<uintptr_t>(segment_of(reinterpret_cast<void*>(seg + kSegmentSize - 8))),
      seg);
  // A huge block aligned to the next slot boundary belongs to the header before it.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(segment_of(reinterpret_cast<void*>(seg + kSegmentSize))),
            seg);
  static_assert(sizeof(Segment) <= kSegmentHeaderSize);
  static_assert(kSmallPagesPerSegment * kSmallPageSize == kSegmentSize);
}

// Page headers at every color end kPageHeaderSlack bytes or more before the
// segment's first block (page 0's area): a short underflow of that block
// writes slack, not a page header; and kPageColors consecutive slots place
// their headers at kPageColors different offsets.
TEST(SegmentMath, EveryColorLeavesSlackBeforeTheFirstBlock) {
  std::set<size_t> colors;
  for (uintptr_t slot = 0; slot < 4 * kPageColors; ++slot) {
    const uintptr_t seg = (uintptr_t{0x1000} + slot) << kSegmentShift;
    const size_t pages_begin = kSegmentFieldsSize + Segment::page_color(seg);
    const size_t pages_end = pages_begin + kSmallPagesPerSegment * sizeof(Page);
    EXPECT_EQ(pages_begin % kPageLine, 0u) << slot;
    EXPECT_LE(pages_end + kPageHeaderSlack, kSegmentHeaderSize) << slot;
    if (slot < kPageColors) colors.insert(pages_begin);
  }
  EXPECT_EQ(colors.size(), kPageColors);
  static_assert(kPageHeaderSlack >= 32, "the 32-byte underflows of tests/security");
}

// is_block_start is one compare: exact division by multiply and rotate, with
// the block index checked against reserved. Every address of a segment, for
// every size class on each of its pages: true exactly at the block starts in
// [area, area_end). (Only addresses are tested; checked builds write the guard words.)
TEST(BlockStart, ExactlyTheBlockStartsOfThePageForEveryClass) {
  // A real segment: checked builds' Page::init writes guard words before
  // each page's area (nothing else touches it).
  void* const mem = std::aligned_alloc(kSegmentSize, kSegmentSize);
  ASSERT_NE(mem, nullptr);
  const uintptr_t seg = reinterpret_cast<uintptr_t>(mem);
  for (unsigned cls = 1; cls <= kLastClass; ++cls) {
    const size_t block = class_block_size(cls);
    const PageGeometry g = geometry_for_block(block);
    const size_t page_bytes = g.count == 1 ? kSegmentSize : size_t{1} << g.shift;
    for (size_t i = 0; i < g.count; ++i) {
      uintptr_t start = seg + i * page_bytes + (i == 0 ? kSegmentHeaderSize : 0);
      const size_t align = (block & (block - 1)) == 0 ? block : 16;
      start = (start + align - 1) & ~uintptr_t(align - 1);
      const uintptr_t end = seg + (i + 1) * page_bytes;
      Page page;
      page.init(reinterpret_cast<uint8_t*>(start), end - start, block, cls, 0x1234567);
      const uintptr_t area_end = start + size_t{page.reserved} * block;
      size_t hits = 0;
      for (uintptr_t a = seg; a < seg + kSegmentSize; a += 8) {
        const bool want = a >= start && a < area_end && (a - start) % block == 0;
        if (page.is_block_start(reinterpret_cast<void*>(a)) != want) {
          FAIL() << "class " << cls << " (block " << block << ") page " << i << " offset "
                 << (a - seg);
        }
        hits += want;
      }
      EXPECT_EQ(hits, page.reserved);
    }
  }
  std::free(mem);
}
