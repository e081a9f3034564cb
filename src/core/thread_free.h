// The word behind Page::thread_free: a stack of blocks freed by other threads,
// with the page's notify state in the two low bits (blocks are 8-aligned).
// The protocol is written down in docs/protocols.md.
#pragma once
#include <cstdint>

#include "core/block.h"

namespace shardalloc::core {

enum class NotifyState : uintptr_t {
  kNormal = 0,    // the owner sees the page in a class queue; remote frees just push
  kFull = 1,      // the page sits in the owner's full queue; the next remote free must notify
  kNotified = 2,  // a remote freer took the duty to notify; the page is (about to be) on the heap's
                  // notified stack
};

class ThreadFreeWord {
 public:
  static constexpr uintptr_t kStateMask = 3;
  constexpr ThreadFreeWord() = default;
  constexpr explicit ThreadFreeWord(uintptr_t raw) : raw_(raw) {}
  ThreadFreeWord(Block* head, NotifyState state)
      : raw_(reinterpret_cast<uintptr_t>(head) | static_cast<uintptr_t>(state)) {}

  Block* head() const { return reinterpret_cast<Block*>(raw_ & ~kStateMask); }
  NotifyState state() const { return static_cast<NotifyState>(raw_ & kStateMask); }
  uintptr_t raw() const { return raw_; }

  ThreadFreeWord with_head(Block* head) const { return ThreadFreeWord(head, state()); }
  ThreadFreeWord with_state(NotifyState state) const { return ThreadFreeWord(head(), state); }

 private:
  uintptr_t raw_ = 0;
};

}  // namespace shardalloc::core
