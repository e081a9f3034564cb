// What the test kernel's parts share: console lines, the clock, a PRNG,
// content patterns, a barrier, and the allocator with kernel-style growth.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "shardalloc/region.h"
#include "support/rng.h"

namespace ktest {

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;
constexpr unsigned kMaxCpus = 8;  // kernel.ld reserves this many stacks

// ---- console: one line at a time, never interleaved between harts ---------

class Line {
 public:
  Line& s(const char* text);
  Line& u(uint64_t v);
  Line& x(uint64_t v);  // 0x...
  void end();           // prints the line and a newline under the console lock

 private:
  char buf_[240];
  size_t n_ = 0;
  void put(char c) {
    if (n_ < sizeof buf_) buf_[n_++] = c;
  }
};

// ---- clock: the `time` CSR, 10 MHz on QEMU virt ---------------------------

inline uint64_t now_ticks() {
  uint64_t t;
  asm volatile("rdtime %0" : "=r"(t));
  return t;
}
constexpr uint64_t kTicksPerMs = 10'000;

inline unsigned current_cpu() {
  unsigned long id;
  asm volatile("mv %0, tp" : "=r"(id));
  return unsigned(id);
}

// ---- PRNG and content patterns ----------------------------------------------

using shardtest::mix64;
using shardtest::Rng;

// Bytes derived from the block's address, size and a seed: a block handed out
// twice, overlapping another, or written by the allocator fails its check.
// Blocks above kDenseLimit get one word per 4 KiB plus their last word.
constexpr size_t kDenseLimit = 64 * KiB;
void fill(void* p, size_t n, uint64_t seed);
bool check(const void* p, size_t n, uint64_t seed);

inline bool aligned(const void* p, size_t align) { return (uintptr_t(p) & (align - 1)) == 0; }

// ---- barrier for the CPUs taking part ---------------------------------------

class Barrier {
 public:
  void set_count(unsigned n) { n_ = n; }
  void wait() {
    // acquire/release: everything a CPU did before wait() is visible to all after it.
    const unsigned gen = gen_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    } else {
      while (gen_.load(std::memory_order_acquire) == gen) asm volatile("nop");
    }
  }

 private:
  std::atomic<unsigned> arrived_{0};
  std::atomic<unsigned> gen_{0};
  unsigned n_ = 1;
};

// ---- the allocator under test ---------------------------------------------

extern shard_region* g_region;
extern unsigned g_cpus;
extern std::atomic<unsigned> g_grows;  // add_memory calls made so far

// shard_region_alloc, and on SHARD_NO_MEMORY hand the region another piece of
// RAM and retry (what ArceOS's global allocator does). Null when RAM is out.
void* alloc(size_t size, size_t align);
bool dealloc(void* p, size_t size, size_t align);  // false unless SHARD_OK

// ---- tests -------------------------------------------------------------------

struct Result {
  bool ok = true;
  uint64_t count = 0;  // operations done, for the report
  const char* why = nullptr;
  uint64_t where = 0;
  void fail(const char* reason, uint64_t at) {
    if (ok) {
      ok = false;
      why = reason;
      where = at;
    }
  }
};

struct Test {
  const char* name;
  void (*run)(unsigned cpu, Result& r);
};

extern const Test kTests[];
extern const unsigned kTestCount;
extern Barrier g_test_barrier;  // the tests' own barrier (all CPUs)

}  // namespace ktest
