// The purge delay follows the program's reuse (core/purge_pacing.h): once
// half of what the ticks purged comes back as fresh claims within the
// review's kReviewDelays delays, the delay doubles, up to its cap; a review
// in which under a quarter came back halves it back; claims after the
// window count for nothing; ticks that purge nothing open no review.
#include "core/purge_pacing.h"

#include <gtest/gtest.h>

#include <cstdint>

using shardalloc::core::PurgePacing;

namespace {

constexpr uint64_t kBase = 100;
constexpr uint64_t kReview = kBase * PurgePacing::kReviewDelays;
constexpr uint64_t kCap = kBase << PurgePacing::kMaxShift;

TEST(PurgePacing, StartsAtTheConfiguredDelayWithNoReviewOpen) {
  PurgePacing p;
  EXPECT_EQ(p.delay(kBase), kBase);
  EXPECT_FALSE(p.reviewing());
  p.after_tick(0, 1000, kBase);
  EXPECT_FALSE(p.reviewing());
  p.note_fresh_claim(100, 1010, kBase);  // no purge to blame
  EXPECT_EQ(p.delay(kBase), kBase);
}

TEST(PurgePacing, HalfOfThePurgedSlotsClaimedBackStretchTheDelayUpToItsCap) {
  PurgePacing p;
  uint64_t now = 1000;
  uint64_t expected = kBase;
  for (unsigned i = 0; i < PurgePacing::kMaxShift + 2; ++i) {
    p.after_tick(10, now += 50, kBase);
    p.after_tick(10, now += 50, kBase);  // the review sums both ticks: 20
    p.note_fresh_claim(9, now + 10, kBase);
    EXPECT_EQ(p.delay(kBase), expected) << i;
    p.note_fresh_claim(1, now + 20, kBase);  // 10 of 20: stretched, and a new review starts
    expected = expected < kCap ? expected * 2 : kCap;
    EXPECT_EQ(p.delay(kBase), expected) << i;
    EXPECT_FALSE(p.reviewing());
  }
  EXPECT_EQ(p.delay(kBase), kCap);
}

TEST(PurgePacing, AReviewWithUnderAQuarterBackByItsEndShrinksItBack) {
  PurgePacing p;
  uint64_t now = 1000;
  for (unsigned i = 0; i < PurgePacing::kMaxShift; ++i) {
    p.after_tick(10, now += 50, kBase);
    p.note_fresh_claim(5, now + 1, kBase);
  }
  ASSERT_EQ(p.delay(kBase), kCap);
  const uint64_t start = now += 50;
  p.after_tick(40, start, kBase);
  p.note_fresh_claim(9, start + 1, kBase);      // under a quarter of 40
  p.after_tick(0, start + kReview - 1, kBase);  // not over yet
  EXPECT_TRUE(p.reviewing());
  EXPECT_EQ(p.delay(kBase), kCap);
  p.after_tick(0, start + kReview, kBase);
  EXPECT_FALSE(p.reviewing());
  EXPECT_EQ(p.delay(kBase), kCap / 2);
}

TEST(PurgePacing, AReviewBetweenAQuarterAndAHalfEndsWithoutAChange) {
  PurgePacing p;
  p.after_tick(40, 1000, kBase);
  p.note_fresh_claim(10, 1001, kBase);     // a quarter exactly
  p.after_tick(7, 1000 + kReview, kBase);  // ends the review, opens the next with 7
  EXPECT_EQ(p.delay(kBase), kBase);
  EXPECT_TRUE(p.reviewing());
  p.note_fresh_claim(3, 1000 + kReview + 1, kBase);
  EXPECT_EQ(p.delay(kBase), kBase);
  p.note_fresh_claim(1, 1000 + kReview + 2, kBase);  // 4 of 7
  EXPECT_EQ(p.delay(kBase), 2 * kBase);
}

// A review's window is its kReviewDelays delays, however long it stays
// open (ticks stop while nothing is dirty): a review found a program that
// grew an hour after a purge doubling the delay.
TEST(PurgePacing, ClaimsAfterTheReviewWindowCountForNothing) {
  PurgePacing p;
  p.after_tick(100, 1000, kBase);
  p.note_fresh_claim(50, 1000 + kReview, kBase);
  p.note_fresh_claim(100, 1000 + 3600 * 1000, kBase);
  EXPECT_EQ(p.delay(kBase), kBase);
  EXPECT_TRUE(p.reviewing());  // until the next tick ends it
  p.after_tick(0, 1000 + 3600 * 1000 + 1, kBase);
  EXPECT_FALSE(p.reviewing());
  EXPECT_EQ(p.delay(kBase), kBase);
}

TEST(PurgePacing, NeverBelowTheConfiguredDelay) {
  PurgePacing p;
  p.after_tick(40, 1000, kBase);
  p.after_tick(0, 1000 + kReview, kBase);
  EXPECT_EQ(p.delay(kBase), kBase);
}

TEST(PurgePacing, AStretchedDelaySaturatesInsteadOfWrapping) {
  PurgePacing p;
  p.after_tick(2, 1000, kBase);
  p.note_fresh_claim(1, 1001, kBase);
  EXPECT_EQ(p.delay(UINT64_MAX / 2 + 1), UINT64_MAX);
  EXPECT_EQ(p.delay(0), 0u);          // purge at release stays so
  p.after_tick(2, 2000, UINT64_MAX);  // a review window too large for the clock
  p.after_tick(0, UINT64_MAX - 1, UINT64_MAX);
  EXPECT_TRUE(p.reviewing());
  p.note_fresh_claim(1, UINT64_MAX - 1, UINT64_MAX);  // within it: 1 of 2 back
  EXPECT_EQ(p.delay(kBase), 4 * kBase);
}

}  // namespace
