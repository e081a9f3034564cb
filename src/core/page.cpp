#include "core/page.h"

#include "core/assert.h"
#include "core/config.h"
#include "core/hooks.h"

namespace shardalloc::core {

void Page::init(uint8_t* area_start, size_t area_bytes, size_t block_bytes, unsigned cls,
                uintptr_t key_seed) {
  free = nullptr;
  set_local_free(nullptr);
  // relaxed: the page is not yet reachable by other threads; publication of
  // the block pointers (a release on the heap's side) orders this store.
  thread_free.store(0, std::memory_order_relaxed);
  used = 0;
  set_capacity(0);
  reserved = uint32_t(area_bytes / block_bytes);
  SHARD_ASSERT(reserved >= 1 && (cls == 0 || block_bytes % kMinAlign == 0));  // cls 0: huge
  free_since = 0;
  size_class = uint8_t(cls);
  in_full = 0;
  sample_flags = 0;
  sampled_at[0] = kSampledIndexUnknown;
  has_interior.store(0, std::memory_order_relaxed);  // relaxed: see page.h
  in_use = 1;
  block_size = block_bytes;
  area = area_start;
  // Divisibility constants for is_block_start (meaningful below 4 GiB blocks).
  const uint32_t b32 = uint32_t(block_bytes);
  div_shift = uint8_t(b32 == 0 ? 0 : __builtin_ctz(b32));
  const uint32_t odd = b32 >> div_shift;
  uint32_t inv = odd;  // Newton's iteration doubles the correct low bits each step
  for (int i = 0; i < 5; ++i) inv *= 2 - odd * inv;
  div_inverse = inv;
  next = prev = nullptr;
  next_notified = nullptr;
  keys.reseed(key_seed);
  // Checked mode: the guard words before the first block of a page (fresh_page
  // leaves room for them); a free of that block checks them (underflow).
  if (kChecked && !is_huge()) {
    ptr<uint64_t>(addr(area) - 16)[0] = keys.slack_word();
    ptr<uint64_t>(addr(area) - 16)[1] = keys.slack_word();
  }
}

void Page::report_damaged_link(const Block* b) const {
  platform::fatal(
      "heap corruption: a free block was overwritten (use after free or overflow), its free-list "
      "link at",
      b);
}

uint32_t Page::collect() {
  uint32_t remote = 0;
  // relaxed pre-check: an empty stack needs no RMW; a stale non-empty read
  // only costs the CAS below. (A sealed word never reads as empty here.)
  uintptr_t raw = thread_free.load(std::memory_order_relaxed);
  if (ThreadFreeWord(raw).head() != nullptr) {
    if (SHARD_UNLIKELY(ThreadFreeWord(raw).state() == NotifyState::kSealed)) {
      remote = take_sealed_list();
    } else {
      // acquire: the freeing threads' writes (next pointers) happen-before our
      // reads of the list. The state bits are kept; only the list is taken.
      // (Only the owner seals a page: this word stays unsealed.)
      while (!thread_free.compare_exchange_weak(raw, ThreadFreeWord(raw).with_head(nullptr).raw(),
                                                std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
      }
      remote = splice(ThreadFreeWord(raw).head());
    }
  }
  if (local_free != nullptr) {
    if (free == nullptr) {
      free = local_free;
    } else {
      Block* last = local_free;
      for (Block* n = next_of(last); n != nullptr; n = next_of(last)) last = n;
      set_next(last, free);
      free = local_free;
    }
    set_local_free(nullptr);
  }
  // used = blocks handed out - blocks back on free/local_free (page.h).
  SHARD_ASSERT(used <= capacity && capacity <= reserved);
  return remote;
}

uint32_t Page::splice(Block* list) {
  if (list == nullptr) return 0;
  // Sampled blocks freed by other threads are reported here, by the owner.
  if (SHARD_UNLIKELY(in_full & kHoldsSampled)) sampled_blocks_freed(list);
  Block* last = list;
  uint32_t n = 1;
  for (Block* next = next_of(last); next != nullptr; next = next_of(last)) {
    last = next;
    ++n;
  }
  set_next(last, free);
  free = list;
  // Blocks on thread_free were still counted in used.
  SHARD_ASSERT(n <= used);
  used -= n;
  return n;
}

uint32_t Page::take_sealed_list() {
  // relaxed: the CAS below validates what we read.
  uintptr_t raw = thread_free.load(std::memory_order_relaxed);
  // acquire: as in collect. The state and a sealed page's remaining count are
  // kept; the word may have become kNotified meanwhile (its last block freed).
  while (!thread_free.compare_exchange_weak(raw, without_list(ThreadFreeWord(raw)).raw(),
                                            std::memory_order_acquire, std::memory_order_relaxed)) {
  }
  const uint32_t n = splice(ThreadFreeWord(raw).any_head(this));
  // A sealed page: used = remaining + the blocks on thread_free (page.h); the
  // push that completed the page (kNotified) had every live block on the list.
  SHARD_ASSERT(ThreadFreeWord(raw).state() != NotifyState::kSealed ||
               used == ThreadFreeWord(raw).remaining());
  SHARD_ASSERT(ThreadFreeWord(raw).state() != NotifyState::kNotified || used == 0);
  return n;
}

void Page::sampled_blocks_freed(Block* list) {
  for (Block* b = list; b != nullptr && (in_full & kHoldsSampled); b = next_of(b))
    sampled_block_freed(b);
}

void Page::sampled_block_added(const void* p) {
  const unsigned live = sampled_live();
  if (live != kSampledLiveMax) set_sampled_live(live + 1);
  if (live == 0) {
    sampled_at[0] = is_huge() ? kSampledIndexUnknown : uint16_t(exact_block_index(p));
  } else if (live < kSampledKnown && sampled_at[0] != kSampledIndexUnknown) {
    sampled_at[live] = uint16_t(exact_block_index(p));
  } else {
    sampled_at[0] = kSampledIndexUnknown;  // until the page holds none again
  }
}

void Page::sampled_block_freed(Block* b) {
  const unsigned live = sampled_live();
  unsigned known = 0;  // b's entry in sampled_at, when the entries are exact
  if (sampled_at[0] != kSampledIndexUnknown) {
    // Every live sample's index is known: b is none of them, no table look-up.
    const uint16_t index = uint16_t(exact_block_index(b));
    while (known < live && sampled_at[known] != index) ++known;
    if (known == live) return;
  }
  if (!platform::sampled_block_freed(b)) return;
  if (live == kSampledLiveMax) return;  // saturated: counts no more
  if (sampled_at[0] != kSampledIndexUnknown) sampled_at[known] = sampled_at[live - 1];
  set_sampled_live(live - 1);
  if (live == 1) in_full &= uint8_t(~kHoldsSampled);
}

void Page::extend() {
  SHARD_ASSERT(free == nullptr && capacity < reserved);  // the precondition (page.h)
  const size_t room = reserved - capacity;
  size_t count = kExtendBytes / block_size;
  if (count < kExtendMinBlocks) count = kExtendMinBlocks;
  if (count > room) count = room;
  uint8_t* first = area + size_t{capacity} * block_size;
  Block* head = nullptr;
  // Built back to front so the list runs in address order.
  for (size_t i = count; i-- > 0;) {
    Block* b = reinterpret_cast<Block*>(first + i * block_size);
    // Checked mode: blocks on free lists carry the freed canary, which malloc checks.
    if constexpr (kChecked) *canary_of(b) = keys.canary_freed(addr(b));
    set_next(b, head);
    head = b;
  }
  free = head;
  set_capacity(capacity + uint32_t(count));
}

}  // namespace shardalloc::core
