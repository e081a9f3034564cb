// Checked mode's keyed words (core/checked.h): the canaries of a block's four
// states are distinct, and no byte of a canary or of the slack pattern (which
// also fills a page's front guard) a 1-byte overflow commonly writes (ASCII
// text, zero, 0xff) can leave one intact. The keys are plain arithmetic, so
// this runs in every build.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/checked.h"

using namespace shardalloc::core;

namespace {

bool every_byte_unwritable(uint64_t w) {
  for (int i = 0; i < 8; ++i) {
    const unsigned byte = (w >> (8 * i)) & 0xff;
    if (byte < 0x80 || byte == 0xff) return false;
  }
  return true;
}

TEST(CheckedKeys, CanariesHaveNoAsciiZeroOrFfByte) {
  for (uintptr_t seed = 1; seed < 2000; ++seed) {
    FreeListKeys keys;
    keys.reseed(seed * 0x9e3779b97f4a7c15ull);
    for (uintptr_t block = 0x7f0000100000; block < 0x7f0000100000 + 64 * 16; block += 16) {
      const uint64_t states[] = {keys.canary_live(block), keys.canary_freed(block),
                                 keys.canary_quarantined(block), keys.canary_evicted(block)};
      for (uint64_t c : states) ASSERT_TRUE(every_byte_unwritable(c)) << std::hex << c;
      for (int i = 0; i < 4; ++i) {
        for (int j = i + 1; j < 4; ++j) ASSERT_NE(states[i], states[j]) << seed << " " << block;
      }
    }
  }
}

// The flake this guards against: with a byte-random canary, writing 'A' one
// past the block left the canary intact in 1 of 256 pages.
TEST(CheckedKeys, AOneByteOverflowAlwaysChangesTheLiveCanary) {
  for (uintptr_t seed = 1; seed < 20000; ++seed) {
    FreeListKeys keys;
    keys.reseed(seed);
    const uint64_t live = keys.canary_live(0x7f0000200000);
    for (unsigned byte : {0x00u, 0x41u, 0x7fu, 0xffu}) {
      ASSERT_NE((live & ~uint64_t{0xff}) | byte, live) << seed;
    }
  }
}

// The slack pattern guards the bytes after a request and, on every page, the
// 16 bytes before its first block: a 1-byte underflow or overflow of text,
// zero or 0xff must change it. With bytes drawn from 0x01..0xff, 'A' written
// just below a page's first block went unseen in 1 run of 128
// (security.checked.memcpy_underflow_1_8).
TEST(CheckedKeys, SlackPatternAndPoisonHaveNoAsciiZeroOrFfByte) {
  for (uintptr_t seed = 1; seed < 20000; ++seed) {
    FreeListKeys keys;
    keys.reseed(seed * 0x9e3779b97f4a7c15ull);
    ASSERT_TRUE(every_byte_unwritable(keys.slack_word())) << std::hex << keys.slack_word();
    // The quarantine's poison: a write after free of any such byte shows.
    ASSERT_TRUE(every_byte_unwritable(keys.poison_word())) << std::hex << keys.poison_word();
  }
}

}  // namespace
