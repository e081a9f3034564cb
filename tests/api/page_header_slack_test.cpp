// An underflow of a small segment's first block (page 0's first block, right
// after the segment header) must not reach a page header, whatever the
// slot's color (core/segment.h, kPageHeaderSlack). Release builds do not
// catch small-block underflows (docs/reliability.md), but until the slack
// the last color's page 7 header ended at that block: 32 bytes of 'A'
// rewrote its in_use, size_class (65: beyond the class queues), reserved
// and divisor, and shard_check_heap stopped the program ("a page sits in
// the wrong queue").
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/checked.h"
#include "core/segment.h"
#include "shardalloc/shardalloc.h"

using namespace shardalloc::core;

TEST(PageHeaderSlack, UnderflowOfASegmentsFirstBlockLeavesPageHeadersIntact) {
  // Checked builds catch the underflow itself (page 0's front guard) at free.
  if (kChecked) GTEST_SKIP() << "checked builds report the underflow";
  std::vector<void*> keep;
  keep.reserve(size_t{1} << 20);
  uintptr_t seg = 0;
  char* first = nullptr;
  // The first block of page 0 of a segment whose slot has the last color,
  // then blocks until page 7 of that segment (its header nearest the block) is in use.
  for (size_t i = 0; i < (size_t{1} << 20); ++i) {
    void* p = shard_malloc(16);
    ASSERT_NE(p, nullptr);
    keep.push_back(p);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (first == nullptr && (a & kSegmentMask) == kSegmentHeaderSize &&
        Segment::page_color(a) == (kPageColors - 1) * kPageColorStride) {
      first = static_cast<char*>(p);
      seg = a - kSegmentHeaderSize;
    }
    if (first != nullptr && a >= seg + (kSmallPagesPerSegment - 1) * kSmallPageSize &&
        a < seg + kSegmentSize)
      break;
  }
  ASSERT_NE(first, nullptr) << "no segment of the last color in " << keep.size() << " blocks";
  std::memset(first - 32, 'A', 32);   // the underflow
  EXPECT_GT(shard_check_heap(), 0u);  // stops the program on a damaged page header
  for (void* p : keep) shard_free(p);
  shard_check_heap();
}
