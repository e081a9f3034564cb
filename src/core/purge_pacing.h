// How long freed slots wait before they are purged: the configured delay,
// stretched while the program claims back, as fresh slots, what the purge
// ticks gave the OS.
//
// Such a purge was early: the memory comes back with a page fault per OS
// page, and peak RSS gains nothing, since the program reaches the same
// footprint again. A Java program that churns threads and direct buffers
// (docs/benchmarks.md) freed its buffers a gigabyte at a time at each GC,
// then claimed them back over the next half second: at the 100 ms default
// most were purged first, 3x glibc's page faults and 2x its time; at 200 ms
// and more, glibc's time. A program that frees and then needs less keeps
// the short delay, and its memory goes back soon.
//
// A review starts at the first tick that purges: it sums the slots the
// ticks purge and the fresh slots (never used, or purged) claimed in the
// next kReviewDelays configured delays. Once the claims reach half the
// purged slots the delay doubles (up to 2^kMaxShift times the configured
// one) and a new review starts; the first tick after those delays ends the
// review, and halves the delay if under a quarter came back. (Claims after
// them count for nothing: ticks stop while nothing is dirty, so a review
// may stay open long after; a review found a program that grew an hour
// later doubling the delay.)
//
// Every field is a relaxed atomic: the pacing decides only when memory is
// purged; the arena bitmaps (docs/protocols.md 4) make each purge safe.
// Claims and ticks racing over a review's reset may count into either
// review, or stretch twice: a bounded error, one step of the delay.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shardalloc::core {

struct PurgePacing {
  static constexpr unsigned kMaxShift = 2;      // 4x: 400 ms for the 100 ms default
  static constexpr unsigned kReviewDelays = 4;  // configured delays a review lasts at least

  std::atomic<uint8_t> shift{0};             // the delay is base << shift
  std::atomic<size_t> purged{0};             // slots purged in this review; 0: none open
  std::atomic<size_t> reclaimed{0};          // fresh slots claimed in this review
  std::atomic<uint64_t> review_start_ms{0};  // the tick that opened it

  // The delay now, for a configured `base` (saturating: a delay too large
  // for the clock means never, as the base itself does).
  uint64_t delay(uint64_t base) const {
    const unsigned s = shift.load(std::memory_order_relaxed);
    return base > (UINT64_MAX >> s) ? UINT64_MAX : base << s;
  }
  // Whether a claim of fresh slots could count: cheap, so that claims
  // count only when a review is open.
  bool reviewing() const { return purged.load(std::memory_order_relaxed) != 0; }
  // A claim took `fresh` slots that were never used or were purged, at `now`.
  void note_fresh_claim(size_t fresh, uint64_t now, uint64_t base);
  // A purge tick ran at `now` and purged `slots` slots (base: the configured delay).
  void after_tick(size_t slots, uint64_t now, uint64_t base);

 private:
  // The end of the review's window: kReviewDelays configured delays (saturating).
  uint64_t review_end(uint64_t base) const;
  void end_review();
  void step(int by);
};

}  // namespace shardalloc::core
