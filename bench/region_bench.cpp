// bench-region: the ArceOS allocator tests, run over a fixed memory region.
//
//   bench-region VARIANT WORKLOAD [threads] [scale]
//   bench-region --variants      (prints the variants this build has)
//
// VARIANT picks the allocator behind the region:
//   shardalloc        shard_region_alloc / shard_region_dealloc, lock-free
//                     (each thread gets its own heap inside the region);
//   shardalloc-mutex  the same core, every shard_region_* call behind one
//                     global std::mutex: the shape of ArceOS's allocator
//                     (one lock around the whole allocator), which is where
//                     the seed started. Benchmark-only.
//   mimalloc          mimalloc's fixed-region mode (2.0.9 API):
//                     mi_manage_os_memory_ex(pool, exclusive) gives an arena
//                     id, and every thread allocates from its own
//                     mi_heap_new_in_arena(id); frees go to mi_free (from any
//                     thread). Only when built with mimalloc.h/libmimalloc.
//
// The pool is one 512 MiB anonymous mapping (MAP_NORESERVE, so only touched
// pages count), aligned to 64 MiB, handed over once, as ArceOS does with its
// static 512 MiB array. Every allocation a workload makes, including those of
// its std containers, goes through the variant; the summary line counts
// allocations that landed outside the pool (`outside=`; must be 0: a
// non-zero count means the allocator fell back to OS memory).
//
// WORKLOAD (see bench/README.md, "Region workloads"):
//   basic         growing vector of 3M u32; 30000 x 64 and 7500 x 520-word
//                 vectors filled, sorted, freed in random order; a sorted map
//                 under churn (50000 steps); a fragmentation pattern.
//   align         50000 random alloc/free steps, sizes 1 B..64 KiB, alignments
//                 1..128, every address checked.
//   glibc_bench   glibc's bench-malloc-simple (36M malloc/free pairs).
//   multi_thread  10 lanes x 1000 slots, sizes 2..4096 B, 100 turns of two
//                 phases; every phase runs on freshly created threads, so
//                 most frees are remote and hit heaps whose thread has exited.
//
// threads: worker threads (only multi_thread uses more than one: the 10
// lanes of a phase are spread over `threads` fresh threads; 10 is the
// original test). scale multiplies the amount of work (1.0 = the original
// test's size).
//
// Output: one line, e.g.
//   region-basic: variant=shardalloc threads=1 scale=1 ops=... time=0.301s
//   mops/s=... vmhwm_kib=... outside=0
// Exit status as the other workloads: 3 on corrupted data, 4 when the
// allocator runs out of memory, 2 on bad arguments.
#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <new>
#include <random>

#include "common.hpp"
#include "shardalloc/region.h"

#ifdef SHARDALLOC_BENCH_HAVE_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

constexpr std::size_t kPoolSize = std::size_t{512} << 20;
constexpr std::size_t kPoolAlign = std::size_t{64} << 20;

unsigned char* g_pool = nullptr;
std::atomic<std::uint64_t> g_outside{0};
std::atomic<std::uint64_t> g_allocs{0};

inline void note_block(void* p, std::size_t size, std::size_t align) {
  auto a = reinterpret_cast<std::uintptr_t>(p);
  auto b = reinterpret_cast<std::uintptr_t>(g_pool);
  if (a < b || a + size > b + kPoolSize) g_outside.fetch_add(1, std::memory_order_relaxed);
  if (align > 1 && (a & (align - 1)) != 0) bench::corrupt("misaligned block", p, size);
}

unsigned char* map_pool() {
  void* m = mmap(nullptr, kPoolSize + kPoolAlign, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) bench::die(bench::kExitNoMemory, "mmap of the 512 MiB pool failed");
  auto a = reinterpret_cast<std::uintptr_t>(m);
  return reinterpret_cast<unsigned char*>((a + kPoolAlign - 1) & ~(kPoolAlign - 1));
}

// ------------------------------------------------------------ the variants

// Each backend: static init(), alloc(size, align) (never NULL: dies with
// exit 4), dealloc(p, size, align), name.

struct ShardRegion {
  static inline shard_region* r = nullptr;
  static constexpr const char* name = "shardalloc";
  static void init() {
    if (shard_region_init(&r, g_pool, kPoolSize) != SHARD_OK)
      bench::die(2, "shard_region_init failed");
  }
  static void* alloc(std::size_t size, std::size_t align) {
    void* p = nullptr;
    if (shard_region_alloc(r, size, align, &p) != SHARD_OK)
      bench::die(bench::kExitNoMemory, "region alloc failed", nullptr, size);
    return p;
  }
  static void dealloc(void* p, std::size_t size, std::size_t align) {
    if (shard_region_dealloc(r, p, size, align) != SHARD_OK)
      bench::corrupt("region dealloc refused the block", p, size);
  }
};

struct ShardRegionMutex {
  static inline shard_region* r = nullptr;
  static inline std::mutex mu;
  static constexpr const char* name = "shardalloc-mutex";
  static void init() {
    std::lock_guard<std::mutex> lk(mu);
    if (shard_region_init(&r, g_pool, kPoolSize) != SHARD_OK)
      bench::die(2, "shard_region_init failed");
  }
  static void* alloc(std::size_t size, std::size_t align) {
    void* p = nullptr;
    shard_status s;
    {
      std::lock_guard<std::mutex> lk(mu);
      s = shard_region_alloc(r, size, align, &p);
    }
    if (s != SHARD_OK) bench::die(bench::kExitNoMemory, "region alloc failed", nullptr, size);
    return p;
  }
  static void dealloc(void* p, std::size_t size, std::size_t align) {
    shard_status s;
    {
      std::lock_guard<std::mutex> lk(mu);
      s = shard_region_dealloc(r, p, size, align);
    }
    if (s != SHARD_OK) bench::corrupt("region dealloc refused the block", p, size);
  }
};

#ifdef SHARDALLOC_BENCH_HAVE_MIMALLOC
struct MiRegion {
  static inline mi_arena_id_t arena = 0;
  static constexpr const char* name = "mimalloc";
  // One heap per thread, created on the thread's first allocation. mimalloc
  // deletes a thread's extra heaps when the thread exits (their live blocks
  // move to the thread's backing heap, whose segments are then abandoned and
  // later reclaimed by a heap that may use this arena).
  static inline thread_local mi_heap_t* heap = nullptr;
  static void init() {
    if (!mi_manage_os_memory_ex(g_pool, kPoolSize, /*is_committed=*/true, /*is_large=*/false,
                                /*is_zero=*/true,
                                /*numa_node=*/-1, /*exclusive=*/true, &arena))
      bench::die(2, "mi_manage_os_memory_ex failed");
  }
  static mi_heap_t* my_heap() {
    mi_heap_t* h = heap;
    if (__builtin_expect(h == nullptr, 0)) {
      h = mi_heap_new_in_arena(arena);
      if (h == nullptr) bench::die(bench::kExitNoMemory, "mi_heap_new_in_arena failed");
      heap = h;
    }
    return h;
  }
  static void* alloc(std::size_t size, std::size_t align) {
    mi_heap_t* h = my_heap();
    // mi_heap_malloc only guarantees word alignment for blocks below 16 bytes.
    void* p =
        align <= sizeof(void*) ? mi_heap_malloc(h, size) : mi_heap_malloc_aligned(h, size, align);
    if (p == nullptr)
      bench::die(bench::kExitNoMemory, "mimalloc arena alloc failed", nullptr, size);
    return p;
  }
  static void dealloc(void* p, std::size_t /*size*/, std::size_t /*align*/) { mi_free(p); }
};
#endif

// Allocation entry points the workloads use (counting + checks around B).
template <class B>
inline void* ralloc(std::size_t size, std::size_t align) {
  void* p = B::alloc(size, align);
  note_block(p, size ? size : 1, align);
  return p;
}
template <class B>
inline void rfree(void* p, std::size_t size, std::size_t align) {
  B::dealloc(p, size, align);
}

// A std allocator over the variant: what Rust's global allocator is to the
// original tests' Vec, String and BTreeMap.
template <class T, class B>
struct Alloc {
  using value_type = T;
  Alloc() = default;
  template <class U>
  Alloc(const Alloc<U, B>&) {}
  template <class U>
  struct rebind {
    using other = Alloc<U, B>;
  };
  T* allocate(std::size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return static_cast<T*>(ralloc<B>(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t n) { rfree<B>(p, n * sizeof(T), alignof(T)); }
  template <class U>
  bool operator==(const Alloc<U, B>&) const {
    return true;
  }
};

// ------------------------------------------------------------ workloads

template <class B>
using Vec = std::vector<std::uint64_t, Alloc<std::uint64_t, B>>;

// basic: the ArceOS "basic" test.
template <class B>
std::uint64_t basic(double scale) {
  bench::Rng rng(42);
  // 1. push random u32 into a growing vector.
  {
    const std::uint64_t n = bench::scaled(3e6, scale);
    std::vector<std::uint32_t, Alloc<std::uint32_t, B>> v;
    for (std::uint64_t i = 0; i < n; ++i) v.push_back(static_cast<std::uint32_t>(rng.next()));
    bench::Rng again(42);
    for (std::uint64_t i = 0; i < n; ++i)
      if (v[i] != static_cast<std::uint32_t>(again.next()))
        bench::corrupt("growing vector corrupt", v.data(), i);
  }
  // 2. vectors of 64 and 520 words: fill, sort, check, free in random order.
  {
    const std::uint64_t n64 = bench::scaled(30000, scale), n520 = bench::scaled(7500, scale);
    std::vector<Vec<B>, Alloc<Vec<B>, B>> vs;
    vs.reserve(n64 + n520);
    for (std::uint64_t i = 0; i < n64 + n520; ++i) {
      Vec<B> w(i < n64 ? 64 : 520);
      for (auto& x : w) x = rng.next();
      std::sort(w.begin(), w.end());
      if (!std::is_sorted(w.begin(), w.end())) bench::corrupt("sort failed", w.data(), w.size());
      vs.push_back(std::move(w));
    }
    std::vector<std::uint32_t, Alloc<std::uint32_t, B>> order(vs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::uint32_t>(i);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    for (std::uint32_t i : order) {
      if (vs[i].size() != (i < n64 ? 64u : 520u) || !std::is_sorted(vs[i].begin(), vs[i].end()))
        bench::corrupt("sorted vector corrupt", vs[i].data(), vs[i].size());
      Vec<B>().swap(vs[i]);
    }
  }
  // 3. sorted map: 20% pop-first, else insert "key_{v}" -> v. Keys are
  //    heap strings (a vector of chars, so even short keys allocate, as
  //    Rust's String does), 14-22 bytes.
  {
    using Key = std::vector<char, Alloc<char, B>>;
    using Pair = std::pair<const Key, std::uint32_t>;
    std::map<Key, std::uint32_t, std::less<Key>, Alloc<Pair, B>> m;
    const std::uint64_t steps = bench::scaled(50000, scale);
    char buf[32];
    for (std::uint64_t s = 0; s < steps; ++s) {
      const std::uint64_t x = rng.next();
      if (x % 5 == 0) {
        if (!m.empty()) m.erase(m.begin());
      } else {
        const auto v = static_cast<std::uint32_t>(x >> 32);
        const int len = std::snprintf(buf, sizeof buf, "key_%u", v);
        m.emplace(Key(buf, buf + len), v);
      }
    }
    for (const auto& [k, v] : m) {
      const int len = std::snprintf(buf, sizeof buf, "key_%u", v);
      if (k.size() != static_cast<std::size_t>(len) || std::memcmp(k.data(), buf, k.size()) != 0)
        bench::corrupt("map key corrupt", k.data(), k.size());
    }
  }
  // 4. fragmentation: 40000 vectors alternating 32/64 words, free every odd
  //    one, then allocate 10000 vectors of 64 words.
  {
    const std::uint64_t n = bench::scaled(40000, scale) & ~std::uint64_t{1};
    std::vector<Vec<B>, Alloc<Vec<B>, B>> vs;
    vs.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i)
      vs.emplace_back(i % 2 ? 64 : 32, i * 0x9e3779b97f4a7c15ULL);
    for (std::uint64_t i = 1; i < n; i += 2) Vec<B>().swap(vs[i]);
    std::vector<Vec<B>, Alloc<Vec<B>, B>> more;
    const std::uint64_t m = bench::scaled(10000, scale);
    for (std::uint64_t i = 0; i < m; ++i) more.emplace_back(64, ~i);
    for (std::uint64_t i = 0; i < n; i += 2)
      for (std::uint64_t w : vs[i])
        if (w != i * 0x9e3779b97f4a7c15ULL)
          bench::corrupt("fragmentation vector corrupt", vs[i].data(), i);
    for (std::uint64_t i = 0; i < m; ++i)
      for (std::uint64_t w : more[i])
        if (w != ~i) bench::corrupt("fragmentation vector corrupt", more[i].data(), i);
  }
  return g_allocs.load();
}

// align: random sizes 1 B..64 KiB with alignments 1..128. The live set
// grows to about 200 MiB at the original 50000 steps, so a scale above 1
// repeats the whole test round(scale) times instead of making it longer.
template <class B>
std::uint64_t align_round(double scale, std::uint64_t round) {
  struct Live {
    unsigned char* p;
    std::size_t size, align;
  };
  std::vector<Live, Alloc<Live, B>> live;
  bench::Rng rng(7 + round);
  const std::uint64_t steps = bench::scaled(50000, scale);
  std::uint64_t ops = 0;
  for (std::uint64_t s = 0; s < steps; ++s) {
    const std::uint64_t r = rng.next();
    if (live.empty() || r % 3 != 0) {
      const auto r32 = static_cast<std::uint32_t>(r >> 32);
      std::size_t size =
          static_cast<std::size_t>(static_cast<double>(std::size_t{1} << (r32 & 15)) *
                                   (1.0 + static_cast<double>(r32) / 4294967296.0));
      if (size > 65536) size = 65536;
      const std::size_t align = std::size_t{1} << ((r >> 8) & 7);
      auto* p = static_cast<unsigned char*>(ralloc<B>(size, align));
      const auto tag = static_cast<unsigned char>(size * 31 + align);
      p[0] = tag;
      p[size - 1] = tag;
      live.push_back({p, size, align});
      ++ops;
    } else {
      const std::size_t i = rng.below(live.size());
      Live l = live[i];
      live[i] = live.back();
      live.pop_back();
      const auto tag = static_cast<unsigned char>(l.size * 31 + l.align);
      if (l.p[0] != tag || l.p[l.size - 1] != tag)
        bench::corrupt("aligned block corrupt", l.p, l.size);
      rfree<B>(l.p, l.size, l.align);
    }
  }
  for (const Live& l : live) rfree<B>(l.p, l.size, l.align);
  return ops;
}

template <class B>
std::uint64_t align_test(double scale) {
  const std::uint64_t rounds = scale > 1.0 ? bench::scaled(1.0, scale) : 1;
  std::uint64_t ops = 0;
  for (std::uint64_t round = 0; round < rounds; ++round)
    ops += align_round<B>(scale > 1.0 ? 1.0 : scale, round);
  return ops;
}

// glibc_bench: bench-malloc-simple (as bench-glibc-simple, over the region).
template <class B>
std::uint64_t glibc_bench(int threads, double scale) {
  static constexpr std::size_t kSizes[] = {16, 32, 64};
  static constexpr std::size_t kBatches[] = {25, 100, 400, 1600};
  std::atomic<std::uint64_t> ops{0};
  bench::run_threads(threads, [&](int t) {
    unsigned char* blocks[1600];
    std::uint64_t n_ops = 0;
    for (std::size_t size : kSizes) {
      for (std::size_t n : kBatches) {
        const std::uint64_t iters =
            bench::share(bench::scaled(1e6 / static_cast<double>(n), scale), threads, t);
        for (int run = 0; run < 3; ++run) {
          for (std::uint64_t it = 0; it < iters; ++it) {
            const auto fill = static_cast<unsigned char>(it + size + n);
            for (std::size_t i = 0; i < n; ++i) {
              blocks[i] = static_cast<unsigned char*>(ralloc<B>(size, 1));
              std::memset(blocks[i], fill, size);
            }
            auto release = [&](std::size_t i) {
              if (blocks[i][0] != fill || blocks[i][size - 1] != fill)
                bench::corrupt("block corrupt", blocks[i], size);
              rfree<B>(blocks[i], size, 1);
            };
            for (std::size_t i = 0; i < n / 2; ++i) release(i);  // FIFO
            for (std::size_t i = n; i-- > n / 2;) release(i);    // LIFO
            n_ops += n;
          }
        }
      }
    }
    ops.fetch_add(n_ops, std::memory_order_relaxed);
  });
  return ops.load();
}

// multi_thread: 10 lanes of 1000 slots; slot j*10+t belongs to lane t.
//   Phase A (lane t): fill lane t's empty slots, then free its j in
//     [500, 1000) (from turn 1 on, blocks a phase-B thread allocated).
//   Phase B (lane t): allocate lane t's j in [500, 1000), then free lane
//     (t+1)%10's j in [0, 500) (allocated by a phase-A thread, now exited).
// Each phase runs on `threads` fresh threads (lane t on thread t % threads).
template <class B>
std::uint64_t multi_thread(int threads, double scale) {
  constexpr unsigned kLanes = 10, kPerLane = 1000;
  struct Slot {
    unsigned char* p = nullptr;
    std::uint32_t size = 0;
    std::uint32_t align = 0;
  };
  std::vector<Slot, Alloc<Slot, B>> slots(kLanes * kPerLane);
  const std::uint64_t turns = bench::scaled(100, scale);
  std::atomic<std::uint64_t> ops{0};

  auto fill = [](Slot& s, bench::Rng& rng) {
    s.size = static_cast<std::uint32_t>(2 + rng.below(4095));
    s.align = 1u << rng.below(4);
    s.p = static_cast<unsigned char*>(ralloc<B>(s.size, s.align));
    s.p[0] = static_cast<unsigned char>(s.size);
    s.p[s.size - 1] = static_cast<unsigned char>(s.size);
  };
  auto drop = [](Slot& s) {
    if (s.p == nullptr) return;
    if (s.p[0] != static_cast<unsigned char>(s.size) ||
        s.p[s.size - 1] != static_cast<unsigned char>(s.size))
      bench::corrupt("slot corrupt", s.p, s.size);
    rfree<B>(s.p, s.size, s.align);
    s.p = nullptr;
  };
  auto phase = [&](auto&& lane_fn) {
    bench::run_threads(threads, [&](int t) {
      for (unsigned lane = static_cast<unsigned>(t); lane < kLanes;
           lane += static_cast<unsigned>(threads))
        lane_fn(lane);
    });
  };
  for (std::uint64_t turn = 0; turn < turns; ++turn) {
    phase([&](unsigned t) {
      bench::Rng rng(turn * 1000 + t);
      std::uint64_t n = 0;
      for (unsigned j = 0; j < kPerLane; ++j) {
        Slot& s = slots[j * kLanes + t];
        if (s.p == nullptr) {
          fill(s, rng);
          ++n;
        }
      }
      for (unsigned j = kPerLane / 2; j < kPerLane; ++j) drop(slots[j * kLanes + t]);
      ops.fetch_add(n, std::memory_order_relaxed);
    });
    phase([&](unsigned t) {
      bench::Rng rng(turn * 1000 + 500 + t);
      for (unsigned j = kPerLane / 2; j < kPerLane; ++j) fill(slots[j * kLanes + t], rng);
      const unsigned other = (t + 1) % kLanes;
      for (unsigned j = 0; j < kPerLane / 2; ++j) drop(slots[j * kLanes + other]);
      ops.fetch_add(kPerLane / 2, std::memory_order_relaxed);
    });
  }
  for (Slot& s : slots) drop(s);
  return ops.load();
}

template <class B>
int run(const std::string& workload, int threads, double scale) {
  B::init();
  bench::Timer timer;
  std::uint64_t ops = 0;
  if (workload == "basic") {
    ops = basic<B>(scale);
  } else if (workload == "align") {
    ops = align_test<B>(scale);
  } else if (workload == "glibc_bench") {
    ops = glibc_bench<B>(threads, scale);
  } else if (workload == "multi_thread") {
    ops = multi_thread<B>(threads, scale);
  } else {
    std::fprintf(stderr, "bench-region: unknown workload '%s'\n", workload.c_str());
    return bench::kExitUsage;
  }
  const double secs = timer.seconds();
  std::printf(
      "region-%s: variant=%s threads=%d scale=%g ops=%llu time=%.3fs mops/s=%.2f vmhwm_kib=%ld "
      "outside=%llu\n",
      workload.c_str(), B::name, threads, scale, static_cast<unsigned long long>(ops), secs,
      secs > 0 ? static_cast<double>(ops) / secs / 1e6 : 0.0, bench::peak_rss_kib(),
      static_cast<unsigned long long>(g_outside.load()));
  if (g_outside.load() != 0) {
    std::fprintf(stderr, "bench-region: %llu allocation(s) outside the region\n",
                 static_cast<unsigned long long>(g_outside.load()));
    return 5;
  }
  return 0;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench-region VARIANT WORKLOAD [threads] [scale]\n"
               "  VARIANT:  shardalloc | shardalloc-mutex | mimalloc%s\n"
               "  WORKLOAD: basic | align | glibc_bench | multi_thread\n",
#ifdef SHARDALLOC_BENCH_HAVE_MIMALLOC
               ""
#else
               " (mimalloc: not built, mimalloc.h missing)"
#endif
  );
  std::exit(bench::kExitUsage);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--variants") == 0) {
    // the variants this build has (bench/run asks before running)
#ifdef SHARDALLOC_BENCH_HAVE_MIMALLOC
    std::printf("shardalloc shardalloc-mutex mimalloc\n");
#else
    std::printf("shardalloc shardalloc-mutex\n");
#endif
    return 0;
  }
  if (argc < 3) usage();
  const std::string variant = argv[1], workload = argv[2];
  // The remaining [threads] [scale] are parsed like every other workload;
  // threads defaults to 1 here (the original tests are single-threaded but
  // for multi_thread, whose original has 10).
  char* rest[4] = {argv[0], nullptr, nullptr, nullptr};
  int n = 1;
  for (int i = 3; i < argc && n < 3; ++i) rest[n++] = argv[i];
  auto a =
      bench::parse_args(n, rest, "bench-region: the ArceOS allocator tests over a fixed region");
  if (argc < 4) a.threads = workload == "multi_thread" ? 10 : 1;
  if (argc > 5) usage();

  g_pool = map_pool();
  if (variant == "shardalloc") return run<ShardRegion>(workload, a.threads, a.scale);
  if (variant == "shardalloc-mutex") return run<ShardRegionMutex>(workload, a.threads, a.scale);
#ifdef SHARDALLOC_BENCH_HAVE_MIMALLOC
  if (variant == "mimalloc") return run<MiRegion>(workload, a.threads, a.scale);
#else
  if (variant == "mimalloc") {
    std::fprintf(stderr,
                 "bench-region: built without mimalloc (mimalloc.h / libmimalloc not found)\n");
    return 127;
  }
#endif
  usage();
}
