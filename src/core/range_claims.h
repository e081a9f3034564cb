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

  // A call's record, and the fork generation the call runs in: taken once,
  // so that the call's steps agree even if a fork (from a signal handler
  // that interrupted the call) lets it finish in a child.
  struct Claim {
    unsigned record;
    uint32_t fork_gen;
  };

  // Takes a record, writes [start, end) in it and publishes it. With all
  // kRecords taken (that many add_memory calls at once), it waits for one to
  // be given back.
  Claim publish(uintptr_t start, uintptr_t end) {
    const Claim mine = take_record();
    // Seqlock writer (generation odd while the range changes): a reader that
    // copies the range across these stores sees the generation move. (g | 1:
    // a fork child may inherit a record whose writer was cut at the odd store.)
    // relaxed + release fence: the range stores are not seen before the odd generation.
    const uint32_t odd = generation_[mine.record].load(std::memory_order_relaxed) | 1;
    generation_[mine.record].store(odd, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    // relaxed: ordered by the generation stores around them.
    start_[mine.record].store(start, std::memory_order_relaxed);
    end_[mine.record].store(end, std::memory_order_relaxed);
    // release: a reader that sees the even generation sees the range.
    generation_[mine.record].store(odd + 1, std::memory_order_release);
    // seq_cst: one total order with the other calls' publish, scan and give_back (protocol 11).
    set_bit(published_, mine, std::memory_order_seq_cst);
    return mine;
  }

  // Whether a range published by another call overlaps [start, end), mine's.
  bool overlaps_another(Claim mine, uintptr_t start, uintptr_t end) const {
    for (;;) {
      bool settled = true;
      // seq_cst: after our publish in the total order (protocol 11).
      const uint32_t others =
          bits_of(published_.load(std::memory_order_seq_cst), mine.fork_gen) & ~bit(mine.record);
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

  // Ends the call: after its arena (if any) is published, so that a call
  // that no longer sees the record sees the arena.
  void give_back(Claim mine) {
    // seq_cst (a release RMW): whoever reads published_ after this sees our arena.
    clear_bit(published_, mine, std::memory_order_seq_cst);
    // release: the next taker's range stores come after our reads of the record.
    clear_bit(busy_, mine, std::memory_order_release);
  }

 private:
  static constexpr uint32_t bit(unsigned i) { return uint32_t{1} << i; }
  // A busy or published word: the fork generation above, the bits below.
  static constexpr uint64_t word(uint32_t fork_gen, uint32_t bits) {
    return uint64_t{fork_gen} << 32 | bits;
  }
  static constexpr uint32_t gen_of(uint64_t w) { return uint32_t(w >> 32); }
  // The bits of a word in this fork generation (none of an earlier one).
  static constexpr uint32_t bits_of(uint64_t w, uint32_t fork_gen) {
    return gen_of(w) == fork_gen ? uint32_t(w) : 0;
  }
  // Generations only grow (modulo 2^32): a word of a later one than a
  // call's belongs to the calls of a fork child the call was carried into.
  static constexpr bool later(uint32_t a, uint32_t b) { return int32_t(a - b) > 0; }

  // A word of a later generation is the child's: a call carried over a fork
  // leaves it alone (the call's record then reads as free there: the known
  // limit of protocol 11).
  static void set_bit(std::atomic<uint64_t>& w, Claim mine, std::memory_order order) {
    // relaxed: the CAS decides (with `order`, an RMW like the fetch_or it stands for).
    uint64_t old = w.load(std::memory_order_relaxed);
    while (!later(gen_of(old), mine.fork_gen) &&
           !w.compare_exchange_weak(
               old, word(mine.fork_gen, bits_of(old, mine.fork_gen) | bit(mine.record)), order,
               std::memory_order_relaxed)) {
    }
  }
  static void clear_bit(std::atomic<uint64_t>& w, Claim mine, std::memory_order order) {
    uint64_t old = w.load(std::memory_order_relaxed);  // relaxed: the CAS decides
    while (gen_of(old) == mine.fork_gen &&
           !w.compare_exchange_weak(old, old & ~uint64_t{bit(mine.record)}, order,
                                    std::memory_order_relaxed)) {
    }
  }

  Claim take_record() {
    // relaxed: the CAS below decides.
    uint64_t taken = busy_.load(std::memory_order_relaxed);
    for (;;) {
      // Read each time: a fork may have happened while this call waited.
      const uint32_t fork_gen = platform::fork_generation();
      const uint32_t bits = bits_of(taken, fork_gen);
      const uint32_t free = ~bits & kAll;
      if (free == 0 || later(gen_of(taken), fork_gen)) {
        // All records taken (kRecords calls at once): wait for a call to end.
        // (A word of a later generation: this call's fork_gen is stale, the
        // next read of it catches up.) relaxed: the CAS decides.
        taken = busy_.load(std::memory_order_relaxed);
        continue;
      }
      const uint32_t b = free & (~free + 1);
      // acquire: the record's last user is done with it (its give_back's release).
      if (busy_.compare_exchange_weak(taken, word(fork_gen, bits | b), std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return Claim{unsigned(std::countr_zero(b)), fork_gen};
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
