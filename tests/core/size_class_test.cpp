// Exhaustive checks of the size-class map (the domain is small enough).
#include <gtest/gtest.h>

#include <cstddef>

#include "core/config.h"
#include "core/size_class.h"

using namespace shardalloc::core;

TEST(SizeClass, EverySizeMapsToTheSmallestClassThatFits) {
  for (size_t size = 1; size <= kLargeBlockMax; ++size) {
    const unsigned cls = size_class_of(size);
    ASSERT_GE(cls, 1u);
    ASSERT_LE(cls, kLastClass);
    ASSERT_GE(class_block_size(cls), size) << size;
    if (cls > 1) {
      ASSERT_LT(class_block_size(cls - 1), size) << size;
    }
  }
}

TEST(SizeClass, WasteIsBelowSixteenBytesOrTwentyPercentOfTheBlock) {
  for (size_t size = 1; size <= kLargeBlockMax; ++size) {
    const size_t block = class_block_size(size_class_of(size));
    if (size <= 64) {
      ASSERT_LT(block - size, 16u) << size;  // 16-byte steps
    } else {
      ASSERT_LE((block - size) * 100, block * 20) << "size " << size << " block " << block;
    }
  }
}

// Every block size is a multiple of the fundamental alignment, so every
// block of a page is (malloc(1) included, as glibc guarantees).
TEST(SizeClass, BlockSizesAreIncreasingMultiplesOfTheFundamentalAlignment) {
  static_assert(kMinAlign % alignof(std::max_align_t) == 0);
  EXPECT_EQ(class_block_size(1), kMinAlign);
  for (unsigned cls = 1; cls <= kLastClass; ++cls) {
    EXPECT_EQ(class_block_size(cls) % kMinAlign, 0u);
    if (cls > 1) {
      EXPECT_GT(class_block_size(cls), class_block_size(cls - 1));
    }
    EXPECT_EQ(size_class_of(class_block_size(cls)), cls);
  }
  EXPECT_EQ(class_block_size(kLastClass), kLargeBlockMax);
}

TEST(SizeClass, DirectTableAgreesWithTheFormula) {
  for (size_t size = 0; size <= kDirectSizeMax; ++size) {
    ASSERT_EQ(kDirectClass.cls[direct_slot_of(size)], size_class_of(size == 0 ? 1 : size)) << size;
  }
}

TEST(SizeClass, QueuedTableAgreesWithTheFormula) {
  for (size_t size = kDirectSizeMax + 1; size <= kLargeBlockMax; ++size) {
    ASSERT_EQ(queued_class_of(size), size_class_of(size)) << size;
  }
}

TEST(SizeClass, PowersOfTwoAreExactClasses) {
  for (size_t p = kMinAlign; p <= kLargeBlockMax; p <<= 1)
    EXPECT_EQ(class_block_size(size_class_of(p)), p);
}

// Requests below kMinAlign (0 included) share the smallest class.
TEST(SizeClass, TinyRequestsTakeTheSmallestClass) {
  for (size_t size = 0; size <= kMinAlign; ++size) EXPECT_EQ(size_class_of(size), 1u) << size;
  EXPECT_EQ(size_class_of(kMinAlign + 1), 2u);
}
