// Size classes: multiples of 16 up to 64 bytes, then four classes per power
// of two up to kLargeBlockMax. Every block size is a multiple of 16, so every
// block is at least 16-aligned (kMinAlign, alignof(max_align_t) on x86-64,
// aarch64 and riscv64), whatever the request: glibc guarantees that for
// malloc(1) too, and programs keep tags in the low 4 bits of pointers.
// (There was an 8-byte class for requests of 1..8 bytes; what dropping it
// cost is measured in docs/benchmarks.md, "The 8-byte class".)
// Worst-case waste is below 20% of a block above 64 bytes.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

#include "core/config.h"

namespace shardalloc::core {

inline constexpr unsigned kExactClasses = 4;  // 16, 32, 48, 64
inline constexpr unsigned kClassesPerDoubling = 4;
// Class 0 is unused so that a zeroed class field means "no class".
inline constexpr unsigned kLastClass =
    kExactClasses + kClassesPerDoubling * (std::bit_width(kLargeBlockMax) - 1 - 6);
inline constexpr unsigned kClassCount = kLastClass + 1;

// Class of a request size in 0..kLargeBlockMax (size 0 is served as 1).
constexpr unsigned size_class_of(size_t size) {
  if (size <= 64) return size == 0 ? 1u : unsigned((size + 15) >> 4);
  const unsigned k = unsigned(std::bit_width(size - 1)) - 1;  // size in (2^k, 2^(k+1)]
  const size_t step = size_t{1} << (k - 2);
  const unsigned i = unsigned((size - (size_t{1} << k) + step - 1) / step);  // 1..4
  return kExactClasses + (k - 6) * kClassesPerDoubling + i;
}

constexpr size_t class_block_size(unsigned cls) {
  if (cls <= kExactClasses) return size_t{cls} * 16;
  const unsigned rel = cls - kExactClasses - 1;
  const unsigned k = 6 + rel / kClassesPerDoubling;
  const unsigned i = rel % kClassesPerDoubling + 1;
  return (size_t{1} << k) + i * (size_t{1} << (k - 2));
}

static_assert(class_block_size(kLastClass) == kLargeBlockMax);
static_assert(size_class_of(kLargeBlockMax) == kLastClass);
static_assert(class_block_size(size_class_of(65)) == 80);
static_assert(size_class_of(0) == 1 && size_class_of(16) == 1 && size_class_of(17) == 2);
static_assert(class_block_size(1) == kMinAlign && kMinAlign % alignof(max_align_t) == 0,
              "every class is a multiple of the fundamental alignment");

// O(1) class lookup for direct sizes: indexed by (size + 7) / 8.
struct DirectClassTable {
  uint8_t cls[kDirectSlots];
  constexpr DirectClassTable() : cls{} {
    for (size_t w = 0; w < kDirectSlots; ++w) cls[w] = uint8_t(size_class_of(w == 0 ? 1 : w * 8));
  }
};
inline constexpr DirectClassTable kDirectClass{};

constexpr size_t direct_slot_of(size_t size) { return (size + kWordSize - 1) / kWordSize; }

// O(1) class lookup above the direct sizes, for the queued fast path: past
// kDirectSizeMax every class boundary is a multiple of 256 bytes (four
// classes per doubling from 1 KiB up), so (size - 1) / 256 picks the class
// in one byte load, where size_class_of takes a bit scan and four shifts.
inline constexpr unsigned kQueuedClassShift = 8;
struct QueuedClassTable {
  uint8_t cls[kLargeBlockMax >> kQueuedClassShift];
  constexpr QueuedClassTable() : cls{} {
    // Entry i serves sizes (i * 256, (i + 1) * 256]: the class of the largest.
    for (size_t i = 0; i < sizeof(cls); ++i)
      cls[i] = uint8_t(size_class_of((i + 1) << kQueuedClassShift));
  }
};
inline constexpr QueuedClassTable kQueuedClass{};

// kDirectSizeMax < size <= kLargeBlockMax.
constexpr unsigned queued_class_of(size_t size) {
  return kQueuedClass.cls[(size - 1) >> kQueuedClassShift];
}

// Every class past the direct sizes starts and ends on a 256-byte boundary,
// so the table agrees with size_class_of at both ends of each class
// (tests/core/size_class_test.cpp checks every size).
constexpr bool queued_classes_exact() {
  for (unsigned c = size_class_of(kDirectSizeMax) + 1; c <= kLastClass; ++c) {
    const size_t first = class_block_size(c - 1) + 1;
    const size_t last = class_block_size(c);
    if (last % (size_t{1} << kQueuedClassShift) != 0) return false;
    if (queued_class_of(first) != c || queued_class_of(last) != c) return false;
  }
  return true;
}
static_assert(class_block_size(size_class_of(kDirectSizeMax)) == kDirectSizeMax &&
                  queued_classes_exact(),
              "the queued class table is exact past kDirectSizeMax");

}  // namespace shardalloc::core
