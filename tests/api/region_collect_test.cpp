// Memory that other threads freed into an idle owner's pages (a review's
// finding): thread A fills a region with small blocks and stays alive, B
// frees them all; used_bytes reads 0, yet C cannot get a block, because
// only A can take those frees back into its pages. C's failure asks every
// heap to give back at its next allocation slow path
// (Domain::collect_requests); shard_region_collect gives back at once.
// Before, C kept getting SHARD_NO_MEMORY until A had made some 100,000
// allocations.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr size_t kRegionBytes = 32 * MiB;
constexpr size_t kSmall = 64;
constexpr size_t kBig = 4 * MiB;

enum class Step { kFilling, kFilled, kAct, kActed, kDone };

// A thread that fills r with kSmall blocks, then waits; at kAct runs
// `act` on its own heap; ends at kDone.
template <class Act>
struct IdleOwner {
  shard_region* r;
  std::vector<void*> blocks;
  std::atomic<Step> step{Step::kFilling};
  std::thread thread;

  IdleOwner(shard_region* region, Act act) : r(region) {
    thread = std::thread([this, act] {
      void* p;
      while (shard_region_alloc(r, kSmall, 16, &p) == SHARD_OK) blocks.push_back(p);
      step = Step::kFilled;
      while (step != Step::kAct) std::this_thread::yield();
      act(r);
      step = Step::kActed;
      while (step != Step::kDone) std::this_thread::yield();
    });
    while (step != Step::kFilled) std::this_thread::yield();
  }
  void run_act() {
    step = Step::kAct;
    while (step != Step::kActed) std::this_thread::yield();
  }
  ~IdleOwner() {
    step = Step::kDone;
    thread.join();
  }
};

// On a thread of its own (a heap of its own, given up at exit).
shard_status big_alloc_elsewhere(shard_region* r) {
  shard_status status = SHARD_INVALID_PARAM;
  std::thread([&] {
    void* p = nullptr;
    status = shard_region_alloc(r, kBig, 16, &p);
    if (status == SHARD_OK) {
      EXPECT_EQ(shard_region_dealloc(r, p, kBig, 16), SHARD_OK);
    }
  }).join();
  return status;
}

template <class Act>
void run_case(Act act) {
  void* mem =
      mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, kRegionBytes), SHARD_OK);
  {
    IdleOwner<Act> owner(r, act);
    ASSERT_GT(owner.blocks.size(), 100000u);
    std::thread([&] {
      for (void* p : owner.blocks) ASSERT_EQ(shard_region_dealloc(r, p, kSmall, 16), SHARD_OK);
    }).join();
    EXPECT_EQ(shard_region_used_bytes(r), 0u);
    // The owner holds every page: the failure is the documented limit, and
    // it asks the owner to give them back.
    EXPECT_EQ(big_alloc_elsewhere(r), SHARD_NO_MEMORY);
    owner.run_act();
    EXPECT_EQ(big_alloc_elsewhere(r), SHARD_OK);
  }
  munmap(mem, kRegionBytes);
}

TEST(RegionCollect, AnIdleOwnerGivesBackWhatOthersFreedAtShardRegionCollect) {
  run_case([](shard_region* r) { EXPECT_EQ(shard_region_collect(r), SHARD_OK); });
}

TEST(RegionCollect, AFailedAllocationIsAnsweredAtTheOwnersNextSlowPath) {
  // The owner's pages of kSmall blocks are all full on its side: its next
  // one takes the slow path, which collects one page and, asked, all.
  run_case([](shard_region* r) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, kSmall, 16, &p), SHARD_OK);
    EXPECT_EQ(shard_region_dealloc(r, p, kSmall, 16), SHARD_OK);
  });
}

TEST(RegionCollect, ANullRegionIsAnInvalidParameter) {
  EXPECT_EQ(shard_region_collect(nullptr), SHARD_INVALID_PARAM);
}

}  // namespace
