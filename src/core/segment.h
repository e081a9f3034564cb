// A segment: kSegmentSize-aligned memory whose first kSegmentHeaderSize bytes
// describe its pages. Small segments hold 8 pages, medium segments 2, large
// segments one page, huge segments one block spanning one or more slots.
//
// Written once by the claiming heap before the segment is published (the
// header fields), then: pages[] as documented in page.h; used_pages and the
// heap list links by the owner only.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/config.h"
#include "core/page.h"

namespace shardalloc::core {

struct Domain;
struct Heap;
struct Arena;

enum class SegmentKind : uint8_t { kSmall = 1, kMedium = 2, kLarge = 3, kHuge = 4 };

// How a segment of a kind is cut into pages.
struct PageGeometry {
  SegmentKind kind;
  uint8_t shift;  // page index = offset >> shift (63: one page)
  uint16_t count;
};

constexpr PageGeometry geometry_for_block(size_t block_size) {
  if (block_size <= kSmallBlockMax)
    return {SegmentKind::kSmall, kSmallPageShift, uint16_t(kSegmentSize >> kSmallPageShift)};
  if (block_size <= kMediumBlockMax)
    return {SegmentKind::kMedium, kMediumPageShift, uint16_t(kSegmentSize >> kMediumPageShift)};
  return {SegmentKind::kLarge, 63, 1};
}

// Heaps keep, per kind that has several pages, a list of segments with a free page.
constexpr unsigned partial_index(SegmentKind kind) { return kind == SegmentKind::kSmall ? 0 : 1; }
inline constexpr unsigned kPartialKinds = 2;

inline constexpr size_t kSegmentHeaderSize = 2048;  // the segment fields, then 8 two-line pages
inline constexpr size_t kSegmentFieldsSize = 128;   // the fields up to page_space
inline constexpr size_t kPageColorStride = sizeof(Page);
// Bytes every color leaves between its last page header and the segment's
// first block (page 0's area, at kSegmentHeaderSize): an underflow of that
// block (of up to this many bytes: the 1 and 32 bytes of tests/security and
// more) writes slack, never a page header. (A color that ended the pages at
// kSegmentHeaderSize put page 7's free line there: 17 to 32 bytes of
// underflow rewrote its in_use, size_class, reserved and block-start divisor.)
inline constexpr size_t kPageHeaderSlack = 128;
// As many as fit before the slack: 7 (checked builds' larger pages: 2).
// Not a power of two, so page_color takes a modulo (by a constant: a
// multiply; page_of reads page_table and takes none). Measured against 8
// colors and no slack (mixed-sizes T=1 0.03, cachegrind D1 read misses):
// +1.6% (48 KiB 12-way D1) / +1.0% (32 KiB 8-way), instructions +0.07%;
// 8 colors a line apart (448 bytes of slack): +3.4% / +1.8%.
inline constexpr size_t kPageColors = (kSegmentHeaderSize - kSegmentFieldsSize -
                                       kSmallPagesPerSegment * sizeof(Page) - kPageHeaderSlack) /
                                          kPageColorStride +
                                      1;
static_assert(kChecked || kPageColors == 7, "seven colors in ordinary builds");
static_assert(Page::kHugeTrailerOffset == kSegmentHeaderSize,
              "a huge block's trailer follows its segment header");

struct Segment {
  uintptr_t cookie;  // address ^ domain secret: tells a header from arbitrary memory
  Domain* domain;
  Heap* heap;  // owner; null for huge segments, which any thread may release
  Arena* arena;
  size_t span_slots;
  SegmentKind kind;
  uint8_t page_shift;  // page index = (p - segment) >> page_shift
  uint16_t page_count;
  uint16_t used_pages;  // pages in use (owner)
  uint8_t zeroed;  // every byte past the header read as zero when claimed (fresh or purged slots)
  // One byte, read by kind: paged segments use in_partial_list, huge ones tail_guard.
  union {
    uint8_t in_partial_list;  // paged: on the heap's list of segments with a free page (owner)
    uint8_t
        tail_guard;  // huge: one more slot after the block's span, inaccessible but its first page
  };
  // The page holding each 64 KiB of the segment, as its header's offset
  // from the segment (fill_page_table, when the segment is claimed): page_of
  // is a shift, a mask, one load and an add, with no multiply by
  // sizeof(Page) and no page_shift. 16-bit offsets keep the table in the
  // first cache line with heap, so that a free reads one line of the
  // segment header (a line every segment has at the same L1 set).
  uint16_t page_table[kSmallPagesPerSegment];
  union {
    Segment* next_partial;  // paged: heap's list of small segments with a free page (owner)
    // Huge: bytes from the segment's start up to the end of what the
    // program asked for (alloc_huge; raised by a realloc that keeps the
    // block: note_huge_written). At release, the extent its slots' resident
    // hint records (Arena::resident): pages past it were never written.
    size_t huge_written;
  };
  Segment* prev_partial;
  // The page headers: kSmallPagesPerSegment Pages at one of kPageColors
  // offsets in here, by the slot's address (page_color). At one fixed offset
  // the headers of every segment share the same few L1 sets (which a 4 KiB
  // period indexes): with more segments in use than the cache has ways, as
  // in mixed-sizes, most frees missed on their page header.
  alignas(64) unsigned char page_space[kSegmentHeaderSize - kSegmentFieldsSize];

  // The color of the slot at a: kPageColors consecutive slots place their
  // page headers kPageColorStride apart. A function of the address alone,
  // so that a statistics walk finds them in any header it reads.
  static constexpr size_t page_color(uintptr_t a) {
    return ((a >> kSegmentShift) % kPageColors) * kPageColorStride;
  }
  // Where this segment's page headers start, from the segment.
  size_t pages_offset() const { return kSegmentFieldsSize + page_color(addr(this)); }
  Page* pages() { return ptr<Page>(addr(this) + pages_offset()); }
  const Page* pages() const { return ptr<const Page>(addr(this) + pages_offset()); }

  Page* page_of(const void* p) {
    return ptr<Page>(addr(this) +
                     page_table[(addr(p) >> kSmallPageShift) & (kSmallPagesPerSegment - 1)]);
  }
  // After page_shift is set. (A huge block aligned to the next slot starts at
  // offset kSegmentSize, which masks to entry 0: pages[0], as for any huge block.)
  void fill_page_table() {
    const size_t first = pages_offset();
    for (size_t i = 0; i < kSmallPagesPerSegment; ++i) {
      const size_t index = page_shift >= kSegmentShift ? 0 : (i << kSmallPageShift) >> page_shift;
      page_table[i] = uint16_t(first + index * sizeof(Page));
    }
  }
  uint8_t* slot_end() { return reinterpret_cast<uint8_t*>(this) + span_slots * kSegmentSize; }
};

static_assert(offsetof(Segment, page_table) + sizeof(Segment::page_table) <= 64,
              "heap and page_table share the header's first cache line");
static_assert(kSegmentHeaderSize <= UINT16_MAX, "page_table's offsets fit 16 bits");
static_assert(offsetof(Segment, page_space) == kSegmentFieldsSize,
              "the fields end where pages begin");
static_assert(sizeof(Segment) == kSegmentHeaderSize, "segment header must fill its reserved bytes");
static_assert((kPageColors - 1) * kPageColorStride + kSmallPagesPerSegment * sizeof(Page) +
                      kPageHeaderSlack <=
                  sizeof(Segment::page_space),
              "the last color's pages end kPageHeaderSlack bytes before the header does");

// Huge blocks in every build (docs/reliability.md, section 6): a keyed word
// pair right before the block, checked when the block is freed (an underflow
// of up to 16 bytes changes it), and, when the page source can guard pages
// and the block is at most kHugeTailGuardMax bytes, one slot after the
// block's span made inaccessible but for its first OS page
// (which a concurrent statistics walk may read as a slot header): a linear
// overflow of the block faults before it reaches another segment. Checked
// builds keep their trailer in front of the block instead of the word pair.
// The guard slot costs two mprotect calls per allocation and free (no page
// faults: contents stay), about 20 us a pair on this project's machines:
// Linux gives it only when asked (SHARDALLOC_HUGE_GUARDS=1), and only to
// huge blocks up to kHugeTailGuardMax (docs/benchmarks.md, "Hardening").
inline constexpr size_t kHugeTailGuardMax = size_t{1} << 20;
inline constexpr size_t kOsPage = 4096;
inline constexpr size_t kHugeFrontGuardBytes = kChecked ? 0 : 16;
// Every byte of the pair is keyed but in 0x80..0xfe: no byte of ASCII text,
// zero or 0xff written over it leaves it intact.
inline constexpr uintptr_t huge_front_guard(uintptr_t cookie, unsigned word) {
  const uintptr_t keyed = (cookie ^ (word == 0 ? 0x5a3c96e1d2b4f807ull : 0xc3a5e10f7b2d9684ull)) *
                          0x9e3779b97f4a7c15ull;
  return (keyed | 0x8080808080808080ull) & ~uintptr_t{0x0101010101010101ull};
}
static_assert(kSegmentHeaderSize % 64 == 0, "page 0 starts cache-line aligned");

// The segment of a block. Subtracting one maps a block that starts exactly at
// a slot boundary (huge blocks with alignment >= kSegmentSize) to the header
// in the slot before it; every other block starts past its header.
SHARD_INLINE Segment* segment_of(const void* p) {
  return ptr<Segment>((addr(p) - 1) & ~kSegmentMask);
}

// The segment whose header holds the page header `page` (page headers sit
// in their segment's first slot).
SHARD_INLINE Segment* segment_of_page(Page* page) {
  return ptr<Segment>(align_down(addr(page), kSegmentSize));
}
SHARD_INLINE const Segment* segment_of_page(const Page* page) {
  return ptr<const Segment>(align_down(addr(page), kSegmentSize));
}

}  // namespace shardalloc::core
