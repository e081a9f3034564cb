// Remote-free batches (protocol 10 of docs/protocols.md, core/remote_batch.h):
// a thread's frees into another heap's page wait in a chain of the thread's
// own and are pushed with one CAS. These tests check when a chain must have
// been pushed (the thread's exit, its own statistics call), that a page in
// the full queue or of an exited thread's heap still learns of every block,
// and that a block freed twice on top of a chain stops the program.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"

namespace {

constexpr size_t kSize = 48;
constexpr int kBlocks = 3000;  // a few pages of the 48-byte class, more than a chain holds

shard_class_stats class_stats() {
  shard_stats s;
  shard_stats_get(&s);
  return s.classes[shard_size_class(kSize)];
}

bool checked_build() { return shard_is_checked() != 0; }

}  // namespace

// An owner that stays until the frees are done, then exits: the frees went
// into its pages while they were plain (so into chains); its exit seals them
// (protocol 3), and a sealed page comes back at its last free, which waits in
// the freeing thread's chain. `free_all` frees every block, then the owner
// exits, then `after` runs (in the freeing thread, before it exits).
template <class FreeAll>
void free_while_owner_lives(FreeAll free_all) {
  std::vector<void*> blocks(kBlocks);
  std::atomic<int> stage{0};
  std::thread owner([&] {
    for (auto& p : blocks) p = shard_malloc(kSize);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();
  free_all(blocks, [&] {
    stage.store(2);
    owner.join();
  });
}

// The owner's pages come back when this thread reads its own statistics
// (which push its chains), not later.
TEST(RemoteBatch, AThreadsOwnStatisticsPushItsChains) {
  if (checked_build()) GTEST_SKIP() << "checked builds keep recent frees in a quarantine";
  const shard_class_stats before = class_stats();
  free_while_owner_lives([](std::vector<void*>& blocks, auto owner_exits) {
    for (void* p : blocks) shard_free(p);
    owner_exits();
  });
  const shard_class_stats after = class_stats();
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.pages, before.pages);
}

// A thread that never allocated frees everything and exits after the owner:
// its exit pushes its chains (it registers for its exit at its first remote
// free), and the owner's sealed pages come back.
TEST(RemoteBatch, AChainIsPushedWhenItsThreadExits) {
  if (checked_build()) GTEST_SKIP() << "checked builds keep recent frees in a quarantine";
  const shard_class_stats before = class_stats();
  free_while_owner_lives([](std::vector<void*>& blocks, auto owner_exits) {
    std::thread([&] {
      for (void* p : blocks) shard_free(p);
      owner_exits();
    }).join();
  });
  const shard_class_stats after = class_stats();
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.pages, before.pages);
}

// The owner lives and its pages are full (in its full queue): a chain pushed
// into such a page takes the notify path block by block (protocol 2). The
// owner then allocates as much again from the notified pages: no new page.
TEST(RemoteBatch, FullPagesOfALiveOwnerLearnOfEveryBlockOfAChain) {
  std::vector<void*> blocks(kBlocks);
  std::atomic<int> stage{0};
  uint64_t pages_after_first = 0, pages_after_second = 0;
  std::thread owner([&] {
    for (auto& p : blocks) p = shard_malloc(kSize);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    pages_after_first = class_stats().pages;
    for (auto& p : blocks) p = shard_malloc(kSize);
    pages_after_second = class_stats().pages;
    for (void* p : blocks) shard_free(p);
  });
  while (stage.load() != 1) std::this_thread::yield();
  for (void* p : blocks) {
    ASSERT_NE(p, nullptr);
    shard_free(p);
  }
  shard_stats s;
  shard_stats_get(&s);  // pushes this thread's last chain
  stage.store(2);
  owner.join();
  if (checked_build()) return;  // the quarantine holds some of the frees back
  EXPECT_EQ(pages_after_second, pages_after_first);
}

TEST(RemoteBatchDeathTest, ABlockFreedTwiceOnTopOfAChainStopsTheProgram) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        // The owner stays (its pages plain, not sealed: frees into them are chained).
        void* p = nullptr;
        void* q = nullptr;
        std::atomic<bool> ready{false};
        std::thread([&] {
          p = shard_malloc(kSize);
          q = shard_malloc(kSize);
          ready.store(true);
          for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
        }).detach();
        while (!ready.load()) std::this_thread::yield();
        shard_free(q);
        shard_free(p);
        shard_free(p);
      },
      "double free detected");
}
