// Checked mode's allocation and free hooks (see core/checked.h and
// docs/reliability.md, "Checked mode"): trailers armed at malloc and checked
// at free, slack patterns, guard words, the quarantine of the process heap,
// huge blocks between inaccessible gaps. Unchecked builds compile nothing
// here: heap.h names these functions only in discarded `if constexpr` branches.
#include "core/checked.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"

#if SHARDALLOC_CHECKED

namespace shardalloc::core {
namespace {

// The pattern byte at address a: byte (a mod 8) of the pattern word.
uint8_t pattern_byte(uintptr_t a, uint64_t word) { return uint8_t(word >> (8 * (a & 7))); }

void fill_pattern(uintptr_t from, uintptr_t to, uint64_t word) {
  for (; from < to && (from & 7) != 0; ++from) *ptr<uint8_t>(from) = pattern_byte(from, word);
  for (; from + 8 <= to; from += 8) *ptr<uint64_t>(from) = word;
  for (; from < to; ++from) *ptr<uint8_t>(from) = pattern_byte(from, word);
}

// Not seen by TSan (and so never inlined into code it sees): shard_check_heap
// reads the slack of live blocks that another thread may be freeing at that
// moment, and poisoning for its quarantine (plain stores); the check then
// looks at the canary again before it reports (heap_check.cpp,
// freed_meanwhile). Every other caller reads blocks no other thread writes.
__attribute__((no_sanitize("thread"), noinline)) bool holds_pattern(uintptr_t from, uintptr_t to,
                                                                    uint64_t word) {
  for (; from < to && (from & 7) != 0; ++from) {
    if (*ptr<uint8_t>(from) != pattern_byte(from, word)) return false;
  }
  for (; from + 8 <= to; from += 8) {
    if (*ptr<uint64_t>(from) != word) return false;
  }
  for (; from < to; ++from) {
    if (*ptr<uint8_t>(from) != pattern_byte(from, word)) return false;
  }
  return true;
}

// Where the bytes a block's user data may not reach end: its trailer (page
// blocks) or its end (huge blocks, whose trailer is elsewhere).
uintptr_t data_end(const Page* page, const Block* b) {
  return page->is_huge() ? addr(b) + page->block_size : addr(page->record_of(b));
}

// Huge blocks: the first byte before p that the pattern covers (the part of
// p's OS page below it, never the header and trailer).
uintptr_t huge_front(const Page* page, uintptr_t p) {
  const uintptr_t header_end = addr(segment_of_page(page)) + kSegmentHeaderSize + kCanaryBytes;
  const uintptr_t page_start = align_down(p, kOsPage);
  return page_start > header_end ? page_start : p;
}

// The range a quarantined huge block makes inaccessible: its whole OS pages
// past the header's page.
void huge_pages(const Page* page, uintptr_t* from, uintptr_t* to) {
  const uintptr_t first =
      align_up(addr(segment_of_page(page)) + kSegmentHeaderSize + kCanaryBytes, kOsPage);
  const uintptr_t start = align_down(addr(page->area), kOsPage);
  *from = start > first ? start : first;
  *to = align_up(addr(page->area) + page->block_size, kOsPage);
}

static_assert(kSegmentHeaderSize <= kOsPage, "a slot's first OS page holds its whole header");

// Calls f(slot) for the start of every slot in [from, to). The first OS page
// of each is never made inaccessible: a concurrent statistics walk that
// cannot read a span's header (being set up or released) steps to the next
// slot and reads its header (core/heap_walk.h), which must stay mapped.
template <class F>
void for_each_slot_start(uintptr_t from, uintptr_t to, F f) {
  for (uintptr_t slot = align_up(from, kSegmentSize); slot < to; slot += kSegmentSize) f(slot);
}

// Makes [from, to) inaccessible but for the first OS page of each slot in it.
void protect_but_slot_starts(const Domain* d, uintptr_t from, uintptr_t to) {
  uintptr_t gap = from;
  for_each_slot_start(from, to, [&](uintptr_t slot) {
    if (slot > gap) d->source.protect(ptr(gap), slot - gap, false);
    gap = slot + kOsPage;
  });
  if (to > gap) d->source.protect(ptr(gap), to - gap, false);
}

// The bytes of a quarantined huge block that stay accessible (the first OS
// page of each slot in it, above): poisoned at free, checked at eviction.
template <class F>
void for_each_readable_part(const Page* page, F f) {
  uintptr_t from, to;
  huge_pages(page, &from, &to);
  const uintptr_t end = addr(page->area) + page->block_size;
  for_each_slot_start(from, to, [&](uintptr_t slot) {
    const uintptr_t part_end = slot + kOsPage < end ? slot + kOsPage : end;
    if (slot < end) f(slot, part_end);
  });
}

// Whether the accessible parts of a quarantined huge block still hold poison.
bool huge_parts_hold_poison(const Page* page) {
  bool intact = true;
  for_each_readable_part(page, [&](uintptr_t from, uintptr_t to) {
    intact = intact && holds_pattern(from, to, page->keys.poison_word());
  });
  return intact;
}

// Whether quarantined block b has not been written since its free: a page
// block holds its poison, a huge block its poison where it is accessible.
bool still_poisoned(const Page* page, const Block* b) {
  if (!page->is_huge()) return holds_pattern(addr(b), data_end(page, b), page->keys.poison_word());
  return segment_of_page(page)->domain->source.protect == nullptr || huge_parts_hold_poison(page);
}

// A free found the trailer in a state other than live: says which bug.
[[noreturn]] void report_canary(const Page* page, const Block* b, uint64_t seen, const void* p) {
  if (seen == page->keys.canary_freed(addr(b)) || seen == page->keys.canary_quarantined(addr(b)) ||
      seen == page->keys.canary_evicted(addr(b))) {
    platform::fatal("double free detected", p);
  }
  platform::fatal(
      "heap corruption: the bytes after the block were overwritten (buffer overflow), block", p);
}

// The word before block b: the previous block's canary, or the page's front
// guard. Huge blocks: the pattern below p in its OS page.
void check_before(const Page* page, const Block* b, uintptr_t user) {
  bool intact;
  if (page->is_huge()) {
    intact = holds_pattern(huge_front(page, user), user, page->keys.slack_word());
  } else if (addr(b) == addr(page->area)) {
    const uint64_t* guard = ptr<const uint64_t>(addr(b) - 16);
    intact = guard[0] == page->keys.slack_word() && guard[1] == page->keys.slack_word();
  } else {
    const uintptr_t prev = addr(b) - page->block_size;
    // relaxed: the previous block may be freed or allocated meanwhile; each
    // of its states is a valid value, and only a torn or foreign one is not.
    const uint64_t c = __atomic_load_n(ptr<uint64_t>(addr(b) - 8), __ATOMIC_RELAXED);
    intact = c == page->keys.canary_live(prev) || c == page->keys.canary_freed(prev) ||
             c == page->keys.canary_quarantined(prev) || c == page->keys.canary_evicted(prev);
  }
  if (!intact)
    platform::fatal(
        "heap corruption: the bytes before the block were overwritten (buffer underflow), block",
        ptr(user));
}

// The decoded size record of block b.
uint64_t record_word(const Page* page, const Block* b) {
  return *page->record_of(b) ^ page->keys.record_key(addr(b));
}

// Everything a free checks besides the canary: the size record, the pointer
// (the one malloc returned), the slack after the request, the word before.
void check_block(const Page* page, const Block* b, const void* p) {
  const bool huge = page->is_huge();
  const uint64_t rec = record_word(page, b);
  const size_t size = SizeRecord::size_of(rec, huge);
  const uintptr_t user = addr(b) + SizeRecord::offset_of(rec, huge);
  const uintptr_t end = data_end(page, b);
  if (user > end || size > end - user) {
    platform::fatal(
        "heap corruption: the size record after the block was overwritten (buffer overflow), block",
        p);
  }
  if (addr(p) != user) platform::fatal("free of a pointer that is not allocated", p);
  if (!holds_pattern(user + size, end, page->keys.slack_word())) {
    platform::fatal(
        "heap corruption: the bytes after the block were overwritten (buffer overflow), block", p);
  }
  check_before(page, b, user);
}

// Marks the block behind p (just allocated for `size` bytes) live. Blocks
// that come off a free list must still carry the freed canary: anything else
// is a write to a freed block. Huge blocks are fresh spans and carry nothing yet.
void arm_canary(void* p, size_t size) {
  Segment* s = segment_of(p);
  const Page* page = s->page_of(p);
  const bool huge = s->kind == SegmentKind::kHuge;
  const Block* b = huge ? static_cast<const Block*>(p) : page->block_of(p);
  uint64_t* record = page->record_of(b);
  if (!huge && record[1] != page->keys.canary_freed(addr(b))) {
    platform::fatal("heap corruption: a freed block was written to (use after free), block", b);
  }
  record[0] = SizeRecord::pack(size, addr(p) - addr(b), AllocKind::kMalloc) ^
              page->keys.record_key(addr(b));
  fill_pattern(addr(p) + size, data_end(page, b), page->keys.slack_word());
  if (huge) fill_pattern(huge_front(page, addr(p)), addr(p), page->keys.slack_word());
  // relaxed: the block is ours alone until we return it; whoever frees it
  // later received the pointer (and so this store) through the program.
  __atomic_store_n(&record[1], page->keys.canary_live(addr(b)), __ATOMIC_RELAXED);
}

// The block of live pointer p (as malloc returned it) after the checks a free
// makes before touching anything; aborts on a pointer that is no block.
Block* checked_block_of(Page* page, void* p, bool huge) {
  if (huge) {
    if (p != page->area) platform::fatal("free of a pointer that is not allocated", p);
    return static_cast<Block*>(p);
  }
  if (!page->in_use) platform::fatal("free of a pointer that is not allocated", p);
  Block* b = page->is_block_start(p) ? static_cast<Block*>(p) : Heap::interior_block(page, p);
  if (!page->is_handed_block(b)) platform::fatal("free of a pointer that is not allocated", p);
  return b;
}

}  // namespace

void disarm_canary(const Page* page, Block* b, const void* p) {
  const uint64_t live = page->keys.canary_live(addr(b));
  // relaxed RMW: only atomicity matters, so that of two racing frees of one
  // block exactly one sees `live`; the list push orders everything else.
  const uint64_t seen =
      __atomic_exchange_n(page->canary_of(b), page->keys.canary_freed(addr(b)), __ATOMIC_RELAXED);
  if (SHARD_LIKELY(seen == live)) return check_block(page, b, p);
  // Leaving the quarantine: checked when it entered, and its poison when it left.
  if (seen == page->keys.canary_evicted(addr(b))) return;
  report_canary(page, b, seen, p);
}

bool live_block_intact(const Page* page, const Block* b) {
  const bool huge = page->is_huge();
  const uint64_t rec = record_word(page, b);
  const size_t size = SizeRecord::size_of(rec, huge);
  const uintptr_t user = addr(b) + SizeRecord::offset_of(rec, huge);
  const uintptr_t end = data_end(page, b);
  return user <= end && size <= end - user &&
         holds_pattern(user + size, end, page->keys.slack_word());
}

size_t requested_size(const void* p) {
  Segment* s = segment_of(p);
  const Page* page = s->page_of(p);
  const bool huge = s->kind == SegmentKind::kHuge;
  // Any pointer into the block (an interior one too) finds its start by index.
  const uintptr_t area = addr(page->area);
  const Block* b =
      ptr<const Block>(huge ? area : area + (addr(p) - area) / page->block_size * page->block_size);
  const uint64_t rec = record_word(page, b);
  const uintptr_t user = addr(b) + SizeRecord::offset_of(rec, huge);
  const size_t size = SizeRecord::size_of(rec, huge);
  if (addr(p) < user || addr(p) - user > size) return 0;  // not the pointer malloc returned
  return size - (addr(p) - user);
}

bool resize_huge_in_place(void* p, size_t size) {
  Segment* s = segment_of(p);
  if (s->kind != SegmentKind::kHuge) return false;
  const Page* page = s->page_of(p);
  if (p != page->area) return false;  // not the block start: the move's free reports it
  const Block* b = static_cast<const Block*>(p);
  uint64_t* record = page->record_of(b);
  // relaxed: the caller owns p; a free racing with its realloc is a bug the
  // free's own exchange of the canary catches.
  if (__atomic_load_n(&record[1], __ATOMIC_RELAXED) != page->keys.canary_live(addr(b))) {
    platform::fatal("realloc of a freed block (use after free)", p);
  }
  const uint64_t rec = record_word(page, b);
  const size_t old_size = SizeRecord::size_of(rec, true);
  const size_t block_bytes = data_end(page, b) - addr(p);
  if (old_size > block_bytes) {
    platform::fatal(
        "heap corruption: the size record after the block was overwritten (buffer overflow), block",
        p);
  }
  if (size > block_bytes) return false;
  // Only the bytes the block gains are checked here (they held slack): the
  // rest of the slack is checked at free, so a block grown a few bytes a
  // call costs a few bytes a call, not its room.
  if (size > old_size &&
      !holds_pattern(addr(p) + old_size, addr(p) + size, page->keys.slack_word())) {
    platform::fatal(
        "heap corruption: the bytes after the block were overwritten (buffer overflow), block", p);
  }
  if (size < old_size) fill_pattern(addr(p) + size, addr(p) + old_size, page->keys.slack_word());
  record[0] = SizeRecord::pack(size, 0, SizeRecord::kind_of(rec)) ^ page->keys.record_key(addr(b));
  return true;
}

void set_alloc_kind(void* p, AllocKind kind) {
  Segment* s = segment_of(p);
  const Page* page = s->page_of(p);
  const Block* b = s->kind == SegmentKind::kHuge ? static_cast<const Block*>(p) : page->block_of(p);
  *page->record_of(b) ^= uint64_t(kind) << 62;  // was kMalloc (0) since arm_canary
}

void* Heap::alloc_checked(size_t size) {
  if (size > kMaxRequest) return nullptr;
  void* p = alloc_block(checked_block_bytes(size));
  if (p != nullptr) arm_canary(p, size);
  return p;
}

void* Heap::alloc_aligned_checked(size_t size, size_t align) {
  if (size > kMaxRequest) return nullptr;
  void* p = alloc_aligned_block(checked_block_bytes(size), align);
  if (p != nullptr) arm_canary(p, size);
  return p;
}

// A huge block between two inaccessible gaps: the header's OS page, the
// front gap (the rest of the first slot: about 500 KiB; the block must start
// in its segment's first slot, where segment_of finds the header), the block
// (ending less than align + 16 bytes before the tail gap: the slack checked
// at free), the tail gap (at least kHugeGuardGap).
void* Heap::alloc_huge_guarded(size_t size, size_t align) {
  const size_t a = align > kMinAlign ? align : kMinAlign;
  if (size > kMaxRequest / 2) return nullptr;
  // The block starts in the last OS page of the first slot, or the page
  // before (two or three before when its end would meet a slot boundary: the
  // header page of every later slot stays readable, below).
  size_t tail_offset = align_up(kSegmentSize - kOsPage + size, kOsPage);
  if (tail_offset % kSegmentSize == 0) tail_offset -= kOsPage;
  const size_t slots = (tail_offset + kHugeGuardGap + kSegmentSize - 1) / kSegmentSize;
  note_setup(slots * kSegmentSize);
  Segment* s = claim_segment(slots, 0, 0);
  if (s == nullptr) return nullptr;
  s->huge_written = tail_offset;  // the block ends at the tail gap
  const uintptr_t tail = addr(s) + tail_offset;
  const uintptr_t block = align_down(tail - size, a);
  const uintptr_t front = addr(s) + kOsPage;
  domain->source.protect(ptr(front), align_down(block, kOsPage) - front, false);
  // The tail gap, but for the first OS page of each slot in it
  // (protect_but_slot_starts). The page after the block is always in the gap.
  protect_but_slot_starts(domain, tail, addr(s->slot_end()));
  set_up_huge(s, ptr<uint8_t>(block), tail - block, false);  // its own gaps (release_huge_guards)
  return ptr(block);
}

void Heap::free_checked(void* p, AllocKind kind, size_t size) {
  Segment* s = segment_of(p);
  if (placeholder || s->cookie != domain->cookie_of(s))
    return free_block(this, p);  // foreign: as ever
  const bool huge = s->kind == SegmentKind::kHuge;
  Page* page = s->page_of(p);
  Block* b = checked_block_of(page, p, huge);
  // relaxed RMW: as in disarm_canary, exactly one of two racing frees sees live.
  const uint64_t seen = __atomic_exchange_n(
      page->canary_of(b), page->keys.canary_quarantined(addr(b)), __ATOMIC_RELAXED);
  if (seen != page->keys.canary_live(addr(b))) report_canary(page, b, seen, p);
  check_block(page, b, p);
  const uint64_t rec = record_word(page, b);
  const AllocKind allocated = SizeRecord::kind_of(rec);
  if (kind == AllocKind::kNew && allocated == AllocKind::kNewArray) {
    platform::fatal("operator delete of a block allocated by new[] (mismatched new[] / delete)", p);
  }
  if (kind == AllocKind::kNewArray && allocated == AllocKind::kNew) {
    platform::fatal("operator delete[] of a block allocated by new (mismatched new / delete[])", p);
  }
  if (size != SIZE_MAX && size != SizeRecord::size_of(rec, huge)) {
    platform::fatal("sized delete with a size other than the one allocated", p);
  }
  if (huge && page->block_size > CheckedQuarantine::kMaxBytes) {
    // Larger than the quarantine's whole budget: freed at once. Made
    // inaccessible it would cost two mappings a slot (the slot starts stay
    // readable) and keep 1/128 of it resident: one free of a 16 GiB block
    // used up vm.max_map_count (adversarial review). relaxed: as the
    // exchange above; a racing free found `quarantined` and stopped.
    __atomic_store_n(page->canary_of(b), page->keys.canary_evicted(addr(b)), __ATOMIC_RELAXED);
    return free_block(this, p);
  }
  if (huge && domain->source.protect != nullptr) {
    for_each_readable_part(page, [&](uintptr_t from, uintptr_t to) {
      fill_pattern(from, to, page->keys.poison_word());
    });
    uintptr_t from, to;
    huge_pages(page, &from, &to);
    protect_but_slot_starts(domain, from, to);
  } else if (!huge) {
    // release fence: the swap above is visible before the poison, so that a
    // heap check of the block's owner that finds poison where it expected
    // the slack pattern finds the canary swapped on a second look
    // (check_live_canaries, freed_meanwhile).
    __atomic_thread_fence(__ATOMIC_RELEASE);
    fill_pattern(addr(b), data_end(page, b), page->keys.poison_word());
  }
  CheckedQuarantine& q = quarantine;
  if (q.count == CheckedQuarantine::kSlots) evict_oldest();
  q.slots[(q.first + q.count) % CheckedQuarantine::kSlots] = p;
  ++q.count;
  q.bytes += page->block_size;
  while (q.count > 1 && q.bytes > CheckedQuarantine::kMaxBytes) evict_oldest();
}

void Heap::evict_oldest() {
  CheckedQuarantine& q = quarantine;
  void* p = q.slots[q.first];
  q.first = (q.first + 1) % CheckedQuarantine::kSlots;
  --q.count;
  Segment* s = segment_of(p);
  Page* page = s->page_of(p);
  q.bytes -= page->block_size;
  // Huge blocks stay inaccessible until free_huge gives the whole span back
  // (release_huge_guards), but for the poisoned first page of each slot in
  // them; other blocks must still hold their poison.
  const Block* b = s->kind == SegmentKind::kHuge ? static_cast<const Block*>(p) : page->block_of(p);
  if (!still_poisoned(page, b)) {
    platform::fatal("heap corruption: a freed block was written to (use after free), block", p);
  }
  // relaxed RMW: as in disarm_canary. Any other free of the block since it
  // entered the quarantine found it quarantined and stopped as a double free;
  // the free below accepts evicted and only that.
  const uint64_t seen =
      __atomic_exchange_n(page->canary_of(b), page->keys.canary_evicted(addr(b)), __ATOMIC_RELAXED);
  if (seen != page->keys.canary_quarantined(addr(b))) {
    platform::fatal("heap corruption: a freed block was written to (use after free), block", p);
  }
  free_block(this, p);
}

void release_huge_guards(Segment* s) {
  const Domain* d = s->domain;
  if (d->source.protect == nullptr) return;
  d->source.protect(ptr(addr(s) + kOsPage), s->span_slots * kSegmentSize - kOsPage, true);
}

void Heap::flush_quarantine() {
  while (quarantine.count != 0) evict_oldest();
}

size_t Heap::check_quarantine() const {
  const CheckedQuarantine& q = quarantine;
  for (uint32_t i = 0; i < q.count; ++i) {
    void* p = q.slots[(q.first + i) % CheckedQuarantine::kSlots];
    Segment* s = segment_of(p);
    const Page* page = s->page_of(p);
    const Block* b =
        s->kind == SegmentKind::kHuge ? static_cast<const Block*>(p) : page->block_of(p);
    if (!still_poisoned(page, b)) {
      platform::fatal("heap check: a freed block was written to (use after free), block", p);
    }
  }
  return q.count;
}

}  // namespace shardalloc::core

#endif  // SHARDALLOC_CHECKED
