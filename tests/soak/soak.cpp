// Soak test of the process heap (C API: shard_malloc, shard_realloc,
// shard_free, shard_malloc_aligned, shard_calloc), see docs/reliability.md.
//
// Worker threads allocate and free blocks of mixed sizes (mostly small, some
// medium, a few huge), hand blocks to each other through an exchange of
// atomic slots (so blocks are freed by other threads, often after the thread
// that allocated them has exited), and live a short random time each: a
// manager thread replaces every worker that exits (thread churn: heaps are
// abandoned and adopted all the time). Live memory is bounded, so after a
// warm-up the resident set must stay flat:
//   max RSS of the last third <= --rss-factor x max RSS of the first third
// (of the samples after --warmup). Every block carries a pattern derived from
// its own id and size, checked whenever the block changes hands, is realloc'd
// or freed: any mismatch is data corruption and fails the run.
//
// RSS is sampled every second from /proc/self/statm and printed as a curve.
//
//   soak [--seconds N] [--threads N] [--warmup N] [--rss-factor F] [--seed N] [--quiet]
//   CI:   soak --seconds 150            (the CTest test soak.process_heap)
//   long: soak --seconds 14400 --threads 8
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"

namespace {

// ---- options -------------------------------------------------------------------

struct Options {
  double seconds = 150;
  unsigned threads = 4;
  double warmup = -1;  // default: 10% of the run, at least 5 s, at most 120 s
  double rss_factor = 1.25;
  uint64_t seed = 1;
  bool quiet = false;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: soak [--seconds N] [--threads N] [--warmup SECONDS] [--rss-factor F] "
               "[--seed N] [--quiet]\n");
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--seconds")
      o.seconds = std::atof(value());
    else if (a == "--threads")
      o.threads = unsigned(std::atoi(value()));
    else if (a == "--warmup")
      o.warmup = std::atof(value());
    else if (a == "--rss-factor")
      o.rss_factor = std::atof(value());
    else if (a == "--seed")
      o.seed = std::strtoull(value(), nullptr, 10);
    else if (a == "--quiet")
      o.quiet = true;
    else
      usage();
  }
  if (o.seconds < 3 || o.threads < 1 || o.rss_factor < 1) usage();
  if (o.warmup < 0) o.warmup = std::min(120.0, std::max(5.0, o.seconds / 10));
  return o;
}

// ---- random numbers --------------------------------------------------------------

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t below(size_t n) { return size_t(next() % n); }
  bool chance(unsigned per_mille) { return below(1000) < per_mille; }
};

// ---- blocks: a header, then a pattern ---------------------------------------------------

struct Header {
  uint64_t id;
  uint64_t size;   // bytes requested, header included
  uint64_t check;  // id ^ size ^ constant: a header overwritten by another block shows
};
constexpr uint64_t kMagic = 0x5AFE50AC5AFE50ACull;
constexpr size_t kMinBlock = sizeof(Header) + 8;

std::atomic<uint64_t> g_next_id{1};
std::atomic<uint64_t> g_errors{0};
std::atomic<int64_t> g_live_bytes{0};
std::atomic<uint64_t> g_ops{0};
std::atomic<uint64_t> g_threads_started{0};
std::atomic<uint64_t> g_remote_frees{0};

void report(const char* what, const void* p, uint64_t id, size_t offset) {
  if (g_errors.fetch_add(1) < 20) {
    std::fprintf(stderr, "soak: CORRUPTION: %s: block %p id %" PRIu64 " offset %zu\n", what, p, id,
                 offset);
  }
}

inline uint64_t word_for(uint64_t id, size_t offset) {
  uint64_t h = id * 0x9E3779B97F4A7C15ull ^ (uint64_t(offset) * 0xBF58476D1CE4E5B9ull);
  return h ^ (h >> 31);
}

// Pattern words: every word up to 4 KiB, then one word per 1 KiB (huge blocks
// stay cheap), and the last word.
template <class F>
void for_each_word(size_t size, F f) {
  const size_t end = size & ~size_t{7};
  for (size_t o = sizeof(Header); o + 8 <= end; o += o < 4096 ? 8 : 1024) f(o);
  if (end >= sizeof(Header) + 8) f(end - 8);
}

void fill(void* p, size_t size, uint64_t id) {
  auto* h = static_cast<Header*>(p);
  h->id = id;
  h->size = size;
  h->check = id ^ size ^ kMagic;
  auto* b = static_cast<unsigned char*>(p);
  for_each_word(size, [&](size_t o) {
    const uint64_t v = word_for(id, o);
    std::memcpy(b + o, &v, 8);
  });
}

// Checks a block; returns its size (0 if the header itself is broken).
size_t verify(const void* p, size_t limit, const char* when) {
  const auto* h = static_cast<const Header*>(p);
  if (h->check != (h->id ^ h->size ^ kMagic) || h->size < kMinBlock) {
    report(when, p, h->id, 0);
    return 0;
  }
  const auto* b = static_cast<const unsigned char*>(p);
  const size_t n = std::min<size_t>(h->size, limit);
  bool bad = false;
  for_each_word(h->size, [&](size_t o) {
    if (bad || o + 8 > n) return;
    uint64_t v;
    std::memcpy(&v, b + o, 8);
    if (v != word_for(h->id, o)) {
      report(when, p, h->id, o);
      bad = true;
    }
  });
  return h->size;
}

size_t pick_size(Rng& r) {
  const unsigned k = unsigned(r.below(1000));
  if (k < 700) return kMinBlock + r.below(256);        // small
  if (k < 900) return 256 + r.below(8 * 1024);         // small pages, larger classes
  if (k < 985) return 8 * 1024 + r.below(120 * 1024);  // small, medium and large pages
  return 128 * 1024 + r.below(1024 * 1024);            // huge (own segment)
}

void* new_block(Rng& r, size_t size) {
  void* p;
  const unsigned how = unsigned(r.below(100));
  if (how < 5)
    p = shard_malloc_aligned(size, size_t{16} << r.below(9));  // 16 .. 4096
  else if (how < 10)
    p = shard_calloc(1, size);
  else
    p = shard_malloc(size);
  if (p == nullptr) {
    report("allocation returned NULL", nullptr, 0, size);
    return nullptr;
  }
  fill(p, size, g_next_id.fetch_add(1, std::memory_order_relaxed));
  g_live_bytes.fetch_add(int64_t(size), std::memory_order_relaxed);
  return p;
}

void free_block(void* p, const char* when) {
  const size_t size = verify(p, SIZE_MAX, when);
  g_live_bytes.fetch_sub(int64_t(size), std::memory_order_relaxed);
  shard_free(p);
}

// ---- the exchange: blocks in transit between threads -------------------------------------

constexpr size_t kSlots = 1024;
std::atomic<void*> g_slots[kSlots];

// ---- workers -------------------------------------------------------------------------------

constexpr size_t kWorkingSet = 400;

std::atomic<bool> g_stop{false};

void worker(uint64_t seed) {
  g_threads_started.fetch_add(1, std::memory_order_relaxed);
  Rng r(seed);
  std::vector<void*> mine;
  mine.reserve(kWorkingSet);
  // Lifetime: 50 ms .. 2 s of work, then exit (the manager starts another).
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(50 + r.below(1950));
  uint64_t ops = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    if ((++ops & 255) == 0) {
      g_ops.fetch_add(256, std::memory_order_relaxed);
      if (std::chrono::steady_clock::now() > until) break;
    }
    const unsigned op = unsigned(r.below(100));
    if (op < 45) {  // allocate into the working set
      if (mine.size() < kWorkingSet) {
        if (void* p = new_block(r, pick_size(r))) mine.push_back(p);
      } else {
        const size_t i = r.below(mine.size());
        free_block(mine[i], "local free");
        mine[i] = mine.back();
        mine.pop_back();
      }
    } else if (op < 80) {  // free one of ours
      if (!mine.empty()) {
        const size_t i = r.below(mine.size());
        free_block(mine[i], "local free");
        mine[i] = mine.back();
        mine.pop_back();
      }
    } else if (op < 95) {  // swap one of ours with whatever sits in a random slot
      if (!mine.empty()) {
        const size_t i = r.below(mine.size());
        void* theirs = g_slots[r.below(kSlots)].exchange(mine[i], std::memory_order_acq_rel);
        mine[i] = mine.back();
        mine.pop_back();
        if (theirs != nullptr) {
          if (r.chance(500) && mine.size() < kWorkingSet) {
            verify(theirs, SIZE_MAX, "received block");
            mine.push_back(theirs);  // keep it: freed later by us, realloc'd, or passed on
          } else {
            free_block(theirs, "remote free");
            g_remote_frees.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    } else {  // realloc one of ours (grow or shrink), contents must follow
      if (!mine.empty()) {
        const size_t i = r.below(mine.size());
        const size_t old_size = verify(mine[i], SIZE_MAX, "before realloc");
        if (old_size == 0) continue;
        const size_t new_size = pick_size(r);
        auto* h = static_cast<Header*>(mine[i]);
        const uint64_t id = h->id;
        void* q = shard_realloc(mine[i], new_size);
        if (q == nullptr) {
          report("realloc returned NULL", mine[i], id, new_size);
          continue;
        }
        // The common prefix moved with the block (the header still says old_size).
        verify(q, std::min(old_size, new_size), "after realloc");
        fill(q, new_size, id);
        g_live_bytes.fetch_add(int64_t(new_size) - int64_t(old_size), std::memory_order_relaxed);
        mine[i] = q;
      }
    }
  }
  // Exit: free half of what we hold, leave the rest in the exchange for others
  // (freed remotely after this thread's heap was abandoned).
  for (void* p : mine) {
    if (r.chance(500)) {
      void* theirs = g_slots[r.below(kSlots)].exchange(p, std::memory_order_acq_rel);
      if (theirs != nullptr) free_block(theirs, "remote free at exit");
    } else {
      free_block(p, "local free at exit");
    }
  }
}

// ---- RSS -----------------------------------------------------------------------------------

double rss_mib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

struct Sample {
  double t, rss, live;
  uint64_t ops, threads;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::printf(
      "soak: %.0f s, %u worker threads (each lives 50 ms - 2 s), warm-up %.0f s, rss factor %.2f, "
      "seed %" PRIu64 "\n",
      o.seconds, o.threads, o.warmup, o.rss_factor, o.seed);
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  // Manager: keeps o.threads workers running, replacing each one that exits.
  std::thread manager([&] {
    std::vector<std::thread> pool(o.threads);
    std::vector<std::atomic<bool>> done(o.threads);
    uint64_t seq = 0;
    auto launch = [&](unsigned i) {
      done[i].store(false);
      const uint64_t seed = o.seed * 1000003 + ++seq;
      pool[i] = std::thread([&done, i, seed] {
        worker(seed);
        done[i].store(true, std::memory_order_release);
      });
    };
    for (unsigned i = 0; i < o.threads; ++i) launch(i);
    while (!g_stop.load()) {
      for (unsigned i = 0; i < o.threads; ++i) {
        if (done[i].load(std::memory_order_acquire)) {
          pool[i].join();
          if (!g_stop.load())
            launch(i);
          else
            done[i].store(false);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& t : pool)
      if (t.joinable()) t.join();
  });

  std::vector<Sample> samples;
  if (!o.quiet)
    std::printf("%8s %10s %10s %12s %8s\n", "t_s", "rss_mib", "live_mib", "ops", "threads");
  for (int tick = 1;; ++tick) {
    const double target = tick;
    const double now = elapsed();
    if (target > now) std::this_thread::sleep_for(std::chrono::duration<double>(target - now));
    Sample s{elapsed(), rss_mib(), double(g_live_bytes.load()) / (1024.0 * 1024.0), g_ops.load(),
             g_threads_started.load()};
    samples.push_back(s);
    if (!o.quiet) {
      std::printf("%8.1f %10.1f %10.1f %12" PRIu64 " %8" PRIu64 "\n", s.t, s.rss, s.live, s.ops,
                  s.threads);
      std::fflush(stdout);
    }
    if (s.t >= o.seconds || g_errors.load() != 0) break;
  }
  g_stop.store(true);
  manager.join();
  for (auto& slot : g_slots) {
    if (void* p = slot.exchange(nullptr)) free_block(p, "final free");
  }
  const double rss_end = rss_mib();

  // Flatness: samples after the warm-up, in thirds.
  std::vector<Sample> steady;
  for (const Sample& s : samples)
    if (s.t >= o.warmup) steady.push_back(s);
  bool flat_ok = true;
  double first_max = 0, mid_max = 0, last_max = 0, ratio = 0;
  if (steady.size() >= 6) {
    const size_t third = steady.size() / 3;
    for (size_t i = 0; i < steady.size(); ++i) {
      double& m = i < third ? first_max : i < steady.size() - third ? mid_max : last_max;
      m = std::max(m, steady[i].rss);
    }
    ratio = last_max / first_max;
    flat_ok = ratio <= o.rss_factor;
  } else {
    std::printf("soak: too few samples after the warm-up to judge RSS\n");
    flat_ok = false;
  }
  double peak = 0;
  for (const Sample& s : samples) peak = std::max(peak, s.rss);
  const Sample& last = samples.back();
  std::printf("soak: ops %" PRIu64 ", threads started %" PRIu64 ", remote frees %" PRIu64
              ", errors %" PRIu64 "\n",
              last.ops, last.threads, g_remote_frees.load(), g_errors.load());
  std::printf(
      "soak: RSS MiB: peak %.1f; after warm-up max of first third %.1f, middle %.1f, last third "
      "%.1f "
      "(ratio %.3f, limit %.2f); after freeing everything %.1f\n",
      peak, first_max, mid_max, last_max, ratio, o.rss_factor, rss_end);
  const bool ok = flat_ok && g_errors.load() == 0 && g_live_bytes.load() == 0;
  if (g_live_bytes.load() != 0)
    std::printf("soak: live bytes at the end %" PRId64 " (expected 0)\n", g_live_bytes.load());
  std::printf("soak: %s\n", ok ? "PASS" : flat_ok ? "FAIL (corruption)" : "FAIL (RSS grew)");
  return ok ? 0 : 1;
}
