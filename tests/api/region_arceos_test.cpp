// Our own ports of the ArceOS allocator test suite (basic, align, mi_test,
// malloc_large, glibc_bench, multi_thread), run over the region API.
//
// Like ArceOS, one big pool is initialised once per process and every test
// allocates from it. Each test starts from a warmed-up state (the main thread
// and 10 concurrent threads have used the region once, so heap records exist)
// and must end with everything freed: used_bytes() == 0 and total/available
// exactly as they were when the test started.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr size_t kPoolSize = 512 * MiB;

struct Pool {
  unsigned char* base = nullptr;
  shard_region* region = nullptr;
  RegionStats after_init{};
};

Pool& pool() {
  static Pool p = [] {
    Pool q;
    q.base = static_cast<unsigned char*>(map_memory(kPoolSize));
    shard_status s = shard_region_init(&q.region, q.base, kPoolSize);
    if (s != SHARD_OK || q.region == nullptr) {
      std::fprintf(stderr, "shard_region_init(512 MiB) failed: %s\n", status_name(s));
      std::abort();
    }
    q.after_init = stats(q.region);
    return q;
  }();
  return p;
}

bool in_pool(const void* p, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p);
  auto b = reinterpret_cast<uintptr_t>(pool().base);
  return a >= b && a + n <= b + kPoolSize && a + n >= a;
}

// Failures inside allocator callbacks / worker threads, checked by TearDown.
std::atomic<size_t> g_alloc_failures{0};
std::atomic<size_t> g_dealloc_failures{0};
std::atomic<size_t> g_bad_blocks{0};  // misaligned or outside the pool

// Minimal std allocator over the region, so std containers run on it.
template <class T>
struct RegionAllocator {
  using value_type = T;
  shard_region* r;
  explicit RegionAllocator(shard_region* rr) : r(rr) {}
  template <class U>
  RegionAllocator(const RegionAllocator<U>& o) : r(o.r) {}
  T* allocate(size_t n) {
    void* p = nullptr;
    shard_status s = shard_region_alloc(r, n * sizeof(T), alignof(T), &p);
    if (s != SHARD_OK) {
      g_alloc_failures++;
      throw std::bad_alloc();
    }
    if (!is_aligned(p, alignof(T)) || !in_pool(p, n * sizeof(T))) g_bad_blocks++;
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (shard_region_dealloc(r, p, n * sizeof(T), alignof(T)) != SHARD_OK) g_dealloc_failures++;
  }
  template <class U>
  bool operator==(const RegionAllocator<U>& o) const {
    return r == o.r;
  }
};

template <class T>
using RVec = std::vector<T, RegionAllocator<T>>;
using RString = std::basic_string<char, std::char_traits<char>, RegionAllocator<char>>;

// Makes the main thread and `threads` concurrent threads use the region once,
// so that their heap records exist before a test takes its baseline.
void warm_up(shard_region* r, unsigned threads) {
  auto touch = [r] {
    void* p = nullptr;
    if (shard_region_alloc(r, 16, 8, &p) != SHARD_OK) {
      g_alloc_failures++;
      return;
    }
    if (shard_region_dealloc(r, p, 16, 8) != SHARD_OK) g_dealloc_failures++;
  };
  touch();
  std::barrier sync(threads);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      sync.arrive_and_wait();  // all alive at once
      touch();
      sync.arrive_and_wait();
    });
  for (auto& t : ts) t.join();
}

class ArceosRegion : public ::testing::Test {
 protected:
  shard_region* r = nullptr;
  RegionStats before{};
  std::chrono::steady_clock::time_point t0;

  void SetUp() override {
    r = pool().region;
    g_alloc_failures = 0;
    g_dealloc_failures = 0;
    g_bad_blocks = 0;
    warm_up(r, 10);
    before = stats(r);
    ASSERT_EQ(g_alloc_failures.load(), 0u);
    ASSERT_EQ(g_dealloc_failures.load(), 0u);
    ASSERT_EQ(before.used, 0u) << "a previous test left blocks behind";
    ASSERT_EQ(before.total, kPoolSize);
    ASSERT_LE(before.used + before.available, before.total);
    t0 = std::chrono::steady_clock::now();
  }

  void TearDown() override {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    RecordProperty("seconds", std::to_string(secs));
    EXPECT_EQ(g_alloc_failures.load(), 0u) << "allocations failed inside containers or threads";
    EXPECT_EQ(g_dealloc_failures.load(), 0u) << "deallocations of live blocks were refused";
    EXPECT_EQ(g_bad_blocks.load(), 0u) << "blocks misaligned or outside the pool";
    RegionStats after = stats(r);
    EXPECT_EQ(after.used, 0u) << "everything was freed";
    EXPECT_EQ(after.total, before.total);
    EXPECT_EQ(after.available, before.available)
        << "available_bytes must return to its value before the test (" << before.available
        << "); right after init it was " << pool().after_init.available;
    EXPECT_LE(after.used + after.available, after.total);
  }
};

// ---------------------------------------------------------------------------
// basic: growing vector, many sorted vectors freed in random order, a sorted
// map under churn, fragmentation.

TEST_F(ArceosRegion, Basic) {
  RegionAllocator<char> ra(r);
  // 1. 3M random u32 into a growing vector.
  {
    const size_t n = 3'000'000;
    RVec<uint32_t> v{RegionAllocator<uint32_t>(ra)};
    Rng rng(1);
    for (size_t i = 0; i < n; ++i) v.push_back(uint32_t(rng.next()));
    ASSERT_EQ(v.size(), n);
    Rng again(1);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += v[i] != uint32_t(again.next());
    EXPECT_EQ(bad, 0u) << "vector contents changed while it grew";
    EXPECT_GE(shard_region_used_bytes(r), n * sizeof(uint32_t));
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);

  // 2. 30000 vectors of 64 words and 7500 of 520 words: fill, sort, check,
  //    free in random order (checking each is still sorted when freed).
  {
    using Words = RVec<uint64_t>;
    RVec<Words> vs{RegionAllocator<Words>(ra)};
    vs.reserve(37500);
    Rng rng(2);
    for (size_t i = 0; i < 37500; ++i) {
      size_t len = i < 30000 ? 64 : 520;
      Words w{RegionAllocator<uint64_t>(ra)};
      w.reserve(len);
      for (size_t k = 0; k < len; ++k) w.push_back(rng.next());
      std::sort(w.begin(), w.end());
      ASSERT_TRUE(std::is_sorted(w.begin(), w.end()));
      vs.push_back(std::move(w));
    }
    std::vector<size_t> order(vs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
    size_t unsorted = 0, wrong_len = 0;
    for (size_t i : order) {
      Words& w = vs[i];
      wrong_len += w.size() != (i < 30000 ? 64u : 520u);
      unsorted += !std::is_sorted(w.begin(), w.end());
      Words(RegionAllocator<uint64_t>(ra)).swap(w);  // frees w's buffer
    }
    EXPECT_EQ(unsorted, 0u);
    EXPECT_EQ(wrong_len, 0u);
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);

  // 3. Sorted map, 50000 steps: 20% pop-first, else insert "key_{v}" -> v.
  //    Keys are padded past the std::string small-buffer limit so every key
  //    allocates from the region, as Rust's String does in the original.
  {
    using Pair = std::pair<const RString, uint32_t>;
    std::map<RString, uint32_t, std::less<>, RegionAllocator<Pair>> m{RegionAllocator<Pair>(ra)};
    std::map<std::string, uint32_t> ref;
    Rng rng(4);
    for (size_t step = 0; step < 50000; ++step) {
      uint64_t x = rng.next();
      if (x % 5 == 0) {
        if (!m.empty()) {
          ASSERT_FALSE(ref.empty());
          ASSERT_EQ(std::string(m.begin()->first.c_str()), ref.begin()->first);
          m.erase(m.begin());
          ref.erase(ref.begin());
        }
      } else {
        uint32_t v = uint32_t(x >> 32);
        std::string k = "key_" + std::to_string(v) + "_padding_beyond_sso";
        m.emplace(RString(k.c_str(), ra), v);
        ref.emplace(k, v);
      }
    }
    ASSERT_EQ(m.size(), ref.size());
    auto it = ref.begin();
    size_t bad = 0;
    for (const auto& [k, v] : m) {
      std::string expect = "key_" + std::to_string(v) + "_padding_beyond_sso";
      bad += std::string(k.c_str()) != expect || it->first != expect || it->second != v;
      ++it;
    }
    EXPECT_EQ(bad, 0u) << "map keys / values corrupted";
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);

  // 4. Fragmentation: 40000 vectors alternating 32/64 words, free every odd
  //    one, then 10000 vectors of 64 words; all contents checked at the end.
  {
    using Words = RVec<uint64_t>;
    RVec<Words> vs{RegionAllocator<Words>(ra)};
    for (size_t i = 0; i < 40000; ++i) {
      Words w(i % 2 ? 64 : 32, uint64_t(i) * 0x9e3779b97f4a7c15ull, RegionAllocator<uint64_t>(ra));
      vs.push_back(std::move(w));
    }
    for (size_t i = 1; i < vs.size(); i += 2) Words(RegionAllocator<uint64_t>(ra)).swap(vs[i]);
    RVec<Words> more{RegionAllocator<Words>(ra)};
    for (size_t i = 0; i < 10000; ++i)
      more.emplace_back(64, ~uint64_t(i), RegionAllocator<uint64_t>(ra));
    size_t bad = 0;
    for (size_t i = 0; i < vs.size(); i += 2) {
      bad += vs[i].size() != 32;
      for (uint64_t w : vs[i]) bad += w != uint64_t(i) * 0x9e3779b97f4a7c15ull;
    }
    for (size_t i = 0; i < more.size(); ++i)
      for (uint64_t w : more[i]) bad += w != ~uint64_t(i);
    EXPECT_EQ(bad, 0u) << "fragmentation phase corrupted vectors";
  }
}

// ---------------------------------------------------------------------------
// align: 50000 random steps of alloc (2/3) or free (1/3), sizes 1 B..128 KiB
// (2^k..2^(k+1)), every block aligned, filled and checked when freed; used
// bytes checked against the live sum every 1000 steps.

struct Live {
  void* p;
  size_t size;
  size_t align;
  uint64_t seed;
};

void run_align(shard_region* r, uint64_t seed, bool extended) {
  Rng rng(seed);
  std::vector<Live> live;
  size_t live_sum = 0, bad_content = 0;
  for (size_t step = 0; step < 50000; ++step) {
    uint64_t x = rng.next();
    if (x % 3 != 0 || live.empty()) {
      size_t base = size_t{1} << (x & 15);
      size_t size = base + size_t((uint64_t(base) * (x >> 32)) >> 32);
      // ArceOS: align 1 << (x & 7) (1..128). Extended: 1..64 KiB, from other bits.
      size_t align = extended ? size_t{1} << ((x >> 20) % 17) : size_t{1} << (x & 7);
      void* p = nullptr;
      shard_status s = shard_region_alloc(r, size, align, &p);
      ASSERT_EQ(s, SHARD_OK) << "step " << step << " size " << size << " align " << align;
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(is_aligned(p, align)) << p << " not aligned to " << align;
      ASSERT_TRUE(in_pool(p, size)) << p << " outside the pool";
      fill_pattern(p, size, step);
      live.push_back({p, size, align, step});
      live_sum += size;
    } else {
      size_t i = rng.below(live.size());
      Live l = live[i];
      live[i] = live.back();
      live.pop_back();
      bad_content += check_pattern(l.p, l.size, l.seed) != SIZE_MAX;
      ASSERT_EQ(shard_region_dealloc(r, l.p, l.size, l.align), SHARD_OK);
      live_sum -= l.size;
    }
    if (step % 1000 == 0) {
      RegionStats s = stats(r);
      ASSERT_EQ(s.used, live_sum) << "used_bytes != sum of live sizes at step " << step;
      ASSERT_LE(s.used + s.available, s.total);
    }
  }
  for (const Live& l : live) {
    bad_content += check_pattern(l.p, l.size, l.seed) != SIZE_MAX;
    ASSERT_EQ(shard_region_dealloc(r, l.p, l.size, l.align), SHARD_OK);
  }
  EXPECT_EQ(bad_content, 0u) << "blocks whose contents changed while live";
}

TEST_F(ArceosRegion, Align) { run_align(r, 5, false); }

TEST_F(ArceosRegion, AlignExtendedTo64KiB) { run_align(r, 6, true); }

// ---------------------------------------------------------------------------
// mi_test: the small mimalloc smoke sequence, then 1000 x (2 MiB, write every
// byte, free).

TEST_F(ArceosRegion, MiTest) {
  void *a = nullptr, *b = nullptr;
  ASSERT_EQ(shard_region_alloc(r, 16, 8, &a), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(r, 1000000, 8, &b), SHARD_OK);
  std::memset(a, 1, 16);
  std::memset(b, 2, 1000000);
  EXPECT_EQ(shard_region_used_bytes(r), 16u + 1000000u);
  ASSERT_EQ(shard_region_dealloc(r, a, 16, 8), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, b, 1000000, 8), SHARD_OK);

  ASSERT_EQ(shard_region_alloc(r, 16, 8, &a), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(r, 16, 8, &b), SHARD_OK);
  EXPECT_NE(a, b);
  ASSERT_EQ(shard_region_dealloc(r, a, 16, 8), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, b, 16, 8), SHARD_OK);

  ASSERT_EQ(shard_region_alloc(r, 64, 8, &a), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(r, 160, 8, &b), SHARD_OK);
  fill_pattern(a, 64, 1);
  fill_pattern(b, 160, 2);
  EXPECT_EQ(check_pattern(a, 64, 1), SIZE_MAX);
  ASSERT_EQ(shard_region_dealloc(r, b, 160, 8), SHARD_OK);
  EXPECT_EQ(check_pattern(a, 64, 1), SIZE_MAX);
  ASSERT_EQ(shard_region_dealloc(r, a, 64, 8), SHARD_OK);

  const size_t rounds = scaled(1000, sanitizer_factor(), 50);
  const size_t n = 2 * MiB;
  size_t bad = 0;
  for (size_t i = 0; i < rounds; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, n, 8, &p), SHARD_OK) << "round " << i;
    ASSERT_TRUE(in_pool(p, n));
    auto* c = static_cast<unsigned char*>(p);
    std::memset(c, int(i & 0xff), n);
    bad += c[0] != (i & 0xff) || c[n / 2] != (i & 0xff) || c[n - 1] != (i & 0xff);
    ASSERT_EQ(shard_region_dealloc(r, p, n, 8), SHARD_OK);
  }
  EXPECT_EQ(bad, 0u);
}

// ---------------------------------------------------------------------------
// malloc_large: 10 live buffers; 100000 times replace a random one by a
// random size in [2, 15) MiB. Only the first and last words are touched.

TEST_F(ArceosRegion, MallocLarge) {
  struct Buf {
    unsigned char* p;
    size_t size;
  };
  auto stamp = [](const Buf& b) {
    uint64_t v = pattern_base(b.p, b.size, 0);
    std::memcpy(b.p, &v, 8);
    std::memcpy(b.p + b.size - 8, &v, 8);
  };
  auto stamped = [](const Buf& b) {
    uint64_t v = pattern_base(b.p, b.size, 0), x, y;
    std::memcpy(&x, b.p, 8);
    std::memcpy(&y, b.p + b.size - 8, 8);
    return x == v && y == v;
  };
  Buf bufs[10];
  size_t live_sum = 0;
  for (auto& b : bufs) {
    b.size = 2 * MiB;
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, b.size, 8, &p), SHARD_OK);
    b.p = static_cast<unsigned char*>(p);
    stamp(b);
    live_sum += b.size;
  }
  Rng rng(7);
  const size_t steps = scaled(100000, sanitizer_factor(), 1000);
  size_t bad = 0;
  for (size_t i = 0; i < steps; ++i) {
    Buf& b = bufs[rng.below(10)];
    bad += !stamped(b);
    ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, 8), SHARD_OK) << "step " << i;
    live_sum -= b.size;
    b.size = 2 * MiB + rng.below(13 * MiB);
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, b.size, 8, &p), SHARD_OK) << "step " << i << " size " << b.size;
    ASSERT_TRUE(in_pool(p, b.size));
    b.p = static_cast<unsigned char*>(p);
    stamp(b);
    live_sum += b.size;
    if (i % 4096 == 0) {
      ASSERT_EQ(shard_region_used_bytes(r), live_sum);
    }
  }
  for (auto& b : bufs) {
    bad += !stamped(b);
    ASSERT_EQ(shard_region_dealloc(r, b.p, b.size, 8), SHARD_OK);
  }
  EXPECT_EQ(bad, 0u) << "large buffers overwritten while live";
}

// ---------------------------------------------------------------------------
// glibc_bench (bench-malloc-simple), reduced 10x for CI: block sizes 16, 32,
// 64; batches of n in {25, 100, 400, 1600}; 1e5/n iterations of "allocate n
// blocks, write every byte, free the first half FIFO and the second half
// LIFO"; three runs per n.

TEST_F(ArceosRegion, GlibcBench) {
  const size_t total_blocks = scaled(100000, sanitizer_factor(), 5000);
  std::vector<unsigned char*> blocks;
  size_t bad = 0;
  for (size_t size : {16u, 32u, 64u}) {
    for (size_t n : {25u, 100u, 400u, 1600u}) {
      blocks.assign(n, nullptr);
      for (int run = 0; run < 3; ++run) {
        const size_t iters = std::max<size_t>(1, total_blocks / n);
        for (size_t it = 0; it < iters; ++it) {
          for (size_t i = 0; i < n; ++i) {
            void* p = nullptr;
            if (shard_region_alloc(r, size, 8, &p) != SHARD_OK) {
              ADD_FAILURE() << "alloc " << size << " failed";
              return;
            }
            blocks[i] = static_cast<unsigned char*>(p);
            std::memset(p, int((i ^ it) & 0xff), size);
          }
          auto release = [&](size_t i) {
            unsigned char want = (i ^ it) & 0xff;
            bad += blocks[i][0] != want || blocks[i][size - 1] != want;
            if (shard_region_dealloc(r, blocks[i], size, 8) != SHARD_OK) g_dealloc_failures++;
          };
          for (size_t i = 0; i < n / 2; ++i) release(i);  // first half FIFO
          for (size_t i = n; i-- > n / 2;) release(i);    // second half LIFO
        }
      }
    }
  }
  EXPECT_EQ(bad, 0u) << "small blocks overlapped";
}

// ---------------------------------------------------------------------------
// multi_thread: 10 threads, 10000 shared slots (slot j*10+t belongs to lane
// t), sizes 2..4096 B. Threads are created anew for every phase, so nearly
// every free is remote and hits a heap whose thread has exited.
//   Phase A (thread t): fill the empty slots of lane t, then free lane t's
//     j in [500, 1000) (on turn 0 its own blocks; later blocks that a
//     phase-B thread allocated).
//   Phase B (thread t): allocate lane t's j in [500, 1000), then free lane
//     (t+1)%10's j in [0, 500) (allocated by another, exited thread).

TEST_F(ArceosRegion, MultiThread) {
  constexpr unsigned kThreads = 10;
  constexpr size_t kPerLane = 1000;
  struct Slot {
    void* p = nullptr;
    size_t size = 0;
    size_t align = 0;
    uint64_t seed = 0;
  };
  std::vector<Slot> slots(kThreads * kPerLane);
  std::atomic<size_t> bad_content{0}, bad_status{0};
  const size_t turns = scaled(100, sanitizer_factor(), 5);

  auto alloc_slot = [&](Slot& s, Rng& rng, uint64_t seed) {
    s.size = 2 + rng.below(4095);
    s.align = size_t{1} << rng.below(4);
    s.seed = seed;
    if (shard_region_alloc(r, s.size, s.align, &s.p) != SHARD_OK || !is_aligned(s.p, s.align) ||
        !in_pool(s.p, s.size)) {
      bad_status++;
      s.p = nullptr;
      return;
    }
    fill_pattern(s.p, s.size, seed);
  };
  auto free_slot = [&](Slot& s) {
    if (!s.p) return;
    if (check_pattern(s.p, s.size, s.seed) != SIZE_MAX) bad_content++;
    if (shard_region_dealloc(r, s.p, s.size, s.align) != SHARD_OK) bad_status++;
    s.p = nullptr;
  };
  auto run_phase = [&](auto&& body) {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < kThreads; ++t) ts.emplace_back(body, t);
    for (auto& t : ts) t.join();
  };

  for (size_t turn = 0; turn < turns; ++turn) {
    run_phase([&](unsigned t) {
      Rng rng(turn * 1000 + t);
      for (size_t j = 0; j < kPerLane; ++j) {
        Slot& s = slots[j * kThreads + t];
        if (!s.p) alloc_slot(s, rng, turn * 1'000'000 + j * kThreads + t);
      }
      for (size_t j = kPerLane / 2; j < kPerLane; ++j) free_slot(slots[j * kThreads + t]);
    });
    run_phase([&](unsigned t) {
      Rng rng(turn * 1000 + 500 + t);
      for (size_t j = kPerLane / 2; j < kPerLane; ++j)
        alloc_slot(slots[j * kThreads + t], rng, turn * 1'000'000 + 500'000 + j * kThreads + t);
      unsigned other = (t + 1) % kThreads;
      for (size_t j = 0; j < kPerLane / 2; ++j) free_slot(slots[j * kThreads + other]);
    });
    size_t live_sum = 0;
    for (const Slot& s : slots)
      if (s.p) live_sum += s.size;
    ASSERT_EQ(shard_region_used_bytes(r), live_sum) << "turn " << turn;
    ASSERT_EQ(bad_status.load(), 0u) << "turn " << turn;
  }
  for (Slot& s : slots) free_slot(s);  // remote frees into abandoned heaps
  EXPECT_EQ(bad_status.load(), 0u) << "alloc/dealloc failures or misaligned blocks";
  EXPECT_EQ(bad_content.load(), 0u) << "blocks whose contents changed while live";
}

}  // namespace
