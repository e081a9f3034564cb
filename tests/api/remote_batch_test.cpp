// Remote-free batches (protocol 10 of docs/protocols.md, core/remote_batch.h):
// a thread's frees into another heap's page wait in a chain of the thread's
// own and are pushed with one CAS. These tests check when a chain must have
// been pushed (the thread's exit, its own statistics call), that a page in
// the full queue or of an exited thread's heap still learns of every block,
// and that a block freed twice on top of a chain stops the program.
#include <gtest/gtest.h>

#include <atomic>
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

std::vector<void*> allocate_in_exited_thread() {
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < kBlocks; ++i) {
      void* p = shard_malloc(kSize);
      ASSERT_NE(p, nullptr);
      blocks.push_back(p);
    }
  }).join();
  return blocks;
}

bool checked_build() { return shard_is_checked() != 0; }

}  // namespace

// The exited thread's pages are sealed (protocol 3): the free of a page's
// last block gives the page back. Its last frees wait in this thread's chain
// until shard_stats_get pushes it.
TEST(RemoteBatch, AThreadsOwnStatisticsCountTheFreesOfItsChain) {
  if (checked_build()) GTEST_SKIP() << "checked builds keep recent frees in a quarantine";
  const shard_class_stats before = class_stats();
  std::vector<void*> blocks = allocate_in_exited_thread();
  ASSERT_GT(class_stats().pages, before.pages);
  for (void* p : blocks) shard_free(p);
  const shard_class_stats after = class_stats();
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.pages, before.pages);
}

// A thread that never allocated frees everything and exits: its exit pushes
// its chain (it registers for its exit at its first remote free).
TEST(RemoteBatch, AChainIsPushedWhenItsThreadExits) {
  if (checked_build()) GTEST_SKIP() << "checked builds keep recent frees in a quarantine";
  const shard_class_stats before = class_stats();
  std::vector<void*> blocks = allocate_in_exited_thread();
  std::thread([&] {
    for (void* p : blocks) shard_free(p);
  }).join();
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
        void* p = nullptr;
        void* q = nullptr;
        std::thread([&] {
          p = shard_malloc(kSize);
          q = shard_malloc(kSize);
        }).join();
        shard_free(q);
        shard_free(p);
        shard_free(p);
      },
      "double free detected");
}
