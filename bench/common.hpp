// Shared helpers for the shardalloc benchmark workloads.
//
// Every workload is a plain C++20 program that only uses malloc / calloc /
// realloc / free / operator new / operator delete, so the allocator under
// test is chosen at run time with LD_PRELOAD. Every workload:
//   * takes `[threads] [scale]` on the command line (see parse_args),
//   * does a fixed amount of work proportional to `scale` (1.0 = full size,
//     about 1-5 s on a 2-core machine with glibc),
//   * stamps a pattern into the memory it allocates and verifies it before
//     freeing, exiting with status 3 on corruption (4 on out-of-memory),
//   * prints one summary line on stdout.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace bench {

// ---------------------------------------------------------------- failures

constexpr int kExitUsage = 2;
constexpr int kExitCorrupt = 3;
constexpr int kExitNoMemory = 4;

[[noreturn]] inline void die(int code, const char* what, const void* p = nullptr,
                             std::size_t size = 0) {
  std::fprintf(stderr, "bench: %s (ptr=%p size=%zu)\n", what, p, size);
  std::fflush(stderr);
  std::_Exit(code);
}

[[noreturn]] inline void corrupt(const char* what, const void* p, std::size_t size) {
  die(kExitCorrupt, what, p, size);
}

// ------------------------------------------------------------ random numbers

// SplitMix64 seeding + xoshiro256** generator: fast, no allocation, good
// enough statistical quality for picking sizes and slots.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) (n > 0), via 128-bit multiply (Lemire, no division).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [lo, hi] inclusive.
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  // Uniform double in (0, 1].
  double unit() { return (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0); }
  // True with probability num/den.
  bool chance(std::uint64_t num, std::uint64_t den) { return below(den) < num; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// ------------------------------------------------------------ memory stamps

// A stamp writes a tag-derived value at the start and end of a block and one
// word in every 64-byte line in between, so every cache line of the block is
// touched once (realistic use) without the check dominating the run time.
// check() verifies exactly the positions that stamp() wrote.

inline std::uint64_t mix(std::uint64_t tag, std::uint64_t off) {
  std::uint64_t z = tag ^ (off * 0x9e3779b97f4a7c15ULL);
  return z ^ (z >> 29);
}

inline void store64(void* p, std::uint64_t v) { std::memcpy(p, &v, 8); }
inline std::uint64_t load64(const void* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline void stamp(void* block, std::size_t n, std::uint64_t tag) {
  auto* b = static_cast<unsigned char*>(block);
  if (n < 16) {
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(mix(tag, i));
    return;
  }
  store64(b, mix(tag, 0));
  for (std::size_t off = 64; off + 16 <= n; off += 64) store64(b + off, mix(tag, off));
  store64(b + n - 8, mix(tag, n));
}

inline bool stamp_ok(const void* block, std::size_t n, std::uint64_t tag) {
  const auto* b = static_cast<const unsigned char*>(block);
  if (n < 16) {
    for (std::size_t i = 0; i < n; ++i)
      if (b[i] != static_cast<unsigned char>(mix(tag, i))) return false;
    return true;
  }
  if (load64(b) != mix(tag, 0)) return false;
  for (std::size_t off = 64; off + 16 <= n; off += 64)
    if (load64(b + off) != mix(tag, off)) return false;
  return load64(b + n - 8) == mix(tag, n);
}

inline void check(const void* block, std::size_t n, std::uint64_t tag) {
  if (!stamp_ok(block, n, tag)) corrupt("pattern mismatch", block, n);
}

// Sparse variant for multi-megabyte blocks: head, tail and one word per MiB,
// so that the benchmark measures the allocator, not page faults.
inline void stamp_sparse(void* block, std::size_t n, std::uint64_t tag) {
  auto* b = static_cast<unsigned char*>(block);
  store64(b, mix(tag, 0));
  for (std::size_t off = 1u << 20; off + 16 <= n; off += 1u << 20) store64(b + off, mix(tag, off));
  store64(b + n - 8, mix(tag, n));
}

inline void check_sparse(const void* block, std::size_t n, std::uint64_t tag) {
  const auto* b = static_cast<const unsigned char*>(block);
  bool ok = load64(b) == mix(tag, 0) && load64(b + n - 8) == mix(tag, n);
  for (std::size_t off = 1u << 20; ok && off + 16 <= n; off += 1u << 20)
    ok = load64(b + off) == mix(tag, off);
  if (!ok) corrupt("sparse pattern mismatch", block, n);
}

// ------------------------------------------------- self-describing objects

// Objects that travel between threads carry their own size and tag in a
// 16-byte header, so the thread that frees them can verify them. Sizes
// below 16 bytes are rounded up to 16.
struct ObjHeader {
  std::uint64_t size;
  std::uint64_t tag;
};

inline void* checked_malloc(std::size_t n) {
  void* p = std::malloc(n);
  if (p == nullptr) die(kExitNoMemory, "malloc returned NULL", nullptr, n);
  return p;
}

inline void* obj_new(std::size_t size, std::uint64_t tag) {
  if (size < sizeof(ObjHeader)) size = sizeof(ObjHeader);
  auto* h = static_cast<ObjHeader*>(checked_malloc(size));
  h->size = size;
  h->tag = tag;
  if (size > sizeof(ObjHeader)) stamp(h + 1, size - sizeof(ObjHeader), tag);
  return h;
}

// Verifies the object (and, when expected_tag != 0, that it is the object the
// caller thinks it is) and returns its size.
inline std::size_t obj_check(const void* p, std::uint64_t expected_tag = 0) {
  const auto* h = static_cast<const ObjHeader*>(p);
  if (h->size < sizeof(ObjHeader) || h->size > (std::size_t{1} << 40))
    corrupt("object header size corrupt", p, h->size);
  if (expected_tag != 0 && h->tag != expected_tag) corrupt("object header tag corrupt", p, h->size);
  if (h->size > sizeof(ObjHeader)) check(h + 1, h->size - sizeof(ObjHeader), h->tag);
  return h->size;
}

inline void obj_free(void* p, std::uint64_t expected_tag = 0) {
  obj_check(p, expected_tag);
  std::free(p);
}

// A tag that is never 0 (0 means "unchecked" for obj_check).
inline std::uint64_t make_tag(Rng& rng) { return rng.next() | 1; }

// -------------------------------------------------------------- arguments

struct Args {
  int threads = 1;
  double scale = 1.0;
};

inline int default_threads() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Usage: prog [threads] [scale]. threads >= 1 (default: number of CPUs);
// scale > 0 multiplies the amount of work (default 1.0 = full size).
inline Args parse_args(int argc, char** argv, const char* description) {
  Args a;
  a.threads = default_threads();
  if (argc > 1 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::printf(
        "usage: %s [threads] [scale]\n  %s\n  threads: worker threads (default: CPUs)\n"
        "  scale:   work multiplier, 1.0 = full size (default 1.0)\n",
        argv[0], description);
    std::exit(0);
  }
  if (argc > 3) {
    std::fprintf(stderr, "usage: %s [threads] [scale]\n", argv[0]);
    std::exit(kExitUsage);
  }
  if (argc > 1) {
    char* end = nullptr;
    long t = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || t < 1 || t > 4096) {
      std::fprintf(stderr, "%s: bad thread count '%s'\n", argv[0], argv[1]);
      std::exit(kExitUsage);
    }
    a.threads = static_cast<int>(t);
  }
  if (argc > 2) {
    char* end = nullptr;
    double s = std::strtod(argv[2], &end);
    if (end == argv[2] || *end != '\0' || !(s > 0.0) || s > 1000.0) {
      std::fprintf(stderr, "%s: bad scale '%s'\n", argv[0], argv[2]);
      std::exit(kExitUsage);
    }
    a.scale = s;
  }
  return a;
}

// max(1, round(base * scale))
inline std::uint64_t scaled(double base, double scale) {
  const double v = std::round(base * scale);
  return v < 1.0 ? 1 : static_cast<std::uint64_t>(v);
}

// Splits `total` units of work over `parts` workers; worker i gets share(i).
inline std::uint64_t share(std::uint64_t total, int parts, int i) {
  std::uint64_t p = static_cast<std::uint64_t>(parts);
  std::uint64_t q = total / p, r = total % p;
  return q + (static_cast<std::uint64_t>(i) < r ? 1 : 0);
}

// ------------------------------------------------------------------ timing

class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Peak resident set of this process image, from /proc/self/status (VmHWM, KiB).
inline long peak_rss_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      kib = std::strtol(line + 6, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib;
}

inline void report(const char* name, const Args& a, std::uint64_t ops, double secs,
                   const char* extra = "") {
  std::printf("%s: threads=%d scale=%g ops=%llu time=%.3fs mops/s=%.2f vmhwm_kib=%ld%s%s\n", name,
              a.threads, a.scale, static_cast<unsigned long long>(ops), secs,
              secs > 0 ? static_cast<double>(ops) / secs / 1e6 : 0.0, peak_rss_kib(),
              extra[0] ? " " : "", extra);
}

// ------------------------------------------------------------ concurrency

// Runs fn(i) on `n` fresh threads and joins them.
template <class Fn>
void run_threads(int n, Fn&& fn) {
  std::vector<std::thread> ts;
  ts.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ts.emplace_back([&fn, i] { fn(i); });
  for (auto& t : ts) t.join();
}

// One-shot start gate so that all workers begin together.
class Gate {
 public:
  explicit Gate(int parties) : remaining_(parties) {}
  void arrive_and_wait() {
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) return;
    while (remaining_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  }

 private:
  std::atomic<int> remaining_;
};

// Mutex-protected multi-producer mailbox of pointer batches. The vectors it
// holds are allocated through the allocator under test as well.
class Mailbox {
 public:
  void post(std::vector<void*>&& batch) {
    std::lock_guard<std::mutex> lk(mu_);
    q_.push_back(std::move(batch));
    pending_.store(q_.size(), std::memory_order_relaxed);
  }
  // Takes everything posted so far.
  std::vector<std::vector<void*>> take_all() {
    std::vector<std::vector<void*>> out;
    if (pending_.load(std::memory_order_relaxed) == 0) return out;
    std::lock_guard<std::mutex> lk(mu_);
    out.swap(q_);
    pending_.store(0, std::memory_order_relaxed);
    return out;
  }
  std::size_t pending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  std::vector<std::vector<void*>> q_;
  std::atomic<std::size_t> pending_{0};
};

// T threads in a ring, each handing batches of blocks to its successor.
// Flow control: a thread whose successor already has `limit` batches waiting
// drains its own mailbox until the successor catches up, so a fast thread
// cannot pile up an unbounded backlog (and unbounded RSS) on a slow one.
// A thread that has finished its work keeps draining until all have.
class Ring {
 public:
  Ring(int threads, std::size_t limit)
      : boxes_(static_cast<std::size_t>(threads)), limit_(limit), threads_(threads) {}

  // fn(std::vector<void*>& batch) frees a received batch.
  template <class Fn>
  std::size_t drain(int t, Fn&& fn) {
    std::size_t n = 0;
    for (auto& batch : boxes_[static_cast<std::size_t>(t)].take_all()) {
      n += batch.size();
      fn(batch);
    }
    return n;
  }

  template <class Fn>
  std::size_t post(int t, std::vector<void*>&& batch, Fn&& fn) {
    Mailbox& next = boxes_[static_cast<std::size_t>((t + 1) % threads_)];
    std::size_t n = 0;
    while (threads_ > 1 && next.pending() >= limit_) {
      n += drain(t, fn);
      std::this_thread::yield();
    }
    next.post(std::move(batch));
    return n;
  }

  template <class Fn>
  std::size_t finish(int t, Fn&& fn) {
    std::size_t n = 0;
    done_.fetch_add(1, std::memory_order_acq_rel);
    while (done_.load(std::memory_order_acquire) < threads_) {
      n += drain(t, fn);
      std::this_thread::yield();
    }
    return n + drain(t, fn);
  }

 private:
  std::vector<Mailbox> boxes_;
  std::size_t limit_;
  int threads_;
  std::atomic<int> done_{0};
};

// A blocking FIFO of at most `capacity` pointers between threads (mutex and
// condition variables: the workloads measure the allocator, not the queue).
template <class T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity = 64) : capacity_(capacity) {}
  void push(T* item) {
    std::unique_lock<std::mutex> lk(mu_);
    not_full_.wait(lk, [&] { return q_.size() < capacity_; });
    q_.push_back(item);
    lk.unlock();
    not_empty_.notify_one();
  }
  T* pop() {  // blocks until an item (or the producer's nullptr end marker) arrives
    std::unique_lock<std::mutex> lk(mu_);
    not_empty_.wait(lk, [&] { return !q_.empty(); });
    T* item = q_.front();
    q_.erase(q_.begin());
    lk.unlock();
    not_full_.notify_one();
    return item;
  }

 private:
  std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::vector<T*> q_;
};

}  // namespace bench
