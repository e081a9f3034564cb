// Checked mode (SHARDALLOC_CHECKED=1; on in Debug builds): what it adds to the
// free lists and blocks. See docs/reliability.md, "Checked mode".
//   - Free-list links inside blocks are stored encoded with two per-page keys,
//     so a stray write to a freed block, or a forged link, decodes to garbage
//     that fails validation instead of steering allocation anywhere.
//   - Every block ends in a 16-byte trailer: the size the caller asked for
//     (with how new / new[] allocated it), then a canary: "live" while
//     allocated, "quarantined" while its free waits, "evicted" from the
//     quarantine's end to the free it then makes, "freed" on a free list.
//     free swaps live (or evicted) -> quarantined or freed (catching any
//     double free of a block not reallocated since); malloc checks freed ->
//     live (catching writes to freed blocks). Huge blocks keep their trailer in the segment
//     header's page, just past the header.
//   - The slack between the requested size and the trailer holds a keyed
//     pattern, checked at free (overflows of 1 byte and more); the word before
//     a block (the previous block's canary, or a page's front guard) is
//     checked too (underflows).
//   - The process heap's frees go through a quarantine: the block is filled
//     with a poison word and kept from reuse for a while; the poison is
//     verified when it leaves (writes after free). Huge blocks are made
//     inaccessible instead, and live ones sit between inaccessible gaps.
#pragma once
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/bits.h"

#ifndef SHARDALLOC_CHECKED
#define SHARDALLOC_CHECKED 0
#endif

namespace shardalloc::core {

inline constexpr bool kChecked = SHARDALLOC_CHECKED != 0;
// Bytes each block gives up to its trailer (requested size, canary).
inline constexpr size_t kCanaryBytes = kChecked ? 16 : 0;
// Checked small and medium pages keep a guard word pair before their first block.
inline constexpr size_t kFrontGuardBytes = kChecked ? 16 : 0;

// The block bytes a request of `size` needs: room for the trailer, and never
// less than a link plus a trailer (the two must not overlap).
constexpr size_t checked_block_bytes(size_t size) { return (size < 8 ? 8 : size) + kCanaryBytes; }

// How a block was allocated, kept in its trailer (checked mode): operator
// delete and delete[] check it against how they free.
enum class AllocKind : unsigned { kMalloc = 0, kNew = 1, kNewArray = 2 };

// The trailer's first word: requested size (< 2^32 for blocks in pages; any
// size for huge blocks, whose offset is 0), the offset of the pointer handed
// out from the block start (aligned allocations), and the kind.
struct SizeRecord {
  static constexpr uint64_t kSizeBits = 32;
  static uint64_t pack(size_t size, size_t offset, AllocKind kind) {
    return uint64_t(size) | (uint64_t(offset) << kSizeBits) | (uint64_t(kind) << 62);
  }
  static size_t size_of(uint64_t w, bool huge) {
    return huge ? size_t(w & ((uint64_t{1} << 62) - 1)) : size_t(w & 0xffffffffu);
  }
  static size_t offset_of(uint64_t w, bool huge) {
    return huge ? 0 : size_t((w >> kSizeBits) & ((uint64_t{1} << 30) - 1));
  }
  static AllocKind kind_of(uint64_t w) { return AllocKind(w >> 62); }
};

// Per-page secrets of checked mode. Two keys, as in mimalloc's encoding:
// xor, rotate, add, so neither a zero link nor a known pointer leaks a key.
struct FreeListKeys {
  uintptr_t k0 = 0;
  uintptr_t k1 = 0;

  void reseed(uintptr_t seed) {
    k0 = mix(seed) | 1;  // odd, so the rotation count k0 & 63 varies with it
    k1 = mix(k0 ^ seed);
  }
  uintptr_t encode(uintptr_t next) const { return std::rotl(next ^ k1, int(k0 & 63)) + k0; }
  uintptr_t decode(uintptr_t stored) const { return std::rotr(stored - k0, int(k0 & 63)) ^ k1; }
  // Canaries: every byte in 0x80..0xfe (bit 7 set, bit 0 clear), so that no
  // byte of ASCII text, zero or 0xff written over one leaves it intact (a
  // 1-byte overflow of 'A' went unseen by 1 keyed canary in 256). The four
  // states keep that property: a xor of 0x7e and byte rotations.
  static constexpr uint64_t unwritable(uint64_t x) {
    return (x | 0x8080808080808080ull) & ~uint64_t{0x0101010101010101ull};
  }
  uint64_t canary_live(uintptr_t block) const { return unwritable(std::rotl(block ^ k0, 17) ^ k1); }
  uint64_t canary_freed(uintptr_t block) const {
    return canary_live(block) ^ 0x7e7e7e7e7e7e7e7eull;
  }
  uint64_t canary_quarantined(uintptr_t block) const { return std::rotl(canary_live(block), 32); }
  // Between leaving the quarantine and the free that pushes it on a list.
  uint64_t canary_evicted(uintptr_t block) const { return std::rotl(canary_live(block), 16); }
  // The size record is stored xor this, so a stray write decodes to nonsense.
  uint64_t record_key(uintptr_t block) const { return std::rotl(block ^ k1, 29) + k0; }
  // The pattern of slack bytes (by address: byte i of the word at an
  // 8-aligned address) and of a page's front guard: unwritable like the
  // canaries (with any byte of 0x01..0xff, a 1-byte underflow of 'A' into the
  // front guard went unseen in 1 page of 128).
  uint64_t slack_word() const { return unwritable(mix(k1 + 0x5ac4)); }
  // What a quarantined block is filled with.
  // Unwritable too: with 0xff bytes allowed, a use after free writing 0xff
  // over a byte of poison went unseen 1 time in 128.
  uint64_t poison_word() const { return unwritable(mix(k0 ^ 0xdeadf1ee)); }

  // splitmix64's finaliser: every input bit reaches every output bit.
  static uintptr_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return uintptr_t(x ^ (x >> 31));
  }
};

// Unchecked builds keep no keys, so Page stays the same size; the same
// interface keeps checked-only code well-formed (it is never called).
struct NoFreeListKeys {
  void reseed(uintptr_t) {}
  uintptr_t encode(uintptr_t next) const { return next; }
  uintptr_t decode(uintptr_t stored) const { return stored; }
  uint64_t canary_live(uintptr_t) const { return 0; }
  uint64_t canary_freed(uintptr_t) const { return 0; }
  uint64_t canary_quarantined(uintptr_t) const { return 0; }
  uint64_t canary_evicted(uintptr_t) const { return 0; }
  uint64_t record_key(uintptr_t) const { return 0; }
  uint64_t slack_word() const { return 0; }
  uint64_t poison_word() const { return 0; }
};

using PageKeys = std::conditional_t<kChecked, FreeListKeys, NoFreeListKeys>;

// Checked mode: the blocks a thread freed, kept from reuse (FIFO) until more
// than kSlots blocks or kMaxBytes bytes wait. Owner of the heap only.
struct CheckedQuarantine {
  static constexpr uint32_t kSlots = 256;
  static constexpr size_t kMaxBytes = size_t{8} << 20;
  void* slots[kSlots] = {};
  uint32_t first = 0;  // oldest entry
  uint32_t count = 0;
  size_t bytes = 0;
};
struct NoQuarantine {};
using Quarantine = std::conditional_t<kChecked, CheckedQuarantine, NoQuarantine>;

}  // namespace shardalloc::core
