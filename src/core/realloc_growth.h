// How many bytes realloc asks for when a block must move to grow, how the
// room it adds is kept from costing memory the program never writes, and
// what a block kept in place tells placement.
#pragma once
#include <cstddef>

#include "core/arena.h"
#include "core/bits.h"
#include "core/config.h"
#include "core/domain.h"
#include "core/segment.h"
#include "core/span_trim.h"

namespace shardalloc::core {

// A huge block (over kLargeBlockMax; it owns whole slots, and grows in place
// up to its span's end) that must move to hold `size` bytes moves with room
// to grow again: an eighth of its usable size, two slots at least (its
// usable size ends 2 KiB short of a slot end, so that anything less than a
// slot of room rounds up to the slot the exact size takes anyway). A
// program that grows a block a little at a time (stress-ng's bigheap: 64
// KiB a call) otherwise copied the whole block at every slot it crossed,
// O(n^2) bytes for a block grown to n, and left a dead copy resident until
// the purge. A request that outgrows the room (the caller grows
// geometrically itself) gets what it asked for. Callers retry with `size`
// when the larger request fails, and give the room's pages back
// (release_room; checked builds fill it with the slack pattern instead).
// Used by the process heap's realloc (malloc override, shard_realloc); a
// first-class heap's realloc, whose region may be small, moves to `size`.
inline size_t realloc_move_size(size_t size, size_t usable) {
  if (size <= usable || usable <= kLargeBlockMax) return size;
  const size_t room = usable / 8 > 2 * kSegmentSize ? usable / 8 : 2 * kSegmentSize;
  // usable < kMaxRequest + kSegmentSize (2^62 + a slot): no overflow.
  const size_t grown = usable + room;
  return grown > size && grown <= kMaxRequest ? grown : size;
}

// After a move with room: q, the new huge block, holds `size` bytes the
// program uses. Where its span was used before (not zeroed), the room's
// whole pages may hold an earlier tenant's pages, resident for as long as
// the block lives (placement prefers the most resident span, so the room
// lands on such pages when it can: a review measured +11.6% RSS for 64 MiB
// buffers each grown once); they go back, so that room costs memory only
// where the program writes it. Less than kRoomPurgeMin is left alone.
inline constexpr size_t kRoomPurgeMin = 64 * 1024;
inline void release_room(void* q, size_t size) {
  Segment* s = segment_of(q);
  if (s->kind != SegmentKind::kHuge) return;
  // The room is not written yet (note_huge_written raises this when it is):
  // the slots' resident hint at release (Arena::resident) leaves it out.
  s->huge_written = addr(q) + size - addr(s);
  if (s->zeroed) return;
  const Domain* d = s->domain;
  const uintptr_t start = align_up(addr(q) + size, kOsPage);
  const uintptr_t end = addr(s->slot_end());
  if (d->source.purge == nullptr || start >= end || end - start < kRoomPurgeMin) return;
  // An earlier tenant's extent, which the slots' hint keeps, goes too.
  purge_span_from(s, start, end);
}

// realloc kept p, a huge block, for `size` bytes: the extent its slots'
// resident hint will record at release (Segment::huge_written) covers them.
inline void note_huge_written(void* p, size_t size) {
  Segment* s = segment_of(p);
  if (s->kind != SegmentKind::kHuge) return;
  const size_t end = addr(p) + size - addr(s);
  if (end > s->huge_written) s->huge_written = end;
}

// realloc's rule for keeping p, a block of `usable` bytes, for `size` bytes:
// shrinking by less than half keeps it, and a kept huge block's resident
// hint then covers `size` (note_huge_written; `in_arena`: p is in a segment,
// not a guarded sample). Checked builds keep no block here: a shrink moves
// the block (the old one goes to the quarantine, so that a stale pointer
// faults or is caught by its poison), and only a huge block that grows
// within the room its last move left stays, its size record rewritten
// (resize_huge_in_place), so that the bytes past the new size are still
// checked at free.
inline bool realloc_keeps(void* p, size_t size, size_t usable, bool in_arena) {
  if (kChecked || size > usable || size < usable / 2) return false;
  if (in_arena && usable > kLargeBlockMax) note_huge_written(p, size);
  return true;
}

}  // namespace shardalloc::core
