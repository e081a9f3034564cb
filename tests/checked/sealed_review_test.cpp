// Review of sealed pages (protocol 3) in checked mode: a thread that frees
// every block it allocated and exits leaves no live block and no segment
// behind. Its frees went through the quarantine; the abandon must flush the
// quarantine (as collect_all did) before it seals the pages, or the pages
// count the quarantined blocks as live forever: nobody will free them again,
// so the sealed count never reaches 0 and the memory never comes back
// (not even by a sweep, which does not flush an abandoned heap's quarantine).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"

namespace {

TEST(SealedPagesChecked, AThreadThatFreedEverythingLeavesNoLiveBlockBehind) {
  ASSERT_EQ(shard_is_checked(), 1);
  shard_free(shard_malloc(64));  // this thread has a heap of its own
  shard_stats before;
  shard_stats_get(&before);
  std::thread([] {
    std::vector<void*> all;
    for (int i = 0; i < 4000; ++i) {
      void* p = shard_malloc(200);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x5a, 200);
      all.push_back(p);
    }
    for (void* p : all) shard_free(p);
  }).join();  // its heap is abandoned now
  shard_stats after;
  shard_stats_get(&after);
  EXPECT_EQ(after.live_blocks, before.live_blocks)
      << "blocks the exited thread freed (its quarantine) stay live in sealed pages";
  EXPECT_LE(after.segments, before.segments + 1);
  // Sweeps (every 200 ms, on slow paths) do not bring them back either.
  // (From a thread of its own: the huge blocks wait in its quarantine until it exits.)
  std::thread([] {
    for (int round = 0; round < 6; ++round) {
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
      shard_free(shard_malloc(2u << 20));
    }
  }).join();
  shard_stats later;
  shard_stats_get(&later);
  EXPECT_EQ(later.live_blocks, before.live_blocks) << "after sweeps";
}

}  // namespace
