// Claims on address ranges being added to a region (shard_region_add_memory),
// so that two calls handed overlapping ranges at the same time never both
// build an arena there. A call publishes its range in a record before it
// writes a byte of it, then looks for another published range that overlaps
// its own (RangeClaims::overlaps_another), and only then for an arena that
// does (Domain::overlaps). Of two overlapping calls at least one sees the
// other and refuses (both may: both were handed memory that overlaps). Protocol
// 11 of docs/protocols.md. Freestanding.
//
// The busy and published words carry the fork generation their bits belong
// to (platform::fork_generation): in a fork child the bits of calls the
// parent's threads were making read as clear, since no thread of the child
// will ever give those records back.
#pragma once
#include <atomic>
#include <bit>
#include <cstdint>

#include "core/hooks.h"

namespace shardalloc::core {

class RangeClaims {
 public:
  static constexpr unsigned kRecords = 16;

  // Takes a record, writes [start, end) in it and publishes it; returns the
  // record. With all kRecords taken (that many add_memory calls at once), it
  // waits for one to be given back.
  unsigned publish(uintptr_t start, uintptr_t end) {
    const uint32_t fork_gen = platform::fork_generation();
    const unsigned mine = take_record(fork_gen);
    // Seqlock writer (generation odd while the range changes): a reader that
    // copies the range across these stores sees the generation move.
    // relaxed + release fence: the range stores are not seen before the odd generation.
    const uint32_t g = generation_[mine].load(std::memory_order_relaxed);
    generation_[mine].store(g + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    start_[mine].store(start, std::memory_order_relaxed);  // relaxed: ordered by the stores around
    end_[mine].store(end, std::memory_order_relaxed);
    // release: a reader that sees the even generation sees the range.
    generation_[mine].store(g + 2, std::memory_order_release);
    // seq_cst: one total order with the other calls' publish, scan and give_back (protocol 11).
    set_bit(published_, fork_gen, mine, std::memory_order_seq_cst);
    return mine;
  }

  // Whether a range published by another call overlaps [start, end), the
  // range of record mine.
  bool overlaps_another(unsigned mine, uintptr_t start, uintptr_t end) const {
    const uint32_t fork_gen = platform::fork_generation();
    for (;;) {
      bool settled = true;
      // seq_cst: after our publish in the total order (protocol 11).
      const uint32_t others =
          bits_of(published_.load(std::memory_order_seq_cst), fork_gen) & ~bit(mine);
      for (uint32_t m = others; m != 0; m &= m - 1) {
        const unsigned j = unsigned(std::countr_zero(m));
        uintptr_t s = 0, e = 0;
        if (!copy_range(j, &s, &e)) {
          settled = false;  // record j is being rewritten: its call ended, another began
          break;
        }
        if (s < end && start < e) return true;
      }
      if (settled) return false;
    }
  }

  // Ends the call that published record mine: after its arena (if any) is
  // published, so that a call that no longer sees the record sees the arena.
  void give_back(unsigned mine) {
    const uint32_t fork_gen = platform::fork_generation();
    // seq_cst (a release RMW): whoever reads published_ after this sees our arena.
    clear_bit(published_, fork_gen, mine, std::memory_order_seq_cst);
    // release: the next taker's range stores come after our reads of the record.
    clear_bit(busy_, fork_gen, mine, std::memory_order_release);
  }

 private:
  static constexpr uint32_t bit(unsigned i) { return uint32_t{1} << i; }
  // A busy or published word: the fork generation above, the bits below.
  static constexpr uint64_t word(uint32_t fork_gen, uint32_t bits) {
    return uint64_t{fork_gen} << 32 | bits;
  }
  // The bits of a word in this fork generation (none of an earlier one).
  static constexpr uint32_t bits_of(uint64_t w, uint32_t fork_gen) {
    return uint32_t(w >> 32) == fork_gen ? uint32_t(w) : 0;
  }

  static void set_bit(std::atomic<uint64_t>& w, uint32_t fork_gen, unsigned i,
                      std::memory_order order) {
    // relaxed: the CAS decides (with `order`, an RMW like the fetch_or it stands for).
    uint64_t old = w.load(std::memory_order_relaxed);
    while (!w.compare_exchange_weak(old, word(fork_gen, bits_of(old, fork_gen) | bit(i)), order,
                                    std::memory_order_relaxed)) {
    }
  }
  // A word of an earlier fork generation has no bit of ours: left as it is.
  static void clear_bit(std::atomic<uint64_t>& w, uint32_t fork_gen, unsigned i,
                        std::memory_order order) {
    uint64_t old = w.load(std::memory_order_relaxed);  // relaxed: the CAS decides
    while (
        uint32_t(old >> 32) == fork_gen &&
        !w.compare_exchange_weak(old, old & ~uint64_t{bit(i)}, order, std::memory_order_relaxed)) {
    }
  }

  unsigned take_record(uint32_t fork_gen) {
    // relaxed: the CAS below decides.
    uint64_t taken = busy_.load(std::memory_order_relaxed);
    for (;;) {
      const uint32_t bits = bits_of(taken, fork_gen);
      const uint32_t free = ~bits & kAll;
      if (free == 0) {
        // All records taken (kRecords calls at once): wait for a call to end.
        // relaxed: the CAS decides.
        taken = busy_.load(std::memory_order_relaxed);
        continue;
      }
      const uint32_t b = free & (~free + 1);
      // acquire: the record's last user is done with it (its give_back's release).
      if (busy_.compare_exchange_weak(taken, word(fork_gen, bits | b), std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return unsigned(std::countr_zero(b));
      }
    }
  }

  // Copies record j's range; false when the record changed meanwhile.
  bool copy_range(unsigned j, uintptr_t* s, uintptr_t* e) const {
    // acquire: pairs with publish's release store of the even generation.
    const uint32_t g = generation_[j].load(std::memory_order_acquire);
    if (g & 1) return false;
    *s = start_[j].load(std::memory_order_relaxed);  // relaxed: validated by the generation
    *e = end_[j].load(std::memory_order_relaxed);
    // acquire fence: the range loads are not reordered after the second generation load.
    std::atomic_thread_fence(std::memory_order_acquire);
    return generation_[j].load(std::memory_order_relaxed) == g;
  }

  static constexpr uint32_t kAll = kRecords == 32 ? ~uint32_t{0} : (uint32_t{1} << kRecords) - 1;
  static_assert(kRecords <= 32, "one bit a record in a 32-bit word");

  std::atomic<uint64_t> busy_{0};       // bit i: record i belongs to a call
  std::atomic<uint64_t> published_{0};  // bit i: record i's range is published
  std::atomic<uint32_t> generation_[kRecords] = {};
  std::atomic<uintptr_t> start_[kRecords] = {};
  std::atomic<uintptr_t> end_[kRecords] = {};
};

}  // namespace shardalloc::core
