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

}  // namespace shardalloc::core
