// shard_region_add_memory from several threads at once (protocol 11 of
// docs/protocols.md): two calls handed overlapping ranges never both take
// them (before the fix both could: the same range twice made the arena list
// a loop, and the next alloc spun for ever; an overlap crashed it), and calls
// with disjoint ranges all succeed.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <atomic>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr size_t kInit = 4 * MiB;
constexpr size_t kAdded = 8 * MiB;

// Runs add(i) on n threads released together; returns their statuses.
template <class Add>
std::vector<shard_status> add_at_once(unsigned n, Add add) {
  std::vector<shard_status> status(n, SHARD_INVALID_PARAM);
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < n) {
      }
      status[i] = add(i);
    });
  }
  for (auto& t : threads) t.join();
  return status;
}

// Allocates the whole region in 64 KiB blocks, stamps each at both ends with
// its index, checks the stamps and frees them all: the region's arenas are
// sound (a looped arena list hangs here, overlapping arenas hand out a block
// twice and a stamp shows it). On a thread of its own, which gives its heap
// up when it exits: nothing refers to the region after, and the test can
// unmap its memory (a region's memory must stay mapped while any thread holds
// a heap in it: docs/kernel.md).
void use_everything(shard_region* r) {
  std::thread([r] {
    std::vector<void*> blocks;
    void* p = nullptr;
    while (shard_region_alloc(r, 64 * KiB, 8, &p) == SHARD_OK) {
      const uint32_t stamp = uint32_t(blocks.size());
      std::memcpy(p, &stamp, sizeof stamp);
      std::memcpy(static_cast<char*>(p) + 64 * KiB - sizeof stamp, &stamp, sizeof stamp);
      blocks.push_back(p);
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
      uint32_t front = 0, back = 0;
      std::memcpy(&front, blocks[i], sizeof front);
      std::memcpy(&back, static_cast<char*>(blocks[i]) + 64 * KiB - sizeof back, sizeof back);
      ASSERT_EQ(front, i);
      ASSERT_EQ(back, i);
    }
    for (void* b : blocks) ASSERT_EQ(shard_region_dealloc(r, b, 64 * KiB, 8), SHARD_OK);
    EXPECT_EQ(shard_region_used_bytes(r), 0u);
  }).join();
}

}  // namespace

TEST(RegionAddMemory, OverlappingRangesAddedAtOnceAreTakenOnce) {
  for (int round = 0; round < 200; ++round) {
    shard_region* r = nullptr;
    void* init = map_memory(kInit);
    ASSERT_EQ(shard_region_init(&r, init, kInit), SHARD_OK);
    auto* mem = static_cast<char*>(map_memory(kAdded + kAdded / 2));
    // Even rounds: the same range twice. Odd rounds: two ranges that share
    // half of their bytes.
    const bool same = round % 2 == 0;
    const std::vector<shard_status> status = add_at_once(2, [&](unsigned i) {
      char* start = same || i == 0 ? mem : mem + kAdded / 2;
      return shard_region_add_memory(r, start, kAdded);
    });
    unsigned ok = 0;
    for (shard_status s : status) {
      EXPECT_TRUE(s == SHARD_OK || s == SHARD_MEMORY_OVERLAP) << s;
      ok += s == SHARD_OK;
    }
    ASSERT_LE(ok, 1u) << "round " << round << ": both calls took the memory";
    ASSERT_EQ(shard_region_total_bytes(r), kInit + ok * kAdded);
    // Sequentially, the same ranges are refused now when one was taken.
    if (ok == 1) {
      EXPECT_EQ(shard_region_add_memory(r, mem, kAdded), SHARD_MEMORY_OVERLAP);
    }
    use_everything(r);
    munmap(mem, kAdded + kAdded / 2);
    munmap(init, kInit);
  }
}

TEST(RegionAddMemory, DisjointRangesAddedAtOnceAreAllTaken) {
  constexpr unsigned kThreads = 6;
  for (int round = 0; round < 50; ++round) {
    shard_region* r = nullptr;
    void* init = map_memory(kInit);
    ASSERT_EQ(shard_region_init(&r, init, kInit), SHARD_OK);
    // Adjacent ranges: no gap between them, no byte shared.
    auto* mem = static_cast<char*>(map_memory(kThreads * kAdded));
    const std::vector<shard_status> status = add_at_once(
        kThreads, [&](unsigned i) { return shard_region_add_memory(r, mem + i * kAdded, kAdded); });
    for (shard_status s : status) EXPECT_EQ(s, SHARD_OK);
    EXPECT_EQ(shard_region_total_bytes(r), kInit + kThreads * kAdded);
    use_everything(r);
    munmap(mem, kThreads * kAdded);
    munmap(init, kInit);
  }
}

// More calls at once than RangeClaims has records (16): the others wait
// for one, and each range is taken once.
TEST(RegionAddMemory, MoreCallsAtOnceThanRecords) {
  constexpr unsigned kThreads = 24;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(kInit), kInit), SHARD_OK);
  auto* mem = static_cast<char*>(map_memory(kThreads / 2 * 2 * MiB));
  // Threads 2k and 2k+1 add the same 2 MiB range.
  const std::vector<shard_status> status = add_at_once(kThreads, [&](unsigned i) {
    return shard_region_add_memory(r, mem + (i / 2) * 2 * MiB, 2 * MiB);
  });
  unsigned ok = 0;
  for (unsigned k = 0; k < kThreads / 2; ++k) {
    const unsigned pair = (status[2 * k] == SHARD_OK) + (status[2 * k + 1] == SHARD_OK);
    EXPECT_LE(pair, 1u) << "range " << k;
    ok += pair;
  }
  EXPECT_EQ(shard_region_total_bytes(r), kInit + ok * 2 * MiB);
  use_everything(r);
}
