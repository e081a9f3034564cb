// Memory goes back to the OS: after a peak, freed segments are purged once
// they have stayed free for the purge delay, and the RSS falls.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

namespace {

size_t rss_bytes() { return shardtest::proc_memory().rss; }

}  // namespace

TEST(Purge, RssFallsAfterAPeak) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "RSS includes the sanitizer's shadow memory, which is not given back";
#endif
  constexpr size_t kMiB = size_t{1} << 20;
  const size_t before = rss_bytes();
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {  // 64 huge blocks of 3 MiB, and many small ones
    void* p = shard_malloc(3 * kMiB);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, 3 * kMiB);
    blocks.push_back(p);
  }
  for (int i = 0; i < 200000; ++i) {
    void* p = shard_malloc(200);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 200);
    blocks.push_back(p);
  }
  const size_t peak = rss_bytes();
  ASSERT_GT(peak, before + 200 * kMiB);
  for (void* p : blocks) shard_free(p);
  // The default delay is 100 ms: a slot is purged at the second tick after
  // it was freed. Keep the allocator busy (ticks run on its slow paths).
  size_t now = peak;
  for (int round = 0; round < 40 && now > before + 64 * kMiB; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < 200; ++i)
      shard_free(shard_malloc(1 * kMiB));  // huge: releases a segment each time
    now = rss_bytes();
  }
  std::printf("[ Purge ] RSS before %zu MiB, peak %zu MiB, after %zu MiB\n", before / kMiB,
              peak / kMiB, now / kMiB);
  EXPECT_LT(now, before + 64 * kMiB) << "peak " << peak / kMiB << " MiB";
}
