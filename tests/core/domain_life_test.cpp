// The lifetime word of a first-class heap's domain (core/domain_life.h,
// protocol 7 of docs/protocols.md): claim, pins, destroy, generations.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/domain_life.h"

using namespace shardalloc::core;

TEST(DomainLife, StartsFreeAtGenerationZero) {
  DomainLife life;
  EXPECT_EQ(life.generation(), 0u);
  EXPECT_FALSE(life.is_live());
  EXPECT_FALSE(life.is_current(0));
  EXPECT_FALSE(life.pinned());
  EXPECT_FALSE(life.try_pin(0));
  EXPECT_FALSE(life.begin_destroy());
}

TEST(DomainLife, ClaimMakesTheNextGenerationLiveOnce) {
  DomainLife life;
  ASSERT_TRUE(life.try_claim());
  EXPECT_EQ(life.generation(), 1u);
  EXPECT_TRUE(life.is_live());
  EXPECT_TRUE(life.is_current(1));
  EXPECT_FALSE(life.is_current(0));
  EXPECT_FALSE(life.is_current(2));
  EXPECT_EQ(life.word.load(), (uint64_t{1} << 32) | DomainLife::kLive);
  EXPECT_FALSE(life.try_claim());  // live: not free
  EXPECT_EQ(life.generation(), 1u);
}

TEST(DomainLife, PinsCountAndCheckTheGeneration) {
  DomainLife life;
  ASSERT_TRUE(life.try_claim());
  EXPECT_FALSE(life.try_pin(0));
  EXPECT_FALSE(life.try_pin(2));
  EXPECT_TRUE(life.try_pin(1));
  EXPECT_TRUE(life.try_pin(1));
  EXPECT_TRUE(life.pinned());
  EXPECT_EQ(life.word.load() & DomainLife::kPins, 2u);
  EXPECT_TRUE(life.is_current(1));  // pins do not change the generation or liveness
  life.unpin();
  EXPECT_TRUE(life.pinned());
  life.unpin();
  EXPECT_FALSE(life.pinned());
  EXPECT_EQ(life.word.load(), (uint64_t{1} << 32) | DomainLife::kLive);
}

TEST(DomainLife, DestroyEndsTheGenerationAndPinsFailFromItsBeginning) {
  DomainLife life;
  ASSERT_TRUE(life.try_claim());
  ASSERT_TRUE(life.try_pin(1));
  ASSERT_TRUE(life.begin_destroy());
  EXPECT_FALSE(life.is_live());
  EXPECT_FALSE(life.is_current(1));
  EXPECT_EQ(life.generation(), 1u);
  EXPECT_NE(life.word.load() & DomainLife::kDying, 0u);
  EXPECT_FALSE(life.try_pin(1));       // no pin after begin_destroy
  EXPECT_FALSE(life.begin_destroy());  // once
  EXPECT_FALSE(life.try_claim());      // dying: not free
  EXPECT_TRUE(life.pinned());          // the pin taken before is waited for
  life.unpin();
  EXPECT_FALSE(life.pinned());
  life.end_destroy();
  EXPECT_EQ(life.word.load(), uint64_t{1} << 32);  // FREE(1)
  EXPECT_FALSE(life.is_live());
  EXPECT_FALSE(life.try_pin(1));
}

TEST(DomainLife, ReuseGetsTheNextGenerationAndStaleEntriesStayStale) {
  DomainLife life;
  for (uint32_t gen = 1; gen <= 5; ++gen) {
    ASSERT_TRUE(life.try_claim());
    EXPECT_EQ(life.generation(), gen);
    EXPECT_TRUE(life.is_current(gen));
    EXPECT_FALSE(life.is_current(gen - 1));
    EXPECT_FALSE(life.try_pin(gen - 1));  // a cache entry of the previous incarnation
    ASSERT_TRUE(life.try_pin(gen));
    life.unpin();
    ASSERT_TRUE(life.begin_destroy());
    EXPECT_FALSE(life.pinned());
    life.end_destroy();
    EXPECT_EQ(life.generation(), gen);
    EXPECT_FALSE(life.is_current(gen));
  }
}

// A record's generations never repeat: its last one retires it for good,
// since an entry kept with generation g from 2^32 incarnations earlier would
// pass for current if the 32-bit generation wrapped to g again.
TEST(DomainLife, TheLastGenerationRetiresTheRecord) {
  DomainLife life;
  life.word.store(uint64_t{DomainLife::kLastGeneration - 1} << 32);  // FREE(2^32 - 2)
  ASSERT_TRUE(life.try_claim());
  EXPECT_EQ(life.generation(), DomainLife::kLastGeneration);
  EXPECT_TRUE(life.is_current(DomainLife::kLastGeneration));
  ASSERT_TRUE(life.begin_destroy());
  life.end_destroy();
  EXPECT_EQ(life.word.load(), uint64_t{DomainLife::kLastGeneration} << 32);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(life.try_claim());  // final
  EXPECT_EQ(life.word.load(), uint64_t{DomainLife::kLastGeneration} << 32);
  for (uint32_t gen : {0u, 1u, DomainLife::kLastGeneration}) {
    EXPECT_FALSE(life.is_current(gen));
    EXPECT_FALSE(life.try_pin(gen));
  }
  EXPECT_FALSE(life.begin_destroy());
}

// Threads pin and unpin while the main thread begins the destroy: every pin
// that succeeded before is seen by pinned() until given back, and no pin
// succeeds once a thread has seen the destroy begin.
TEST(DomainLife, PinsRacingWithDestroy) {
  DomainLife life;
  ASSERT_TRUE(life.try_claim());
  const uint32_t gen = life.generation();
  std::atomic<bool> destroying{false};
  std::atomic<int> late_pins{0};
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      started.fetch_add(1);
      for (int i = 0; i < 20000; ++i) {
        const bool after = destroying.load(std::memory_order_acquire);
        if (life.try_pin(gen)) {
          if (after) late_pins.fetch_add(1);
          life.unpin();
        } else if (!after && !destroying.load(std::memory_order_acquire)) {
          // A failed pin is fine only once the destroy may have begun.
          if (life.is_live()) late_pins.fetch_add(1000);
        }
      }
    });
  }
  while (started.load() < 4) std::this_thread::yield();
  ASSERT_TRUE(life.begin_destroy());
  destroying.store(true, std::memory_order_release);
  while (life.pinned()) std::this_thread::yield();
  for (auto& th : threads) th.join();
  EXPECT_EQ(late_pins.load(), 0);
  EXPECT_FALSE(life.pinned());
  life.end_destroy();
  EXPECT_EQ(life.word.load(), uint64_t{gen} << 32);
}
