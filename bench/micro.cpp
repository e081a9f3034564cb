// bench-micro: Google Benchmark micro-benchmarks of shardalloc's core paths,
// called directly (shardalloc_static), not through LD_PRELOAD.
//
//   build/bench-micro [--benchmark_filter=REGEX] [--benchmark_min_time=0.2] ...
//
//   BM_shard_malloc_free/SIZE    shard_malloc + shard_free of one block, the
//                                hot path (the block goes straight back)
//   BM_glibc_malloc_free/SIZE    the same with the process malloc (glibc;
//                                the program does not replace malloc), for scale
//   BM_shard_batch/SIZE          256 shard_mallocs, then 256 shard_frees
//                                (walks free lists and page boundaries)
//   BM_region_alloc_dealloc/SIZE shard_region_alloc + shard_region_dealloc on
//                                a 64 MiB region (align 8)
//   BM_shard_cross_thread_free   frees 64-byte blocks that another, live
//                                thread allocated (a helper thread keeps
//                                refilling batches of 256, double-buffered);
//                                only the free loop is timed (manual time),
//                                not the wait for the next batch; per block
//   BM_region_cross_thread_free  the same over the region API
// SIZE in {8, 64, 512, 4096, 32768}. items_per_second counts blocks.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"

namespace {

constexpr std::size_t kRegionSize = std::size_t{64} << 20;

shard_region* region() {
  static shard_region* r = [] {
    void* m = mmap(nullptr, kRegionSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    shard_region* rr = nullptr;
    if (m == MAP_FAILED || shard_region_init(&rr, m, kRegionSize) != SHARD_OK) {
      std::fprintf(stderr, "bench-micro: region init failed\n");
      std::abort();
    }
    return rr;
  }();
  return r;
}

void size_args(benchmark::internal::Benchmark* b) {
  for (long s : {8, 64, 512, 4096, 32768}) b->Arg(s);
}

void BM_shard_malloc_free(benchmark::State& st) {
  const auto size = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    void* p = shard_malloc(size);
    benchmark::DoNotOptimize(p);
    shard_free(p);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_shard_malloc_free)->Apply(size_args);

void BM_glibc_malloc_free(benchmark::State& st) {
  const auto size = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_glibc_malloc_free)->Apply(size_args);

void BM_shard_batch(benchmark::State& st) {
  const auto size = static_cast<std::size_t>(st.range(0));
  void* v[256];
  for (auto _ : st) {
    for (auto& p : v) {
      p = shard_malloc(size);
      benchmark::DoNotOptimize(p);
    }
    for (auto* p : v) shard_free(p);
  }
  st.SetItemsProcessed(st.iterations() * 256);
}
BENCHMARK(BM_shard_batch)->Apply(size_args);

void BM_region_alloc_dealloc(benchmark::State& st) {
  const auto size = static_cast<std::size_t>(st.range(0));
  shard_region* r = region();
  for (auto _ : st) {
    void* p = nullptr;
    if (shard_region_alloc(r, size, 8, &p) != SHARD_OK) st.SkipWithError("region alloc failed");
    benchmark::DoNotOptimize(p);
    shard_region_dealloc(r, p, size, 8);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_region_alloc_dealloc)->Apply(size_args);

// A helper thread fills batches with blocks it allocates; the benchmark
// thread frees them. Two batches alternate, so the helper allocates the
// next batch while the current one is being freed.
class CrossThread {
 public:
  static constexpr int kBatch = 256;
  explicit CrossThread(std::function<void*()> alloc)
      : alloc_(std::move(alloc)), helper_([this] { run(); }) {}
  ~CrossThread() {
    stop_.store(true, std::memory_order_release);
    if (helper_.joinable()) helper_.join();
  }
  // Waits for a full batch and returns it; give it back with release().
  void** take() {
    auto& b = bufs_[next_];
    while (b.state.load(std::memory_order_acquire) != kFull) std::this_thread::yield();
    return b.ptrs;
  }
  void release() {
    bufs_[next_].state.store(kEmpty, std::memory_order_release);
    next_ ^= 1;
  }
  // Frees whatever is still full at the end.
  template <class Free>
  void drain(Free&& f) {
    stop_.store(true, std::memory_order_release);
    helper_.join();
    for (auto& b : bufs_)
      if (b.state.load(std::memory_order_acquire) == kFull)
        for (void* p : b.ptrs) f(p);
    bufs_[0].state.store(kEmpty);
    bufs_[1].state.store(kEmpty);
  }

 private:
  enum { kEmpty, kFull };
  struct alignas(64) Buf {
    std::atomic<int> state{kEmpty};
    void* ptrs[kBatch];
  };
  void run() {
    int i = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      auto& b = bufs_[i];
      if (b.state.load(std::memory_order_acquire) != kEmpty) {
        std::this_thread::yield();
        continue;
      }
      for (auto& p : b.ptrs) p = alloc_();
      b.state.store(kFull, std::memory_order_release);
      i ^= 1;
    }
  }
  std::function<void*()> alloc_;
  Buf bufs_[2];
  std::atomic<bool> stop_{false};
  int next_ = 0;
  std::thread helper_;  // last: starts after the members it uses
};

void BM_shard_cross_thread_free(benchmark::State& st) {
  CrossThread ct([] { return shard_malloc(64); });
  for (auto _ : st) {
    void** v = ct.take();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < CrossThread::kBatch; ++i) shard_free(v[i]);
    st.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ct.release();
  }
  ct.drain([](void* p) { shard_free(p); });
  st.SetItemsProcessed(st.iterations() * CrossThread::kBatch);
}
BENCHMARK(BM_shard_cross_thread_free)->UseManualTime();

void BM_region_cross_thread_free(benchmark::State& st) {
  shard_region* r = region();
  CrossThread ct([r] {
    void* p = nullptr;
    if (shard_region_alloc(r, 64, 8, &p) != SHARD_OK) std::abort();
    return p;
  });
  for (auto _ : st) {
    void** v = ct.take();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < CrossThread::kBatch; ++i) shard_region_dealloc(r, v[i], 64, 8);
    st.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ct.release();
  }
  ct.drain([r](void* p) { shard_region_dealloc(r, p, 64, 8); });
  st.SetItemsProcessed(st.iterations() * CrossThread::kBatch);
}
BENCHMARK(BM_region_cross_thread_free)->UseManualTime();

}  // namespace

BENCHMARK_MAIN();
