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

#include "core/checked.h"
#include "core/segment.h"
#include "shardalloc/heap.h"
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

// A realloc that keeps a huge block for more bytes than it was allocated
// with raises the extent its slots' resident hint records at release
// (Segment::huge_written): the program may write all of them now.
TEST(HugeReuse, AReallocThatKeepsAHugeBlockCoversItsNewSize) {
  if (shardalloc::core::kChecked) GTEST_SKIP() << "checked builds keep only a moved block";
  constexpr size_t kFirst = 200 * 1024;
  constexpr size_t kGrown = 400 * 1024;  // within the first slot's usable bytes
  auto written_end = [](void* p) {
    const auto* s = shardalloc::core::segment_of(p);
    return reinterpret_cast<uintptr_t>(s) + s->huge_written;
  };
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  void* a = shard_heap_malloc(h, kFirst);
  ASSERT_NE(a, nullptr);
  EXPECT_GE(written_end(a), reinterpret_cast<uintptr_t>(a) + kFirst);
  ASSERT_EQ(shard_heap_realloc(h, a, kGrown), a) << "kept in place";
  EXPECT_GE(written_end(a), reinterpret_cast<uintptr_t>(a) + kGrown);
  shard_heap_free(h, a);
  shard_heap_destroy(h);

  void* b = shard_malloc(kFirst);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(shard_realloc(b, kGrown), b) << "kept in place";
  EXPECT_GE(written_end(b), reinterpret_cast<uintptr_t>(b) + kGrown);
  shard_free(b);
}
