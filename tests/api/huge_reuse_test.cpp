// Huge blocks reuse freed spans: a new huge block goes where the most of a
// freed span is still resident (best fit among those), every such block is a
// correct, writable block of the size asked for, and the memory still goes
// back to the OS after the purge delay once the program stops asking.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;

void* region_alloc(shard_region* r, size_t size) {
  void* p = nullptr;
  EXPECT_EQ(shard_region_alloc(r, size, 16, &p), SHARD_OK) << size;
  return p;
}

}  // namespace

// Two freed spans, a long one first and one of just the size asked for
// later: the new block takes the exact one (first fit took the long one).
TEST(HugeReuse, TakesTheFreedSpanThatFitsBest) {
  void* mem = shardtest::map_memory(128 * kMiB);
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, 128 * kMiB), SHARD_OK);
  void* a = region_alloc(r, 8 * kMiB);  // the long span
  void* s1 = region_alloc(r, 1 * kMiB);
  void* b = region_alloc(r, 4 * kMiB);  // the exact span
  void* s2 = region_alloc(r, 1 * kMiB);
  ASSERT_TRUE(a && s1 && b && s2);
  ASSERT_LT(a, s1);  // laid out in order in a fresh region
  ASSERT_LT(s1, b);
  ASSERT_LT(b, s2);
  std::memset(a, 0x11, 8 * kMiB);
  std::memset(b, 0x22, 4 * kMiB);
  ASSERT_EQ(shard_region_dealloc(r, a, 8 * kMiB, 16), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, b, 4 * kMiB, 16), SHARD_OK);
  void* c = region_alloc(r, 4 * kMiB);
  EXPECT_EQ(c, b) << "a 4 MiB block should reuse the 4 MiB span, not cut the 8 MiB one";
  ASSERT_NE(c, nullptr);
  std::memset(c, 0x33, 4 * kMiB);
  // The long span is still whole for a long block.
  void* d = region_alloc(r, 8 * kMiB);
  EXPECT_EQ(d, a);
  ASSERT_NE(d, nullptr);
  std::memset(d, 0x44, 8 * kMiB);
  EXPECT_EQ(static_cast<unsigned char*>(c)[4 * kMiB - 1], 0x33);
  ASSERT_EQ(shard_region_dealloc(r, c, 4 * kMiB, 16), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, d, 8 * kMiB, 16), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, s1, 1 * kMiB, 16), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, s2, 1 * kMiB, 16), SHARD_OK);
  EXPECT_EQ(shard_region_check_heap(r), 0u);
}

// The malloc-large pattern: buffers of 5-25 MiB replaced one at a time. Every
// new block is writable over its whole size, keeps its contents while live,
// and the memory goes back after the loop stops.
TEST(HugeReuse, ReplacedBuffersAreWritableAndTheMemoryGoesBack) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "RSS includes the sanitizer's shadow memory, which is not given back";
#endif
  constexpr int kBuffers = 8;
  const size_t before = shardtest::proc_memory().rss;
  struct Buf {
    unsigned char* p = nullptr;
    size_t size = 0;
    unsigned char tag = 0;
  };
  Buf bufs[kBuffers];
  uint64_t x = 12345;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  auto check = [](const Buf& b) {
    // Head, tail and one byte per MiB (all were written).
    if (b.p[0] != b.tag || b.p[b.size - 1] != b.tag) return false;
    for (size_t i = 0; i < b.size; i += kMiB) {
      if (b.p[i] != b.tag) return false;
    }
    return true;
  };
  size_t peak = 0;
  for (int step = 0; step < 200; ++step) {
    Buf& b = bufs[next() % kBuffers];
    if (b.p != nullptr) {
      ASSERT_TRUE(check(b)) << "step " << step;
      shard_free(b.p);
    }
    b.size = 5 * kMiB + next() % (20 * kMiB);
    b.tag = static_cast<unsigned char>(step | 1);
    b.p = static_cast<unsigned char*>(shard_malloc(b.size));
    ASSERT_NE(b.p, nullptr);
    ASSERT_GE(shard_usable_size(b.p), b.size);
    std::memset(b.p, b.tag, b.size);  // every byte: reused pages are ours and writable
    const size_t now = shardtest::proc_memory().rss;
    if (now > peak) peak = now;
  }
  for (Buf& b : bufs) {
    if (b.p == nullptr) continue;
    ASSERT_TRUE(check(b));
    shard_free(b.p);
  }
  // Purge ticks run on allocation slow paths: keep allocating small blocks
  // (no huge ones: they are the demand that keeps freed spans resident).
  size_t now = shardtest::proc_memory().rss;
  for (int round = 0; round < 40 && now > before + 32 * kMiB; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < 2000; ++i) shard_free(shard_malloc(64 * 1024));
    now = shardtest::proc_memory().rss;
  }
  std::printf("[ HugeReuse ] RSS before %zu MiB, peak %zu MiB, after %zu MiB\n", before / kMiB,
              peak / kMiB, now / kMiB);
  EXPECT_GT(peak, before + 64 * kMiB);
  EXPECT_LT(now, before + 32 * kMiB) << "peak " << peak / kMiB << " MiB";
}

namespace {

// Resident OS pages of [p, p + bytes) (mincore; the arena stays mapped after a free).
size_t resident_pages(const void* p, size_t bytes) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095};
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes + 4095) & ~uintptr_t{4095};
  std::vector<unsigned char> vec((end - start) / 4096);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(start), end - start, vec.data()), 0);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

}  // namespace

// A huge block its program touched sparsely (one byte per 256 KiB: well
// under 1/8 of its pages) is given back at its free, all of it but the first
// OS page (its segment header); the next block on the span reads as zero.
// Before, the span stayed resident for reuse and every later block on it kept
// the stale pages: a program replacing such buffers grew by a page a time.
TEST(HugeReuse, SparselyTouchedBlockIsPurgedAtFree) {
#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
  GTEST_SKIP() << "checked mode quarantines freed huge blocks behind guard pages";
#endif
  constexpr size_t kSize = 16 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_malloc(kSize));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < kSize; i += 256 * 1024) p[i] = 0xa5;
  p[kSize - 1] = 0xa5;
  ASSERT_GE(resident_pages(p, kSize), 60u);
  shard_free(p);
  // Everything past the OS page that holds the block's start (and the header).
  const unsigned char* second_page = reinterpret_cast<unsigned char*>(
      ((reinterpret_cast<uintptr_t>(p) + 4096) & ~uintptr_t{4095}));
  EXPECT_EQ(resident_pages(second_page, kSize - size_t(second_page - p)), 0u);
  // Whichever span the next block takes, it reads as zero where calloc says so.
  auto* q = static_cast<unsigned char*>(shard_calloc(1, kSize));
  ASSERT_NE(q, nullptr);
  for (size_t i = 0; i < kSize; i += 4096) ASSERT_EQ(q[i], 0) << i;
  ASSERT_EQ(q[kSize - 1], 0);
  shard_free(q);
}

// A block written over most of its size stays resident for the next huge
// block (the reuse above): no purge, no page faults for its successor.
TEST(HugeReuse, MostlyWrittenBlockStaysResidentForReuse) {
#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
  GTEST_SKIP() << "checked mode quarantines freed huge blocks behind guard pages";
#endif
  constexpr size_t kSize = 16 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_malloc(kSize));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5a, kSize / 4);  // a quarter: more than 1/8
  const size_t touched = resident_pages(p, kSize);
  ASSERT_GE(touched, kSize / 4 / 4096);
  shard_free(p);
  EXPECT_GE(resident_pages(p, kSize), touched * 9 / 10)
      << "a block a quarter written went back to the OS at its free";
}
