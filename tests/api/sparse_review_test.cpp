// Adversarial review of the sparse-huge purge (Domain::purge_sparse_huge):
// a purge that the OS refuses still marks the purged slots clean, and calloc
// then trusts them (Domain::claimed: s->zeroed) and skips its memset.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;

size_t nonzero_bytes(const unsigned char* p, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += p[i] != 0;
  return count;
}

// One run: a 4 MiB block (a span of 9 slots in a fresh first-class heap's
// arena) written one byte per 256 KiB, optionally mlock2(MLOCK_ONFAULT)ed
// (locked pages fault in as they are touched: the block stays sparse), freed;
// a one-slot huge block then takes the span's first slot (the only dirty
// one), and calloc of 7 slots takes slots 1..7 of the old span. Returns the
// non-zero bytes calloc handed out.
size_t stale_bytes_after_refill(bool lock_on_fault) {
  shard_heap* h = shard_heap_new();
  EXPECT_NE(h, nullptr);
  if (h == nullptr) return 0;
  constexpr size_t kSize = 4 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_heap_malloc(h, kSize));
  EXPECT_NE(p, nullptr);
  if (lock_on_fault) EXPECT_EQ(mlock2(p, kSize, MLOCK_ONFAULT), 0);
  for (size_t i = 0; i < kSize; i += 256 * 1024) p[i] = 0xa5;
  p[kSize - 1] = 0xa5;
  shard_heap_free(h, p);
  void* one = shard_heap_malloc(h, 200 * 1024);  // one slot: the dirty first slot of the span
  EXPECT_NE(one, nullptr);
  constexpr size_t kRefill = 3 * kMiB + 400 * 1024;  // 7 slots
  auto* q = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kRefill));
  EXPECT_NE(q, nullptr);
  const size_t stale = q == nullptr ? 0 : nonzero_bytes(q, kRefill);
  if (lock_on_fault) munlock(p, kSize);
  shard_heap_destroy(h);
  return stale;
}

}  // namespace

// Control: the purge works, calloc's block reads as zero.
TEST(SparseReview, CallocAfterSparsePurgeIsZero) { EXPECT_EQ(stale_bytes_after_refill(false), 0u); }

// madvise(MADV_DONTNEED) fails (EINVAL) on locked pages; os_purge ignores
// the result, release(first_only) clears the dirty bits anyway, and calloc
// skips its memset over the stale bytes.
TEST(SparseReview, CallocAfterRefusedPurgeOfLockedBlockIsZero) {
  EXPECT_EQ(stale_bytes_after_refill(true), 0u) << "calloc returned stale bytes";
}

// The same hole before this change, in Arena::purge_tick (run with
// SHARDALLOC_PURGE_DELAY_MS=0, which purges at every release): a fully
// written, mlock()ed block is freed; the tick's madvise fails on the locked
// pages, the dirty bits are cleared anyway, calloc skips its memset.
TEST(SparseReview, PreExistingCallocAfterRefusedPurgeTickIsZero) {
  const char* delay = getenv("SHARDALLOC_PURGE_DELAY_MS");
  if (delay == nullptr || std::strcmp(delay, "0") != 0) GTEST_SKIP() << "needs SHARDALLOC_PURGE_DELAY_MS=0";
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  constexpr size_t kSize = 4 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_heap_malloc(h, kSize));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(mlock(p, kSize), 0);
  std::memset(p, 0xa5, kSize);
  shard_heap_free(h, p);
  auto* q = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kSize));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(nonzero_bytes(q, kSize), 0u) << "calloc returned stale bytes";
  munlock(p, kSize);
  shard_heap_destroy(h);
}

// Threads free sparsely and densely written huge blocks (sparse purges,
// first_only releases, purge ticks) while others calloc huge blocks of other
// sizes over the same spans and check every byte reads zero.
TEST(SparseReview, ConcurrentSparseFreesAndCallocsReadZero) {
  std::atomic<size_t> bad{0};
  auto worker = [&](unsigned seed) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    auto next = [&] { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
    for (int round = 0; round < 300; ++round) {
      const size_t size = (1 + next() % 12) * 512 * 1024 + next() % 4096;
      auto* q = static_cast<unsigned char*>(shard_calloc(1, size));
      if (q == nullptr) continue;
      for (size_t i = 0; i < size; i += 512) bad += q[i] != 0;
      bad += q[size - 1] != 0;
      const bool sparse = next() % 2 == 0;
      if (sparse) {
        for (size_t i = 0; i < size; i += 256 * 1024) q[i + next() % 4096 % (size - i)] = 0x5a;
      } else {
        std::memset(q, 0x5a, size);
      }
      shard_free(q);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 3; ++t) threads.emplace_back(worker, t + 1);
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0u);
}
