// The word behind Page::thread_free: a stack of blocks freed by other threads,
// with the page's notify state in the two low bits (blocks are 16-aligned).
// The protocol is written down in docs/protocols.md (1, 2 and 3).
//
// Two encodings, told apart by the state bits:
//   kNormal, kFull, kNotified:  head | state           (head: the top block, or null)
//   kSealed:  offset << 32 | remaining << 2 | 3        (a page of a heap nobody allocates from)
// A sealed page (protocol 3) counts its live blocks down: `remaining` is the
// number of blocks handed out that no thread has pushed yet, and the head is
// stored as its offset from the page's segment (0: empty; no block starts at
// offset 0, the segment header is there), which needs the page's address to
// decode. The push that would take `remaining` to 0 makes the page kNotified
// instead (see free_remote), so a sealed page always has remaining >= 1.
#pragma once
#include <cstdint>

#include "core/bits.h"
#include "core/block.h"
#include "core/config.h"

namespace shardalloc::core {

enum class NotifyState : uintptr_t {
  kNormal = 0,    // the owner sees the page in a class queue; remote frees just push
  kFull = 1,      // the page sits in the owner's full queue; the next remote free must notify
  kNotified = 2,  // a remote freer took the duty to notify; the page is (about to be) on the heap's
                  // notified stack
  kSealed =
      3,  // the heap is abandoned: remote frees count down; the last one notifies (protocol 3)
};

static_assert(sizeof(uintptr_t) == 8,
              "the sealed encoding packs a 32-bit offset and a count into one word");
static_assert(kSegmentSize <= (uint64_t{1} << 32),
              "a sealed page's head is a block's offset in its segment, in the word's top 32 bits");
static_assert(kSegmentSize / kMinAlign < (uint64_t{1} << 30),
              "a sealed page's live-block count (at most its blocks) fits the 30-bit field");

class ThreadFreeWord {
 public:
  static constexpr uintptr_t kStateMask = 3;
  // Bit 0 marks the states a remote free must not push into on its fast
  // path: kFull (it notifies) and kSealed (it counts).
  static constexpr uintptr_t kSlowBit = 1;
  constexpr ThreadFreeWord() = default;
  constexpr explicit ThreadFreeWord(uintptr_t raw) : raw_(raw) {}
  ThreadFreeWord(Block* head, NotifyState state)
      : raw_(reinterpret_cast<uintptr_t>(head) | static_cast<uintptr_t>(state)) {}

  // Not kSealed: the head pointer. (Owners of a heap that allocates from it
  // never see kSealed: see protocol 3.)
  Block* head() const { return reinterpret_cast<Block*>(raw_ & ~kStateMask); }
  NotifyState state() const { return static_cast<NotifyState>(raw_ & kStateMask); }
  uintptr_t raw() const { return raw_; }

  ThreadFreeWord with_head(Block* head) const { return ThreadFreeWord(head, state()); }
  ThreadFreeWord with_state(NotifyState state) const { return ThreadFreeWord(head(), state); }

  // kSealed only ------------------------------------------------------------
  static ThreadFreeWord sealed(uintptr_t head_offset, uint32_t remaining) {
    return ThreadFreeWord(head_offset << 32 | uintptr_t(remaining) << 2 |
                          uintptr_t(NotifyState::kSealed));
  }
  uint32_t remaining() const { return uint32_t(raw_ >> 2) & 0x3fffffff; }
  uintptr_t head_offset() const { return raw_ >> 32; }
  // The head of a sealed page's list; `page` is any address in its segment.
  Block* sealed_head(const void* page) const {
    return head_offset() == 0 ? nullptr
                              : ptr<Block>(align_down(addr(page), kSegmentSize) + head_offset());
  }
  // The head in either encoding.
  Block* any_head(const void* page) const {
    return state() == NotifyState::kSealed ? sealed_head(page) : head();
  }

 private:
  uintptr_t raw_ = 0;
};

}  // namespace shardalloc::core
