// Review of the remote-free batches (protocol 10): what a chain holds back
// beyond its own blocks. A chain that held a block of a sealed page (a page
// of an exited thread's heap) kept that page from completing (protocol 3:
// `remaining` never reached 0), so every block pushed into the page before,
// every other page of its segment and the segment stayed, for as long as the
// freeing thread did not free into another page of that class, exit or read
// its own statistics. Now a free into a sealed page is never chained.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"

namespace {

constexpr size_t kSizes[] = {16,  32,  48,  64,  80,  96,  112, 128,  160,  192,  224,  256,
                             320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048};
constexpr int kPerClass = 2000;

shard_stats stats() {
  shard_stats s;
  shard_stats_get(&s);
  return s;
}

}  // namespace

// Protocol 3: "memory freed into an abandoned heap comes back without
// waiting for a new thread or a sweep". A pool thread frees everything an
// exited thread allocated, then waits for work; the process (here: the main
// thread's statistics) should see the exited heap's pages and segments
// back, exactly as before the allocation. (The first version of the batches
// kept a page, and its segment, per size class, with every block freed into it.)
TEST(RemoteBatchReview, AbandonedPagesComeBackWhileTheFreeingThreadWaits) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds keep recent frees in a quarantine";
  const shard_stats before = stats();
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < kPerClass; ++i)
      for (size_t size : kSizes) blocks.push_back(shard_malloc(size));
  }).join();
  std::mutex m;
  std::condition_variable cv;
  bool freed = false, quit = false;
  std::thread pool([&] {
    for (void* p : blocks) shard_free(p);
    std::unique_lock<std::mutex> lock(m);
    freed = true;
    cv.notify_all();
    cv.wait(lock, [&] { return quit; });
  });
  shard_stats during;
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return freed; });
    during = stats();
    quit = true;
    cv.notify_all();
  }
  pool.join();
  const shard_stats after = stats();
  EXPECT_EQ(after.live_blocks, before.live_blocks);  // the pool's exit pushed its chains
  EXPECT_EQ(during.live_blocks, before.live_blocks) << "blocks freed but still counted live";
  EXPECT_EQ(during.pages, before.pages) << "pages of the exited heap kept";
  // (A heap record's metadata segment stays: compare with after the pool's exit.)
  EXPECT_EQ(during.segments, after.segments) << "segments of the exited heap kept";
}
