// Checked mode (SHARDALLOC_CHECKED=1; on in Debug builds): what it adds to the
// free lists and blocks. See docs/reliability.md, "Checked mode".
//   - Free-list links inside blocks are stored encoded with two per-page keys,
//     so a stray write to a freed block, or a forged link, decodes to garbage
//     that fails validation instead of steering allocation anywhere.
//   - Every block ends in an 8-byte canary: "live" while allocated, "freed"
//     on a free list. free swaps live -> freed (catching any double free of a
//     block not reallocated since, and overflows past the usable size);
//     malloc checks freed -> live (catching writes to freed blocks).
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
// Bytes each block gives up to its canary.
inline constexpr size_t kCanaryBytes = kChecked ? 8 : 0;

// The block bytes a request of `size` needs: room for the canary, and never
// less than a link plus a canary (the two must not overlap).
constexpr size_t checked_block_bytes(size_t size) { return (size < 8 ? 8 : size) + kCanaryBytes; }

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
  uint64_t canary_live(uintptr_t block) const { return std::rotl(block ^ k0, 17) ^ k1; }
  uint64_t canary_freed(uintptr_t block) const { return ~canary_live(block); }

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
};

using PageKeys = std::conditional_t<kChecked, FreeListKeys, NoFreeListKeys>;

}  // namespace shardalloc::core
