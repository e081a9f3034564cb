// How many bytes realloc asks for when a block must move to grow.
#pragma once
#include <cstddef>

#include "core/config.h"

namespace shardalloc::core {

// A huge block (over kLargeBlockMax; it owns whole slots, and grows in place
// up to its span's end) that must move to hold `size` bytes moves with room
// to grow again: an eighth of its usable size, a slot at least. A program
// that grows a block a little at a time (stress-ng's bigheap: 64 KiB a
// call) otherwise copied the whole block at every slot it crossed, O(n^2)
// bytes for a block grown to n, and left a dead copy resident until the
// purge. The room costs address space, and memory only where the program
// writes it (or where the slots it lands on were used before). A request
// that outgrows the room (the caller grows geometrically itself) gets what
// it asked for. Callers retry with `size` when the larger request fails.
// Used by the process heap's realloc (malloc override, shard_realloc); a
// first-class heap's realloc, whose region may be small, moves to `size`.
inline size_t realloc_move_size(size_t size, size_t usable) {
  if (size <= usable || usable <= kLargeBlockMax) return size;
  const size_t room = usable / 8 > kSegmentSize ? usable / 8 : kSegmentSize;
  const size_t grown = usable + room;  // usable <= kMaxRequest (2^62): no overflow
  return grown > size && grown <= kMaxRequest ? grown : size;
}

}  // namespace shardalloc::core
