// A page: blocks of one size class, with three free lists.
//
// Who writes what:
//   owner (the thread that owns the page's heap): free, local_free, used,
//     capacity, queue links, flags.
//   any thread: thread_free (CAS push only; see thread_free.h).
//   the one remote thread that moves thread_free from kFull or kSealed to
//     kNotified: next_notified, once, before it publishes the page.
// Invariants (owner's view, no call in flight):
//   used = blocks handed out - blocks back on free/local_free;
//   blocks on thread_free are still counted in used until collected;
//   a sealed page (its heap abandoned, protocol 3): used = remaining + the
//     blocks on thread_free;
//   capacity <= reserved; blocks [capacity, reserved) were never handed out.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/block.h"
#include "core/checked.h"
#include "core/config.h"
#include "core/size_class.h"
#include "core/thread_free.h"

namespace shardalloc::core {

// Two cache lines, ordered by who writes them (kPageLine): the first is the
// allocating owner's (written by every allocation), the second what every
// free reads (block geometry) and writes (the free lists). A thread freeing
// into a page its owner allocates from (a producer/consumer pair) then shares
// only the second line, which the owner reads only to collect: with one line,
// every allocation and every remote free moved the same line between the two
// cores (docs/benchmarks.md, "Page headers on two lines").
inline constexpr size_t kPageLine = 64;

struct alignas(kPageLine) Page {
  // ---- The allocating owner's line -----------------------------------------
  Block* free = nullptr;  // allocation pops here
  uint32_t used = 0;
  // Owner: a free page (not in use) of a segment the heap keeps, whose memory
  // is still resident: kFreeUnstamped, or the time (ms) a sweep first found
  // it free (Heap::purge_free_pages). 0: in use, purged, or nothing to purge
  // (no purge in the page source).
  uint32_t free_since = 0;
  static constexpr uint32_t kFreeUnstamped = 1;
  // kInFullQueue: in the heap's full queue. kHoldsSampled: holds live blocks
  // of the heap profiler's samples (docs/profiling.md), so that the local free
  // fast path, which sends any page with a nonzero in_full to its slow path
  // after the push, reports their frees at no cost of its own.
  uint8_t in_full = 0;
  // Allocation sampling (owner; docs/profiling.md): bit 0 (kListCharged) is
  // set when the bytes of the blocks on `free` are charged to the heap's
  // sample budget; the bits above count the live sampled blocks (saturating
  // at kSampledLiveMax). sampled_at: with up to kSampledKnown live samples,
  // their block indices (sampled_at[0] == kSampledIndexUnknown when they are
  // not all known), so that the page's other frees skip the table.
  uint8_t sample_flags = 0;
  static constexpr unsigned kSampledKnown = 3;  // entries of sampled_at
  uint16_t sampled_at[kSampledKnown] = {};
  // Owner: Heap::claim_clock when this page, empty and its class's only
  // page, began to retire (Heap::retire_page).
  uint32_t retired_at = 0;
  Page* next = nullptr;  // heap queue links
  Page* prev = nullptr;

  // ---- What every free reads and writes ------------------------------------
  alignas(kPageLine) std::atomic<uintptr_t> thread_free{0};  // ThreadFreeWord: other threads' frees
  // The owner's frees. The owner writes it with relaxed atomic stores (plain
  // moves) so that a remote freer may read its head to catch a double free.
  Block* local_free = nullptr;
  uint8_t* area = nullptr;  // first block
  size_t block_size = 0;
  uint32_t div_inverse = 0;  // inverse of the odd part mod 2^32
  uint32_t reserved = 0;
  uint8_t size_class = 0;  // 0 for huge blocks
  uint8_t in_use = 0;      // the page holds blocks (as opposed to free in its segment)
  uint8_t div_shift = 0;   // block_size = odd << div_shift
  // Aligned allocations handed out interior pointers. Goes 0 -> 1 while the
  // page lives; read by any thread freeing into the page. Relaxed suffices: a
  // thread holding an interior pointer received it after the flag was set.
  std::atomic<uint8_t> has_interior{0};
  // Blocks extend has built, handed out or on a free list: [area, area +
  // capacity blocks); no slot past them was ever handed out. Owner writes it
  // (relaxed atomic stores: plain moves); any freer reads it
  // (is_handed_block), so it lives on this line, not the allocating owner's.
  // It only grows while the page is in use (extend; init, of a page not in
  // use, resets it).
  uint32_t capacity = 0;
  Page* next_notified = nullptr;  // link in the heap's notified stack
  // Checked mode: the secrets of this page's links and canaries. Set by the
  // owner in init, before any block of the page is handed out; read by any
  // thread freeing a block of it (which received the block after that).
  [[no_unique_address]] PageKeys keys;

  static constexpr uint8_t kInFullQueue = 1;
  static constexpr uint8_t kHoldsSampled = 2;
  static constexpr uint8_t kListCharged = 1;
  static constexpr unsigned kSampledLiveMax = 127;
  static constexpr unsigned kSampledLiveShift = 1;
  static constexpr uint16_t kSampledIndexUnknown = 0xffff;
  unsigned sampled_live() const { return sample_flags >> kSampledLiveShift; }
  void set_sampled_live(unsigned n) {
    sample_flags = uint8_t((sample_flags & kListCharged) | (n << kSampledLiveShift));
  }

  bool in_full_queue() const { return (in_full & kInFullQueue) != 0; }
  // Owner (or the one thread freeing a huge block): b, a block of this page,
  // was freed; when it was a tracked sample, drops it from the profile.
  void sampled_block_freed(Block* b);
  // Owner: p, a block of this page, is a tracked sample now.
  void sampled_block_added(const void* p);
  SHARD_NOINLINE void sampled_blocks_freed(Block* list);  // each block of the list

  ThreadFreeWord load_thread_free(std::memory_order order) const {
    return ThreadFreeWord(thread_free.load(order));
  }
  // The top block of thread_free in either encoding (a sealed page's too):
  // for comparisons and observers.
  Block* remote_head(std::memory_order order) const {
    return load_thread_free(order).any_head(this);
  }
  uint8_t* area_end() const { return area + size_t{reserved} * block_size; }
  bool contains(const void* p) const { return addr(p) >= addr(area) && addr(p) < addr(area_end()); }

  void set_local_free(Block* b) { __atomic_store_n(&local_free, b, __ATOMIC_RELAXED); }
  Block* peek_local_free() const { return __atomic_load_n(&local_free, __ATOMIC_RELAXED); }

  SHARD_INLINE Block* pop_free() {
    Block* b = free;
    if (SHARD_LIKELY(b != nullptr)) {
      free = next_of(b);
      ++used;
    }
    return b;
  }

  // Free-list links. Checked builds store them encoded and validate every
  // link they follow: it must be null or a block start of this page.
  SHARD_INLINE Block* next_of(const Block* b) const {
    if constexpr (!kChecked) {
      return b->next;
    } else {
      Block* next = ptr<Block>(keys.decode(addr(b->next)));
      if (SHARD_UNLIKELY(next != nullptr && !is_handed_block(next))) report_damaged_link(b);
      return next;
    }
  }
  SHARD_INLINE void set_next(Block* b, Block* next) const {
    if constexpr (!kChecked) {
      b->next = next;
    } else {
      b->next = ptr<Block>(keys.encode(addr(next)));
    }
  }
  // The link as decoded, not validated: for observers of other threads' lists.
  const Block* peek_next(const Block* b) const {
    if constexpr (!kChecked)
      return b->next;
    else
      return ptr<const Block>(keys.decode(addr(b->next)));
  }
  // A block start below capacity (past it, no slot was ever handed out); one
  // compare, as is_block_start. relaxed: a thread that received
  // block b from the owner received it after the extend that counted it, and
  // capacity only grows while the page is in use, so it reads that value or
  // a larger one; a pointer to a slot never handed out fails with any value read.
  SHARD_INLINE bool is_handed_block(const void* b) const {
    return exact_block_index(b) < __atomic_load_n(&capacity, __ATOMIC_RELAXED);
  }
  // Owner: sets capacity (a relaxed store: freers read it, is_handed_block).
  void set_capacity(uint32_t n) { __atomic_store_n(&capacity, n, __ATOMIC_RELAXED); }
  [[noreturn]] void report_damaged_link(const Block* b) const;

  // Checked mode: the trailer of block b, its size record then its canary
  // (the canary is accessed with __atomic builtins: a racing double free must
  // see one winner). A block of a page ends in it; a huge block (the only
  // blocks above kLargeBlockMax) has its own past its segment's header.
  bool is_huge() const { return block_size > kLargeBlockMax; }
  uint64_t* record_of(const Block* b) const {
    if (is_huge()) return ptr<uint64_t>(align_down(addr(this), kSegmentSize) + kHugeTrailerOffset);
    return ptr<uint64_t>(addr(b) + block_size - kCanaryBytes);
  }
  uint64_t* canary_of(const Block* b) const { return record_of(b) + 1; }
  static constexpr size_t kHugeTrailerOffset = 2048;  // kSegmentHeaderSize (segment.h)

  // True when b (an address in this page's segment) is the start of one of
  // the page's blocks in [area, area_end) (small and medium pages), by an
  // exact division by multiply and rotate: when block_size divides the 32-bit
  // offset, the rotated product is the block index, otherwise it exceeds
  // (2^32 - 1) / block_size; an address below area wraps to an offset above
  // 2^32 - kSegmentSize, whose index is far beyond reserved. One compare
  // covers divisibility, below area and past area_end.
  SHARD_INLINE bool is_block_start(const void* b) const { return exact_block_index(b) < reserved; }
  // The index of block b when b is a block start at or above area; otherwise a
  // value beyond every page's block count.
  SHARD_INLINE uint32_t exact_block_index(const void* b) const {
    const uint32_t offset = uint32_t(addr(b) - addr(area));
    const uint32_t q = offset * div_inverse;
    return div_shift == 0 ? q : (q >> div_shift) | (q << (32 - div_shift));
  }

  // "Is b a live block start": the checks a free makes without a division. A
  // failed check is a pointer we never handed out, or a double free caught
  // with the freed block on top of a free list.
  //
  // The owner's fast view (the local free paths): b is a block start below
  // capacity (a slot past it was never handed out), on top of neither
  // thread_free nor local_free (the last blocks freed), and the page holds
  // live blocks. (The relaxed load comes first so that
  // local_free, compared after it, need not be loaded again by a push. An
  // owner that allocates never has a sealed page: the plain head is the head.)
  SHARD_INLINE bool owner_may_free(const Block* b) const {
    // relaxed: only compared; a racing free of the same block is the caller's bug.
    // (capacity read plainly: the owner is its only writer.)
    return exact_block_index(b) < capacity &&
           b != load_thread_free(std::memory_order_relaxed).head() && b != local_free && used != 0;
  }
  // Any thread's view: the page is in use and b is one of its block starts
  // below capacity, not on top of thread_free (in either encoding) nor of local_free (which
  // the owner stores with relaxed atomics for this read: a free by another
  // thread right after the owner's own free of b is told apart too);
  // `owner` adds the owner's free list (the region API reports every double
  // free it can see) and that the page holds live blocks.
  bool may_free(const Block* b, bool owner) const {
    // relaxed: only compared; a racing free of the same block is the caller's bug.
    if (!in_use || !is_handed_block(b) || b == remote_head(std::memory_order_relaxed)) return false;
    if (b == peek_local_free()) return false;
    return !owner || (b != free && used != 0);
  }

  // Bytes from p (inside one of this page's blocks) to the end of its block,
  // the canary excluded. A block start, which is what malloc hands out
  // (aligned allocations aside), needs no division: is_block_start on a page
  // of a size class, the area itself on a huge block's page (is_block_start
  // is exact only below 4 GiB blocks). (malloc_usable_size and realloc ask
  // on every call; a 64-bit division is tens of cycles.)
  size_t usable_from(const void* p) const {
    if (size_class != 0 ? is_block_start(p) : p == area) return block_size - kCanaryBytes;
    const size_t index = (addr(p) - addr(area)) / block_size;
    return addr(area) + (index + 1) * block_size - addr(p) - kCanaryBytes;
  }

  // Start of the block that holds p (p may be interior after an aligned allocation).
  Block* block_of(void* p) const {
    if (SHARD_LIKELY(!has_interior.load(std::memory_order_relaxed))) return static_cast<Block*>(p);
    const size_t index = (addr(p) - addr(area)) / block_size;
    return ptr<Block>(addr(area) + index * block_size);
  }

  // Owner: sets the page up for blocks of block_size in [area, area_end).
  // key_seed: fresh secrets for checked mode's links and canaries.
  void init(uint8_t* area_start, size_t area_bytes, size_t block_bytes, unsigned cls,
            uintptr_t key_seed);
  // Owner: moves thread_free and local_free into free. Returns the number of
  // blocks taken from thread_free. The state bits are kept (a sealed page
  // stays sealed, its remaining count unchanged).
  uint32_t collect();
  // Owner: puts the list of blocks `list` in front of free; returns their number.
  uint32_t splice(Block* list);
  // Owner: collect's taking of a sealed page's list (kept out of its common path).
  SHARD_NOINLINE uint32_t take_sealed_list();
  // w with an empty list, state (and a sealed page's count) kept.
  static ThreadFreeWord without_list(ThreadFreeWord w) {
    return w.state() == NotifyState::kSealed ? ThreadFreeWord::sealed(0, w.remaining())
                                             : w.with_head(nullptr);
  }
  // Owner: builds free blocks from the never-used tail. Precondition: free is empty.
  void extend();
};

static_assert(sizeof(Page) == 2 * kPageLine + (kChecked ? kPageLine : 0),
              "page headers live in the segment header: two lines (three with checked keys)");
static_assert(alignof(Page) == kPageLine);
static_assert(offsetof(Page, prev) + sizeof(Page::prev) <= kPageLine,
              "the allocating owner's fields fit the first line");
static_assert(offsetof(Page, next_notified) + sizeof(Page::next_notified) <= 2 * kPageLine,
              "what every free reads fits the second line");
static_assert(kMinAlign > ThreadFreeWord::kStateMask,
              "thread_free keeps its state in a block address's low bits");
static_assert(kClassCount <= 255, "Page::size_class is one byte");
static_assert(kSegmentSize <= (uint64_t{1} << 32),
              "exact_block_index computes block offsets in 32 bits");

}  // namespace shardalloc::core
