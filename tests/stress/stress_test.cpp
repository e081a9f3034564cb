// mimalloc-style stress: many threads allocate, free and swap objects
// through a shared transfer array (atomic exchange), threads are re-created
// every round (so their heaps are abandoned and adopted, and frees hit heaps
// of exited threads), and every object's contents are verified when freed.
//
// Run over the C API (OS page source) and over a region (region page source),
// plus region exhaustion under contention.
//
// Work scales with SHARDALLOC_STRESS_SCALE (environment, else the CMake cache
// value) times a sanitizer factor; see tests/support/test_support.h.
// SHARDALLOC_STRESS_THREADS overrides the thread count (default 8),
// SHARDALLOC_STRESS_ROUNDS / SHARDALLOC_STRESS_OPS the rounds and operations
// per thread per round of Stress.CApi / Stress.Region;
// SHARDALLOC_STRESS_VERBOSE=1 prints per-round progress of Stress.Region.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

using Clock = std::chrono::steady_clock;

unsigned stress_threads() {
  if (const char* e = std::getenv("SHARDALLOC_STRESS_THREADS")) {
    int v = std::atoi(e);
    if (v > 0 && v <= 256) return unsigned(v);
  }
  return 8;
}

double secs_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------
// Objects: a 24-byte header {size, align, check} then a pattern derived from
// the body's address, size and a per-test seed.

constexpr size_t kHeader = 24;
constexpr uint64_t kSeed = 0x5eed0f5a11ull;

struct Header {
  uint64_t size;
  uint64_t align;
  uint64_t check;
};

uint64_t header_check(const void* p, uint64_t size, uint64_t align) {
  return mix64(reinterpret_cast<uintptr_t>(p) ^ (size * 0x9e3779b97f4a7c15ull) ^ (align << 48) ^
               kSeed);
}

// Size distribution (mimalloc stress-like): mostly 24 B..1 KiB, 1% up to
// 100x that (medium), 0.05% 128 KiB..2 MiB, 0.005% 2..8 MiB (huge).
size_t pick_size(Rng& rng) {
  size_t s = kHeader + rng.below(1000);
  size_t r = rng.below(100000);
  if (r < 5) return 2 * MiB + rng.below(6 * MiB);
  if (r < 55) return 128 * KiB + rng.below(2 * MiB - 128 * KiB);
  if (r < 1055) return s * (1 + rng.below(100));
  return s;
}

struct Counters {
  std::atomic<size_t> bad_header{0};   // header overwritten
  std::atomic<size_t> bad_content{0};  // body pattern changed
  std::atomic<size_t> bad_zero{0};     // calloc memory not zeroed
  std::atomic<size_t> bad_align{0};    // misaligned or outside the region
  std::atomic<size_t> bad_status{0};   // alloc failed / dealloc refused
  std::atomic<size_t> allocs{0};
  std::atomic<size_t> frees{0};
  size_t errors() const {
    return bad_header.load() + bad_content.load() + bad_zero.load() + bad_align.load() +
           bad_status.load();
  }
};

void write_object(void* p, size_t size, size_t align) {
  Header h{size, align, header_check(p, size, align)};
  std::memcpy(p, &h, sizeof h);
  fill_pattern(static_cast<char*>(p) + kHeader, size - kHeader, kSeed);
}

// Verifies an object; returns false (and counts) if its header is damaged,
// in which case size/align are unknown and the object must not be freed.
bool verify_object(const void* p, Header& h, Counters& c) {
  std::memcpy(&h, p, sizeof h);
  if (h.check != header_check(p, h.size, h.align)) {
    c.bad_header++;
    return false;
  }
  if (check_pattern(static_cast<const char*>(p) + kHeader, h.size - kHeader, kSeed) != SIZE_MAX)
    c.bad_content++;
  return true;
}

// ---------------------------------------------------------------------------
// Page sources behind the same workload.

struct CApiSource {
  static constexpr bool kHasRealloc = true;
  void* alloc(Rng& rng, size_t size, size_t& align, Counters& c) {
    void* p;
    unsigned r = unsigned(rng.below(100));
    if (r < 2) {
      align = size_t{16} << rng.below(13);  // 16 B..64 KiB
      p = shard_malloc_aligned(size, align);
    } else if (r < 27) {
      align = 8;
      p = shard_calloc(1, size);
      if (p && !std::all_of(static_cast<char*>(p), static_cast<char*>(p) + size,
                            [](char x) { return x == 0; }))
        c.bad_zero++;
    } else {
      align = 8;
      p = shard_malloc(size);
    }
    if (!p) {
      c.bad_status++;
      return nullptr;
    }
    if (!is_aligned(p, align) || shard_usable_size(p) < size) c.bad_align++;
    return p;
  }
  void dealloc(void* p, const Header&, Counters&) { shard_free(p); }
  void* realloc(void* p, size_t size) { return shard_realloc(p, size); }
};

struct RegionSource {
  static constexpr bool kHasRealloc = false;
  shard_region* r;
  uintptr_t lo, hi;
  void* alloc(Rng& rng, size_t size, size_t& align, Counters& c) {
    unsigned x = unsigned(rng.below(100));
    align = x < 2 ? size_t{16} << rng.below(13) : x < 10 ? size_t{1} << rng.below(4) : 8;
    void* p = nullptr;
    shard_status s = shard_region_alloc(r, size, align, &p);
    if (s != SHARD_OK) {
      c.bad_status++;
      return nullptr;
    }
    auto a = reinterpret_cast<uintptr_t>(p);
    if (!is_aligned(p, align) || a < lo || a + size > hi) c.bad_align++;
    return p;
  }
  void dealloc(void* p, const Header& h, Counters& c) {
    if (shard_region_dealloc(r, p, h.size, h.align) != SHARD_OK) c.bad_status++;
  }
  void* realloc(void*, size_t) { return nullptr; }
};

// ---------------------------------------------------------------------------
// The workload.

struct StressParams {
  unsigned threads;
  size_t rounds;
  size_t ops;          // per thread per round
  size_t local_slots;  // per thread
  size_t transfer_slots;
};

template <class Source>
class Stress {
 public:
  Stress(Source& src, StressParams p) : src_(src), p_(p), transfer_(p.transfer_slots) {
    for (auto& t : transfer_) t.store(nullptr, std::memory_order_relaxed);
  }

  Counters c;

  void release(void* p) {
    if (!p) return;
    Header h;
    if (!verify_object(p, h, c)) return;  // damaged: leak it rather than free garbage
    src_.dealloc(p, h, c);
    c.frees++;
  }

  void* make(Rng& rng) {
    size_t size = pick_size(rng), align = 8;
    void* p = src_.alloc(rng, size, align, c);
    if (!p) return nullptr;
    write_object(p, size, align);
    c.allocs++;
    return p;
  }

  void* grow_or_shrink(Rng& rng, void* p) {
    Header h;
    if (!verify_object(p, h, c)) return nullptr;
    if (h.align > 8) return p;  // realloc does not keep over-alignment
    const uint64_t old_base =
        pattern_base(static_cast<char*>(p) + kHeader, h.size - kHeader, kSeed);
    size_t size = pick_size(rng);
    void* q = src_.realloc(p, size);
    if (!q) {
      c.bad_status++;
      return p;
    }
    size_t keep = (std::min(size_t(h.size), size) - kHeader) & ~size_t{7};
    if (check_with_base(static_cast<char*>(q) + kHeader, keep, old_base) != SIZE_MAX)
      c.bad_content++;
    write_object(q, size, 8);
    return q;
  }

  void thread_round(unsigned tid, size_t round) {
    Rng rng((uint64_t(round) << 20) ^ tid ^ 0xabcdef);
    std::vector<void*> local(p_.local_slots, nullptr);
    for (size_t i = 0; i < p_.ops; ++i) {
      void*& slot = local[rng.below(local.size())];
      unsigned r = unsigned(rng.below(100));
      if (r < 50) {  // allocate (replacing what was there)
        release(slot);
        slot = make(rng);
      } else if (r < 75) {  // swap with the transfer array: objects change threads
        auto& t = transfer_[rng.below(transfer_.size())];
        slot = t.exchange(slot, std::memory_order_acq_rel);
      } else if (r < 80 && Source::kHasRealloc && slot) {
        slot = grow_or_shrink(rng, slot);
      } else {
        release(slot);
        slot = nullptr;
      }
    }
    // Leave 10% behind in the transfer array for later rounds' threads.
    for (void*& slot : local) {
      if (slot && rng.chance(10))
        slot = transfer_[rng.below(transfer_.size())].exchange(slot, std::memory_order_acq_rel);
      release(slot);
      slot = nullptr;
    }
  }

  // Runs all rounds; returns false as soon as a round saw errors.
  bool run() {
    for (size_t round = 0; round < p_.rounds; ++round) {
      std::vector<std::thread> ts;
      for (unsigned t = 0; t < p_.threads; ++t)
        ts.emplace_back([this, t, round] { thread_round(t, round); });
      for (auto& t : ts) t.join();
      if (c.errors()) {
        ADD_FAILURE() << "errors in round " << round;
        return false;
      }
    }
    return true;
  }

  // Sum of the sizes of the objects left in the transfer array (threads quiet).
  size_t transfer_bytes() const {
    size_t sum = 0;
    for (auto& t : transfer_)
      if (void* p = t.load(std::memory_order_acquire)) {
        Header h;
        std::memcpy(&h, p, sizeof h);
        sum += h.size;
      }
    return sum;
  }

  void drain() {
    for (auto& t : transfer_) release(t.exchange(nullptr, std::memory_order_acq_rel));
  }

  void expect_clean() {
    EXPECT_EQ(c.bad_header.load(), 0u) << "object headers overwritten";
    EXPECT_EQ(c.bad_content.load(), 0u) << "object contents changed while live";
    EXPECT_EQ(c.bad_zero.load(), 0u) << "calloc returned non-zero memory";
    EXPECT_EQ(c.bad_align.load(), 0u) << "misaligned / out-of-range / too small blocks";
    EXPECT_EQ(c.bad_status.load(), 0u) << "alloc failed or dealloc refused";
  }

 private:
  Source& src_;
  StressParams p_;
  std::vector<std::atomic<void*>> transfer_;
};

// At scale 1 on 2 cores (Release) each of Stress.CApi / Stress.Region runs
// about 5-6 s: ~10M / ~14M allocations.
StressParams default_params(size_t ops_at_scale_1) {
  const double s = stress_scale();
  StressParams p;
  p.threads = stress_threads();
  p.rounds = scaled(30, s, 3);
  p.ops = scaled(ops_at_scale_1, std::min(1.0, s * 2), 2000);
  if (const char* e = std::getenv("SHARDALLOC_STRESS_ROUNDS")) p.rounds = std::max(1, std::atoi(e));
  if (const char* e = std::getenv("SHARDALLOC_STRESS_OPS")) p.ops = std::max(1, std::atoi(e));
  p.local_slots = 500;
  p.transfer_slots = 1000;
  return p;
}

void report(const char* name, const StressParams& p, const Counters& c, double secs) {
  std::printf(
      "[ %s ] threads=%u rounds=%zu ops/thread/round=%zu allocs=%zu frees=%zu in %.2f s (scale "
      "%.3g)\n",
      name, p.threads, p.rounds, p.ops, c.allocs.load(), c.frees.load(), secs, stress_scale());
}

// ---------------------------------------------------------------------------

TEST(Stress, CApi) {
  StressParams p = default_params(80000);
  CApiSource src;
  auto t0 = Clock::now();
  Stress<CApiSource> s(src, p);
  s.run();
  s.drain();
  report("CApi", p, s.c, secs_since(t0));
  s.expect_clean();
  EXPECT_EQ(s.c.allocs.load(), s.c.frees.load()) << "objects lost";
}

TEST(Stress, Region) {
  StressParams p = default_params(120000);
  const size_t region_size = 1024 * MiB;
  void* mem = map_memory(region_size);
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, region_size), SHARD_OK);
  RegionSource src{r, reinterpret_cast<uintptr_t>(mem),
                   reinterpret_cast<uintptr_t>(mem) + region_size};
  {
    // Warm up: the main thread and p.threads concurrent threads get heaps.
    std::barrier sync(p.threads);
    auto touch = [r] {
      void* x = nullptr;
      ASSERT_EQ(shard_region_alloc(r, 32, 8, &x), SHARD_OK);
      ASSERT_EQ(shard_region_dealloc(r, x, 32, 8), SHARD_OK);
    };
    touch();
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < p.threads; ++t)
      ts.emplace_back([&] {
        sync.arrive_and_wait();
        touch();
        sync.arrive_and_wait();
      });
    for (auto& t : ts) t.join();
  }
  const RegionStats base = stats(r);
  ASSERT_EQ(base.used, 0u);

  auto t0 = Clock::now();
  Stress<RegionSource> s(src, p);
  // Rounds one by one so accounting can be checked while threads are quiet.
  for (size_t round = 0; round < p.rounds && !s.c.errors(); ++round) {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < p.threads; ++t)
      ts.emplace_back([&s, t, round] { s.thread_round(t, round); });
    for (auto& t : ts) t.join();
    RegionStats now = stats(r);
    if (std::getenv("SHARDALLOC_STRESS_VERBOSE"))
      std::printf("  round %zu: %.2f s, allocs %zu, used %zu, available %zu\n", round,
                  secs_since(t0), s.c.allocs.load(), now.used, now.available);
    ASSERT_EQ(now.used, s.transfer_bytes()) << "used_bytes != live bytes after round " << round;
    ASSERT_LE(now.used + now.available, now.total);
  }
  s.drain();
  report("Region", p, s.c, secs_since(t0));
  s.expect_clean();
  EXPECT_EQ(s.c.allocs.load(), s.c.frees.load()) << "objects lost";
  RegionStats end = stats(r);
  EXPECT_EQ(end.used, 0u);
  EXPECT_EQ(end.total, base.total);
  EXPECT_EQ(end.available, base.available)
      << "available_bytes did not return to its value before the stress";
}

// ---------------------------------------------------------------------------
// Region exhaustion under contention.
//   Phase 1: threads allocate (with frees and cross-thread swaps) until each
//            gets SHARD_NO_MEMORY; every other status is an error.
//   Check:   with all threads quiet, used == sum of live sizes, every live
//            block is intact.
//   Phase 2: every thread spins retrying its failed request while the main
//            thread calls add_memory concurrently; every retry must then
//            succeed, further allocations succeed, all blocks are verified
//            and freed (half of them by other threads).

TEST(Stress, RegionExhaustionUnderContention) {
  const unsigned threads = stress_threads();
  // Every round makes a fresh 16 MiB region and adds 32 MiB to it (regions
  // are never unmapped, so rounds cost address space and some RSS). After
  // add_memory each thread needs at most its failed request (< 768 KiB, one
  // huge segment) plus 50 small blocks (64 B..2 KiB, a few small segments):
  // well below 32 MiB for 8 threads.
  const size_t rounds = scaled(20, stress_scale(), 4);
  const size_t first = 16 * MiB, extra = 32 * MiB;
  auto t0 = Clock::now();
  size_t total_allocs = 0;

  for (size_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto* mem = static_cast<unsigned char*>(map_memory(first));
    auto* more = static_cast<unsigned char*>(map_memory(extra));
    shard_region* r = nullptr;
    ASSERT_EQ(shard_region_init(&r, mem, first), SHARD_OK);
    auto inside = [&](const void* p, size_t n) {
      auto a = reinterpret_cast<uintptr_t>(p);
      auto in = [&](unsigned char* b, size_t len) {
        return a >= reinterpret_cast<uintptr_t>(b) && a + n <= reinterpret_cast<uintptr_t>(b) + len;
      };
      return in(mem, first) || in(more, extra);
    };

    struct Req {
      size_t size = 0, align = 0;
    };
    std::vector<std::vector<void*>> owned(threads);
    std::vector<Req> failed(threads);
    std::vector<std::atomic<void*>> transfer(256);
    for (auto& t : transfer) t.store(nullptr);
    Counters c;
    std::atomic<size_t> errors{0}, hits{0}, live_bytes{0};
    std::atomic<bool> added{false};
    std::barrier sync(threads + 1);

    auto pick = [](Rng& rng) {
      unsigned x = unsigned(rng.below(100));
      Req q;
      q.size = x < 3 ? 128 * KiB + rng.below(256 * KiB)
                     : size_t{64} << rng.below(10);  // 64 B..64 KiB, or huge
      q.size += rng.below(q.size);
      q.align = x % 10 == 5 ? size_t{1} << (3 + rng.below(10)) : 8;
      return q;
    };
    // Allocates q; on success the block is written and recorded.
    auto try_alloc = [&](const Req& q, std::vector<void*>& mine) {
      void* p = nullptr;
      shard_status s = shard_region_alloc(r, q.size, q.align, &p);
      if (s == SHARD_OK) {
        if (!is_aligned(p, q.align) || !inside(p, q.size)) errors++;
        write_object(p, q.size, q.align);
        mine.push_back(p);
        live_bytes += q.size;
        c.allocs++;
      }
      return s;
    };
    auto free_block = [&](void* p) {
      Header h;
      if (!verify_object(p, h, c)) return;
      if (shard_region_dealloc(r, p, h.size, h.align) != SHARD_OK) errors++;
      live_bytes -= h.size;
    };

    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        Rng rng(round * 100 + t);
        auto& mine = owned[t];
        // Phase 1: allocate (with frees and swaps) until NO_MEMORY.
        for (;;) {
          Req q = pick(rng);
          shard_status s = try_alloc(q, mine);
          if (s == SHARD_NO_MEMORY) {
            failed[t] = q;
            hits++;
            break;
          }
          if (s != SHARD_OK) {
            errors++;
            hits++;
            break;
          }
          unsigned x = unsigned(rng.below(100));
          if (x < 15) {  // free one of mine
            size_t i = rng.below(mine.size());
            free_block(mine[i]);
            mine[i] = mine.back();
            mine.pop_back();
          } else if (x < 25) {  // swap one with another thread's
            void* got = transfer[rng.below(transfer.size())].exchange(mine.back(),
                                                                      std::memory_order_acq_rel);
            mine.pop_back();
            if (got) free_block(got);  // remote free
          }
        }
        sync.arrive_and_wait();  // A: all quiet, main checks
        sync.arrive_and_wait();  // B: main is about to add memory
        // Phase 2: spin on the failed request; memory arrives concurrently.
        Clock::time_point deadline{};
        if (failed[t].size) {
          for (;;) {
            shard_status s = try_alloc(failed[t], mine);
            if (s == SHARD_OK) break;
            if (s != SHARD_NO_MEMORY) {
              errors++;
              break;
            }
            if (added.load(std::memory_order_acquire)) {
              if (deadline == Clock::time_point{})
                deadline = Clock::now() + std::chrono::seconds(10);
              if (Clock::now() > deadline) {
                errors++;  // still NO_MEMORY 10 s after add_memory
                break;
              }
            }
            std::this_thread::yield();
          }
        }
        while (!added.load(std::memory_order_acquire)) std::this_thread::yield();
        for (int i = 0; i < 50; ++i) {
          Req q{64 + rng.below(2 * KiB), 8};
          if (try_alloc(q, mine) != SHARD_OK) {
            errors++;
            break;
          }
        }
        for (void* p : mine) {
          Header h;
          verify_object(p, h, c);
        }
        sync.arrive_and_wait();  // C: everyone verified; now free (half remote)
        for (size_t i = 0; i < mine.size(); i += 2) free_block(mine[i]);
        sync.arrive_and_wait();  // D
        auto& neighbour = owned[(t + 1) % threads];
        for (size_t i = 1; i < neighbour.size(); i += 2) free_block(neighbour[i]);
      });

    sync.arrive_and_wait();  // A
    EXPECT_EQ(errors.load() + c.errors(), 0u) << "errors before exhaustion";
    EXPECT_EQ(hits.load(), threads) << "every thread hit SHARD_NO_MEMORY";
    RegionStats full = stats(r);
    size_t sum = 0;
    Counters before_add;
    for (auto& v : owned)
      for (void* p : v) {
        Header h;
        if (verify_object(p, h, before_add)) sum += h.size;
      }
    for (auto& t : transfer)
      if (void* p = t.load(std::memory_order_acquire)) {
        Header h;
        if (verify_object(p, h, before_add)) sum += h.size;
      }
    EXPECT_EQ(before_add.errors(), 0u) << "blocks disturbed while the region ran out";
    EXPECT_EQ(full.used, sum) << "used_bytes at exhaustion != sum of live sizes";
    EXPECT_EQ(full.used, live_bytes.load());
    EXPECT_LE(full.used + full.available, full.total);
    EXPECT_EQ(full.total, first);
    sync.arrive_and_wait();  // B
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(shard_region_add_memory(r, more, extra), SHARD_OK);
    added.store(true, std::memory_order_release);
    sync.arrive_and_wait();  // C
    sync.arrive_and_wait();  // D
    for (auto& th : ts) th.join();
    for (auto& t : transfer)
      if (void* p = t.exchange(nullptr)) free_block(p);
    EXPECT_EQ(errors.load(), 0u)
        << "alloc/dealloc errors after add_memory (or a retry stuck on NO_MEMORY)";
    EXPECT_EQ(c.errors(), 0u) << "damaged blocks";
    RegionStats end = stats(r);
    EXPECT_EQ(end.used, 0u);
    EXPECT_EQ(end.total, first + extra);
    EXPECT_EQ(live_bytes.load(), 0u);
    total_allocs += c.allocs.load();
    if (HasFailure()) break;
  }
  std::printf("[ RegionExhaustionUnderContention ] threads=%u rounds=%zu allocs=%zu in %.2f s\n",
              threads, rounds, total_allocs, secs_since(t0));
}

}  // namespace
