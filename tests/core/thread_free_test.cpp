// The thread-free word (core/thread_free.h): a block pointer and the page's
// notify state packed into one word (docs/protocols.md).
#include <gtest/gtest.h>

#include <cstdint>

#include "core/thread_free.h"

using namespace shardalloc::core;

namespace {

constexpr NotifyState kStates[] = {NotifyState::kNormal, NotifyState::kFull,
                                   NotifyState::kNotified};

// Blocks are 8-aligned (at least): the two state bits are free in every block address.
static_assert(alignof(Block) >= ThreadFreeWord::kStateMask + 1);
static_assert(static_cast<uintptr_t>(NotifyState::kNotified) <= ThreadFreeWord::kStateMask);

}  // namespace

TEST(ThreadFreeWord, DefaultIsAnEmptyListInTheNormalState) {
  constexpr ThreadFreeWord w;
  EXPECT_EQ(w.raw(), 0u);
  EXPECT_EQ(w.head(), nullptr);
  EXPECT_EQ(w.state(), NotifyState::kNormal);
}

TEST(ThreadFreeWord, PacksEveryStateWithAHeadAndWithoutOne) {
  alignas(16) Block blocks[2]{};
  for (Block* head : {static_cast<Block*>(nullptr), &blocks[0], &blocks[1]}) {
    for (NotifyState s : kStates) {
      const ThreadFreeWord w(head, s);
      EXPECT_EQ(w.head(), head);
      EXPECT_EQ(w.state(), s);
      EXPECT_EQ(w.raw(), reinterpret_cast<uintptr_t>(head) | static_cast<uintptr_t>(s));
      // The raw word (what Page::thread_free stores) round-trips.
      const ThreadFreeWord back(w.raw());
      EXPECT_EQ(back.head(), head);
      EXPECT_EQ(back.state(), s);
    }
  }
}

TEST(ThreadFreeWord, WithStateKeepsTheHeadAndWithHeadKeepsTheState) {
  alignas(16) Block a{}, b{};
  for (NotifyState from : kStates) {
    const ThreadFreeWord w(&a, from);
    for (NotifyState to : kStates) {
      const ThreadFreeWord changed = w.with_state(to);
      EXPECT_EQ(changed.head(), &a);
      EXPECT_EQ(changed.state(), to);
    }
    const ThreadFreeWord moved = w.with_head(&b);
    EXPECT_EQ(moved.head(), &b);
    EXPECT_EQ(moved.state(), from);
    const ThreadFreeWord emptied = w.with_head(nullptr);
    EXPECT_EQ(emptied.head(), nullptr);
    EXPECT_EQ(emptied.state(), from);
    EXPECT_EQ(emptied.raw(), static_cast<uintptr_t>(from));
  }
}

TEST(ThreadFreeWord, StateBitsNeverLeakIntoTheHead) {
  alignas(8) Block b{};
  // A raw word with both low bits set: the head is still the aligned block.
  const ThreadFreeWord w(reinterpret_cast<uintptr_t>(&b) | ThreadFreeWord::kStateMask);
  EXPECT_EQ(w.head(), &b);
  EXPECT_EQ(static_cast<uintptr_t>(w.state()), ThreadFreeWord::kStateMask);
}
