// The lifetime of a domain that can be destroyed: a first-class heap
// (core/first_class.h). The process domain and regions live for ever and have
// no lifetime record (Domain::life is null).
//
// A record is never freed: destroy gives the domain's memory back and marks
// the record free, and a later heap reuses it under the next generation. So
// whoever kept (domain, generation) from an earlier use (a thread's heap
// cache) can tell, by reading this word, that the heap it cached went with
// the memory, and must neither use nor give back that heap.
//
// One 64-bit word (protocol 7 of docs/protocols.md):
//   bits 63..32  generation: +1 each time the record is claimed for a new heap
//   bit  31      live: the heap may be used
//   bit  30      dying: destroy has begun; the memory is about to go
//   bits 29..0   pins: threads giving back one of the domain's thread heaps
//                right now (Linux: thread exit, heap cache eviction)
//
//   FREE(g)     --claim (heap_new)--------> LIVE(g+1, 0)
//   LIVE(g, n)  --pin / unpin-------------> LIVE(g, n+1) / LIVE(g, n-1)
//   LIVE(g, n)  --destroy begins----------> DYING(g, n)    pins fail from here on
//   DYING(g, n) --unpin-------------------> DYING(g, n-1)
//   DYING(g, 0) --memory given back-------> FREE(g)
//   FREE(kLastGeneration) is final: the record is never claimed again.
//
// Generations never repeat for a record. A thread or CPU may keep an entry
// (record, g) for ever without looking at it again (a CPU slot in bare, a
// thread's cache); if the 32-bit generation wrapped, the 2^32-th
// incarnation after g would carry g again and that entry would pass for
// current, with a heap in memory the record's earlier incarnations gave back
// (a review: a heap_new/destroy loop on other CPUs gets there in hours).
// So the last generation retires the record, and a later heap takes another
// record: one record's metadata per 2^32 incarnations.
#pragma once
#include <atomic>
#include <cstdint>

namespace shardalloc::core {

struct Domain;

struct DomainLife {
  static constexpr uint64_t kLive = uint64_t{1} << 31;
  static constexpr uint64_t kDying = uint64_t{1} << 30;
  static constexpr uint64_t kPins = kDying - 1;
  static constexpr uint32_t kLastGeneration = UINT32_MAX;

  std::atomic<uint64_t> word{0};  // FREE(0) until first claimed
  Domain* host = nullptr;         // immutable: the permanent domain whose metadata holds the record

  static uint32_t generation_of(uint64_t w) { return uint32_t(w >> 32); }

  uint32_t generation() const {
    // relaxed: a caller holding the heap got its pointer through some
    // synchronization after the claim, so it reads at least that generation;
    // a caller with a stale entry only compares.
    return generation_of(word.load(std::memory_order_relaxed));
  }
  bool is_live() const {
    // relaxed: as in generation().
    return (word.load(std::memory_order_relaxed) & kLive) != 0;
  }
  // True while the incarnation `gen` is live (neither destroyed nor reused).
  bool is_current(uint32_t gen) const {
    // relaxed: as in generation().
    const uint64_t w = word.load(std::memory_order_relaxed);
    return (w & kLive) != 0 && generation_of(w) == gen;
  }

  // FREE(g) -> LIVE(g+1, 0). False when the record is not free, or retired
  // (its generations are spent: see the top of this file).
  bool try_claim() {
    // relaxed: only a candidate; the CAS decides.
    uint64_t w = word.load(std::memory_order_relaxed);
    if ((w & (kLive | kDying | kPins)) != 0) return false;
    if (generation_of(w) == kLastGeneration) return false;
    const uint64_t next = (uint64_t(generation_of(w) + 1) << 32) | kLive;
    // acquire: we see every write of the previous incarnation's teardown
    // (pairs with the release store in end_destroy) before we rebuild it.
    return word.compare_exchange_strong(w, next, std::memory_order_acquire,
                                        std::memory_order_relaxed);
  }

  // LIVE(gen, n) -> LIVE(gen, n+1). False when incarnation `gen` is over (or ending).
  bool try_pin(uint32_t gen) {
    // relaxed: the CAS below re-checks.
    uint64_t w = word.load(std::memory_order_relaxed);
    do {
      if ((w & kLive) == 0 || generation_of(w) != gen) return false;
      // relaxed: exclusion comes from the word's modification order alone: a
      // pin ordered before the destroyer's LIVE -> DYING CAS is seen by it
      // (it then waits for the unpin), one ordered after it fails here.
    } while (!word.compare_exchange_weak(w, w + 1, std::memory_order_relaxed,
                                         std::memory_order_relaxed));
    return true;
  }
  void unpin() {
    // release: our writes to the domain's memory (giving a heap back) happen-
    // before the destroyer's acquire load that sees the pin gone, so before
    // the memory is unmapped or reused.
    word.fetch_sub(1, std::memory_order_release);
  }

  // (g, n) -> (g, 0), live and dying kept: in a forked child, whose only
  // thread holds no pin. relaxed: single-threaded there.
  void drop_pins() {
    word.store(word.load(std::memory_order_relaxed) & ~kPins, std::memory_order_relaxed);
  }

  // LIVE(g, n) -> DYING(g, n). False when the record is not live.
  bool begin_destroy() {
    // relaxed: the CAS below re-checks.
    uint64_t w = word.load(std::memory_order_relaxed);
    do {
      if ((w & kLive) == 0) return false;
      // acquire: a pin already given back (its release unpin is earlier in
      // the word's modification order) happens-before our teardown; pins
      // still held are waited for by pinned(). After this CAS no pin succeeds.
    } while (!word.compare_exchange_weak(w, (w & ~kLive) | kDying, std::memory_order_acquire,
                                         std::memory_order_relaxed));
    return true;
  }
  // True while a pin taken before begin_destroy is still held.
  bool pinned() const {
    // acquire: pairs with unpin's release (see there).
    return (word.load(std::memory_order_acquire) & kPins) != 0;
  }
  // DYING(g, 0) -> FREE(g). Only the destroyer writes the word in DYING(g, 0).
  void end_destroy() {
    // relaxed load: nobody else changes the word now.
    const uint64_t w = word.load(std::memory_order_relaxed);
    // release: the teardown happens-before the next claimer's acquire CAS.
    word.store(uint64_t(generation_of(w)) << 32, std::memory_order_release);
  }
};

}  // namespace shardalloc::core
