// Domain statistics over a region: live blocks per class follow allocations.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "core/domain.h"
#include "core/stats.h"
#include "shardalloc/region.h"

using namespace shardalloc::core;

TEST(Stats, CountsLiveBlocksPerClass) {
  const size_t size = 8 << 20;
  void* mem = std::aligned_alloc(4096, size);
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, size), SHARD_OK);
  const Domain& d = *reinterpret_cast<const Domain*>(r);  // shard_region holds its domain first
  std::vector<void*> ps;
  for (int i = 0; i < 100; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, 100, 8, &p), SHARD_OK);
    ps.push_back(p);
  }
  DomainStats s;
  collect_stats(d, &s);
  // Checked builds: 100 bytes and the 16-byte trailer.
  const unsigned cls = size_class_of(checked_block_bytes(100));
  EXPECT_EQ(s.classes[cls].live_blocks, 100u);
  EXPECT_GE(s.classes[cls].pages, 1u);
  EXPECT_EQ(s.live_bytes, 100u * class_block_size(cls));
  EXPECT_GE(s.heaps, 1u);
  EXPECT_GE(s.segments_claimed, 1u);
  EXPECT_EQ(s.total_bytes, size);
  for (void* p : ps) ASSERT_EQ(shard_region_dealloc(r, p, 100, 8), SHARD_OK);
  collect_stats(d, &s);
  EXPECT_EQ(s.classes[cls].live_blocks, 0u);
  std::free(mem);
}
