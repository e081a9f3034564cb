// Claims on address ranges being added to a region (shard_region_add_memory),
// so that two calls handed overlapping ranges at the same time never both
// build an arena there. A call publishes its range in a record before it
// writes a byte of it, then looks for another published range that overlaps
// its own (RangeClaims::overlaps_another), and only then for an arena that
// does (Domain::overlaps). Of two overlapping calls at least one sees the
// other and refuses (both may: both were handed memory that overlaps). Protocol
// 11 of docs/protocols.md. Freestanding.
#pragma once
#include <atomic>
#include <bit>
#include <cstdint>

namespace shardalloc::core {

class RangeClaims {
 public:
  static constexpr unsigned kRecords = 16;

  // Takes a record, writes [start, end) in it and publishes it; returns the
  // record. With all kRecords taken (that many add_memory calls at once), it
  // waits for one to be given back.
  unsigned publish(uintptr_t start, uintptr_t end) {
    const unsigned mine = take_record();
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
    published_.fetch_or(bit(mine), std::memory_order_seq_cst);
    return mine;
  }

  // Whether a range published by another call overlaps record mine's.
  bool overlaps_another(unsigned mine) const {
    const uintptr_t start = start_[mine].load(std::memory_order_relaxed);  // ours: written by us
    const uintptr_t end = end_[mine].load(std::memory_order_relaxed);
    for (;;) {
      bool settled = true;
      // seq_cst: after our publish in the total order (protocol 11).
      const uint32_t others = published_.load(std::memory_order_seq_cst) & ~bit(mine);
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
    // seq_cst (a release RMW): whoever reads published_ after this sees our arena.
    published_.fetch_and(~bit(mine), std::memory_order_seq_cst);
    // release: the next taker's range stores come after our reads of the record.
    busy_.fetch_and(~bit(mine), std::memory_order_release);
  }

 private:
  static constexpr uint32_t bit(unsigned i) { return uint32_t{1} << i; }

  unsigned take_record() {
    // relaxed: the CAS below decides.
    uint32_t taken = busy_.load(std::memory_order_relaxed);
    for (;;) {
      const uint32_t free = ~taken & kAll;
      if (free == 0) {
        // All records taken (kRecords calls at once): wait for a call to end.
        // relaxed: the CAS decides.
        taken = busy_.load(std::memory_order_relaxed);
        continue;
      }
      const uint32_t b = free & (~free + 1);
      // acquire: the record's last user is done with it (its give_back's release).
      if (busy_.compare_exchange_weak(taken, taken | b, std::memory_order_acquire,
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

  std::atomic<uint32_t> busy_{0};       // bit i: record i belongs to a call
  std::atomic<uint32_t> published_{0};  // bit i: record i's range is published
  std::atomic<uint32_t> generation_[kRecords] = {};
  std::atomic<uintptr_t> start_[kRecords] = {};
  std::atomic<uintptr_t> end_[kRecords] = {};
};

}  // namespace shardalloc::core
