// Region API contract: parameters and statuses, exact accounting
// (total / used / available), exhaustion and add_memory, foreign pointers,
// alignments, several regions, huge blocks.
//
// Regions are made on anonymous memory that is never unmapped (a region has
// no destroy call); each test makes its own regions.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/segment.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

struct Range {
  uintptr_t start, end;
};

// A region plus the ranges handed to it, for "block lies inside the region"
// checks.
struct TestRegion {
  shard_region* r = nullptr;
  std::vector<Range> ranges;

  static TestRegion make(void* start, size_t size) {
    TestRegion t;
    shard_status s = shard_region_init(&t.r, start, size);
    EXPECT_EQ(s, SHARD_OK) << "init(" << start << ", " << size << ")";
    if (s == SHARD_OK)
      t.ranges.push_back(
          {reinterpret_cast<uintptr_t>(start), reinterpret_cast<uintptr_t>(start) + size});
    return t;
  }
  static TestRegion fresh(size_t size) { return make(map_memory(size), size); }

  shard_status add(void* start, size_t size) {
    shard_status s = shard_region_add_memory(r, start, size);
    if (s == SHARD_OK)
      ranges.push_back(
          {reinterpret_cast<uintptr_t>(start), reinterpret_cast<uintptr_t>(start) + size});
    return s;
  }
  bool contains(const void* p, size_t n) const {
    auto a = reinterpret_cast<uintptr_t>(p);
    for (const Range& g : ranges)
      if (a >= g.start && a + n <= g.end && a + n >= a) return true;
    return false;
  }
  RegionStats st() const { return stats(r); }
};

struct Block {
  void* p;
  size_t size;
  size_t align;
  uint64_t seed;
};

// Frees every block (checking its pattern) and clears the list.
void free_all(shard_region* r, std::vector<Block>& blocks) {
  for (const Block& b : blocks) {
    EXPECT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX)
        << "block " << b.p << " size " << b.size << " corrupted";
    EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
  }
  blocks.clear();
}

// Uses the region once from this thread so its heap record exists; returns
// the stats afterwards (the baseline later states are compared to).
RegionStats warm(shard_region* r) {
  void* p = nullptr;
  EXPECT_EQ(shard_region_alloc(r, 8, 8, &p), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(r, p, 8, 8), SHARD_OK);
  return stats(r);
}

// ---------------------------------------------------------------------------
// init

TEST(RegionInit, RejectsNullAndTooSmall) {
  auto* mem = static_cast<unsigned char*>(map_memory(4 * MiB));
  std::memset(mem, 0x5a, 2 * MiB);
  shard_region* r = reinterpret_cast<shard_region*>(uintptr_t{0x1234});
  EXPECT_EQ(shard_region_init(nullptr, mem, 2 * MiB), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_init(&r, nullptr, 2 * MiB), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_init(&r, mem, 0), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_init(&r, mem, 4096), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_init(&r, mem, SHARD_REGION_MIN_SIZE - 1), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_init(&r, mem + 1, SHARD_REGION_MIN_SIZE - 1), SHARD_INVALID_PARAM);
  // A rejected init writes nothing into the memory.
  size_t touched = 0;
  for (size_t i = 0; i < 2 * MiB; ++i) touched += mem[i] != 0x5a;
  EXPECT_EQ(touched, 0u) << "a failed init modified the memory it was given";
}

TEST(RegionInit, FreshRegionStats) {
  const size_t size = 8 * MiB;
  auto* mem = static_cast<unsigned char*>(map_memory(size));
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, size), SHARD_OK);
  ASSERT_NE(r, nullptr);
  // Its state lives inside the memory it manages.
  EXPECT_GE(reinterpret_cast<uintptr_t>(r), reinterpret_cast<uintptr_t>(mem));
  EXPECT_LT(reinterpret_cast<uintptr_t>(r), reinterpret_cast<uintptr_t>(mem) + size);
  RegionStats s = stats(r);
  EXPECT_EQ(s.total, size);
  EXPECT_EQ(s.used, 0u);
  EXPECT_GT(s.available, size / 2) << "metadata of an empty 8 MiB region should be small";
  EXPECT_LE(s.available, s.total);
}

// 1 MiB is enough at any start alignment, and the region stays inside it.
TEST(RegionInit, MinSizeAtAnyAlignment) {
  for (size_t offset : {size_t{0}, size_t{1}, size_t{3}, size_t{8}, size_t{4095}, size_t{4097},
                        size_t{65537}, size_t{300 * 1024 + 5}}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    auto* mem = static_cast<unsigned char*>(map_memory(4 * MiB));
    unsigned char* start = mem + MiB + offset;
    // Canaries around [start, start + 1 MiB) catch writes outside the range.
    std::memset(mem, 0xc3, MiB + offset);
    std::memset(start + SHARD_REGION_MIN_SIZE, 0xc3, MiB);
    shard_region* r = nullptr;
    ASSERT_EQ(shard_region_init(&r, start, SHARD_REGION_MIN_SIZE), SHARD_OK);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(shard_region_total_bytes(r), SHARD_REGION_MIN_SIZE);
    EXPECT_EQ(shard_region_used_bytes(r), 0u);
    EXPECT_GT(shard_region_available_bytes(r), 0u);
    TestRegion t{r,
                 {{reinterpret_cast<uintptr_t>(start),
                   reinterpret_cast<uintptr_t>(start) + SHARD_REGION_MIN_SIZE}}};

    std::vector<Block> blocks;
    size_t sum = 0;
    struct Req {
      size_t size, align;
    };
    for (Req q : {Req{1, 1}, Req{16, 8}, Req{100, 16}, Req{1000, 64}, Req{4096, 4096}, Req{0, 0}}) {
      void* p = nullptr;
      ASSERT_EQ(shard_region_alloc(r, q.size, q.align, &p), SHARD_OK)
          << "size " << q.size << " align " << q.align;
      EXPECT_TRUE(is_aligned(p, q.align));
      EXPECT_TRUE(t.contains(p, q.size)) << p << " outside the 1 MiB region";
      fill_pattern(p, q.size, blocks.size());
      blocks.push_back({p, q.size, q.align, blocks.size()});
      sum += q.size;
      EXPECT_EQ(shard_region_used_bytes(r), sum);
    }
    free_all(r, blocks);
    EXPECT_EQ(shard_region_used_bytes(r), 0u);
    size_t bad = 0;
    for (size_t i = 0; i < MiB + offset; ++i) bad += mem[i] != 0xc3;
    for (size_t i = 0; i < MiB; ++i) bad += start[SHARD_REGION_MIN_SIZE + i] != 0xc3;
    EXPECT_EQ(bad, 0u) << "the region wrote outside [start, start + size)";
  }
}

// A 1 MiB region serves every kind of block (small, medium, huge-ish, over-
// aligned) one at a time: freeing one kind gives the room back to the next.
TEST(RegionInit, MinSizeRegionServesEachKindInTurn) {
  for (size_t offset : {size_t{0}, size_t{1}, size_t{4095}, size_t{200 * 1024 + 7}}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    auto* mem = static_cast<unsigned char*>(map_memory(4 * MiB));
    unsigned char* start = mem + MiB + offset;
    TestRegion t = TestRegion::make(start, SHARD_REGION_MIN_SIZE);
    ASSERT_NE(t.r, nullptr);
    RegionStats base = warm(t.r);
    struct Req {
      size_t size, align;
    };
    for (int round = 0; round < 2; ++round) {
      for (Req q : {Req{16, 8}, Req{20000, 8}, Req{16, 64 * KiB}, Req{100 * KiB, 8},
                    Req{3000, 1024}, Req{24, 8}}) {
        SCOPED_TRACE("size " + std::to_string(q.size) + " align " + std::to_string(q.align));
        void* p = nullptr;
        ASSERT_EQ(shard_region_alloc(t.r, q.size, q.align, &p), SHARD_OK);
        EXPECT_TRUE(is_aligned(p, q.align));
        EXPECT_TRUE(t.contains(p, q.size));
        fill_pattern(p, q.size, 77);
        EXPECT_EQ(shard_region_used_bytes(t.r), q.size);
        EXPECT_EQ(check_pattern(p, q.size, 77), SIZE_MAX);
        ASSERT_EQ(shard_region_dealloc(t.r, p, q.size, q.align), SHARD_OK);
        EXPECT_EQ(t.st(), base);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// exact accounting

TEST(RegionAccounting, UsedIsSumOfLiveSizes) {
  TestRegion t = TestRegion::fresh(64 * MiB);
  shard_region* r = t.r;
  RegionStats base = warm(r);
  ASSERT_EQ(base.used, 0u);
  ASSERT_EQ(base.total, 64 * MiB);

  const size_t sizes[] = {0,      1,      7,       8,       9,          15,    16,    17,
                          24,     63,     64,      65,      100,        1000,  1024,  1025,
                          4096,   8191,   8192,    8193,    10000,      65535, 65536, 100000,
                          131072, 131073, 1 * MiB, 3 * MiB, 5 * MiB + 7};
  std::vector<Block> blocks;
  size_t sum = 0;
  for (size_t round = 0; round < 3; ++round) {
    for (size_t size : sizes) {
      RegionStats b = t.st();
      void* p = nullptr;
      ASSERT_EQ(shard_region_alloc(r, size, 8, &p), SHARD_OK) << "size " << size;
      ASSERT_NE(p, nullptr);
      RegionStats a = t.st();
      EXPECT_TRUE(t.contains(p, size));
      fill_pattern(p, size, sum);
      blocks.push_back({p, size, 8, sum});
      sum += size;
      EXPECT_EQ(a.total, b.total);
      EXPECT_EQ(a.used, sum) << "after alloc of " << size;
      EXPECT_LE(a.used + a.available, a.total);
      EXPECT_GE(b.available - a.available, size)
          << "available must drop by at least the size (" << size << ")";
      EXPECT_LE(a.available, b.available);
    }
  }
  // Free in an interleaved order; used drops by exactly each size and
  // available never drops.
  std::vector<Block> order;
  for (size_t i = 0; i < blocks.size(); i += 2) order.push_back(blocks[i]);
  for (size_t i = blocks.size(); i-- > 1;)
    if (i % 2) order.push_back(blocks[i]);
  for (const Block& blk : order) {
    RegionStats b = t.st();
    EXPECT_EQ(check_pattern(blk.p, blk.size, blk.seed), SIZE_MAX) << "size " << blk.size;
    ASSERT_EQ(shard_region_dealloc(r, blk.p, blk.size, blk.align), SHARD_OK);
    RegionStats a = t.st();
    sum -= blk.size;
    EXPECT_EQ(a.used, sum);
    EXPECT_GE(a.available, b.available + blk.size)
        << "dealloc of " << blk.size << " must free at least its size";
    EXPECT_LE(a.used + a.available, a.total);
  }
  EXPECT_EQ(t.st(), base) << "after freeing everything the region is back where it started";
}

// A huge block over n slots takes n slots' usable bytes (a slot less its
// 2 KiB segment header) from available_bytes, and gives them back when freed:
// the headers of its later slots, which it covers, were counted twice while
// it lived (as overhead since the arena was added, and in its size: an
// adversarial review; available read (n - 1) * 2 KiB low).
TEST(RegionAccounting, AHugeBlockTakesItsSlotsUsableBytes) {
  constexpr size_t kSlot = shardalloc::core::kSegmentSize;
  constexpr size_t kHeader = shardalloc::core::kSegmentHeaderSize;
  TestRegion t = TestRegion::fresh(16 * MiB);
  shard_region* r = t.r;
  const size_t before = shard_region_available_bytes(r);
  for (size_t slots : {size_t{2}, size_t{5}, size_t{12}}) {
    const size_t size = slots * kSlot - 4 * KiB;  // fits `slots` slots, not one fewer
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, size, 8, &p), SHARD_OK);
    EXPECT_EQ(before - shard_region_available_bytes(r), slots * (kSlot - kHeader)) << slots;
    EXPECT_EQ(shard_region_used_bytes(r), size);
    ASSERT_EQ(shard_region_dealloc(r, p, size, 8), SHARD_OK);
    EXPECT_EQ(shard_region_available_bytes(r), before) << slots;
  }
  // Aligned to 1 MiB: the gap before the block counts too, and all comes back.
  void* p = nullptr;
  ASSERT_EQ(shard_region_alloc(r, 3 * MiB, 1 * MiB, &p), SHARD_OK);
  EXPECT_LT(shard_region_available_bytes(r), before - 3 * MiB);
  ASSERT_EQ(shard_region_dealloc(r, p, 3 * MiB, 1 * MiB), SHARD_OK);
  EXPECT_EQ(shard_region_available_bytes(r), before);
}

TEST(RegionAccounting, ZeroSizeAllocations) {
  TestRegion t = TestRegion::fresh(8 * MiB);
  RegionStats base = warm(t.r);
  std::vector<void*> ps;
  for (int i = 0; i < 100; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(t.r, 0, 0, &p), SHARD_OK);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(t.contains(p, 1));
    ps.push_back(p);
  }
  std::sort(ps.begin(), ps.end());
  EXPECT_EQ(std::adjacent_find(ps.begin(), ps.end()), ps.end()) << "size-0 blocks must be distinct";
  EXPECT_EQ(shard_region_used_bytes(t.r), 0u) << "used counts the size arguments, here 0";
  EXPECT_LT(shard_region_available_bytes(t.r), base.available)
      << "a minimal block still takes room";
  for (void* p : ps) EXPECT_EQ(shard_region_dealloc(t.r, p, 0, 0), SHARD_OK);
  EXPECT_EQ(t.st(), base);
}

// available is an upper bound of what can still be allocated, and a region
// gives back all of its memory: filling it twice yields the same count.
TEST(RegionAccounting, AvailableIsUpperBoundAndReusable) {
  struct Case {
    size_t size, align;
  };
  for (Case c :
       {Case{24, 8}, Case{1000, 8}, Case{12000, 16}, Case{100000, 64}, Case{700 * KiB, 8}}) {
    SCOPED_TRACE("size " + std::to_string(c.size));
    TestRegion t = TestRegion::fresh(16 * MiB);
    RegionStats base = warm(t.r);
    size_t counts[2] = {0, 0};
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<Block> blocks;
      const size_t avail0 = shard_region_available_bytes(t.r);
      for (;;) {
        void* p = nullptr;
        shard_status s = shard_region_alloc(t.r, c.size, c.align, &p);
        if (s == SHARD_NO_MEMORY) break;
        ASSERT_EQ(s, SHARD_OK);
        ASSERT_TRUE(t.contains(p, c.size));
        fill_sparse(p, c.size, blocks.size(), 512);
        blocks.push_back({p, c.size, c.align, blocks.size()});
        ASSERT_LT(blocks.size(), 16 * MiB / c.size + 1) << "more blocks than fit in the region";
      }
      counts[pass] = blocks.size();
      size_t got = blocks.size() * c.size;
      EXPECT_LE(got, avail0) << "available_bytes promised less than could be allocated";
      EXPECT_EQ(shard_region_used_bytes(t.r), got);
      RegionStats full = t.st();
      EXPECT_LE(full.used + full.available, full.total);
      // Sanity floor: a 16 MiB region serves at least half its size (checked
      // builds: counting each block's 16-byte trailer).
      const size_t trailers = shard_is_checked() ? blocks.size() * 16 : 0;
      EXPECT_GE(got + trailers, 8 * MiB) << "only " << got << " bytes of 16 MiB could be allocated";
      for (const Block& b : blocks) {
        EXPECT_TRUE(check_sparse(b.p, b.size, b.seed, 512));
        ASSERT_EQ(shard_region_dealloc(t.r, b.p, b.size, b.align), SHARD_OK);
      }
      EXPECT_EQ(t.st(), base) << "pass " << pass;
    }
    EXPECT_EQ(counts[1], counts[0])
        << "second fill got a different number of blocks: memory was lost";
  }
}

// ---------------------------------------------------------------------------
// exhaustion and add_memory

TEST(RegionExhaustion, NoMemoryThenUsableThenAddMemory) {
  TestRegion t = TestRegion::fresh(4 * MiB);
  shard_region* r = t.r;
  std::vector<Block> blocks;
  const size_t size = 256 * KiB;
  shard_status s;
  for (;;) {
    void* p = nullptr;
    s = shard_region_alloc(r, size, 8, &p);
    if (s != SHARD_OK) break;
    ASSERT_TRUE(t.contains(p, size));
    fill_pattern(p, size, blocks.size());
    blocks.push_back({p, size, 8, blocks.size()});
    ASSERT_LT(blocks.size(), 17u);
  }
  ASSERT_EQ(s, SHARD_NO_MEMORY);
  ASSERT_GE(blocks.size(), 4u) << "a 4 MiB region should hold several 256 KiB blocks";
  RegionStats full = t.st();
  EXPECT_EQ(full.used, blocks.size() * size);

  // A failed alloc changes nothing, and the allocator stays usable.
  void* q = nullptr;
  EXPECT_EQ(shard_region_alloc(r, size, 8, &q), SHARD_NO_MEMORY);
  EXPECT_EQ(t.st(), full);
  void* small = nullptr;
  shard_status ss = shard_region_alloc(r, 64, 8, &small);
  if (ss == SHARD_OK) {
    EXPECT_EQ(shard_region_dealloc(r, small, 64, 8), SHARD_OK);
  } else {
    EXPECT_EQ(ss, SHARD_NO_MEMORY);
  }
  Block last = blocks.back();
  blocks.pop_back();
  EXPECT_EQ(check_pattern(last.p, last.size, last.seed), SIZE_MAX);
  ASSERT_EQ(shard_region_dealloc(r, last.p, last.size, last.align), SHARD_OK);
  void* again = nullptr;
  ASSERT_EQ(shard_region_alloc(r, size, 8, &again), SHARD_OK)
      << "freed space must be reusable after NO_MEMORY";
  fill_pattern(again, size, 1000);
  blocks.push_back({again, size, 8, 1000});
  EXPECT_EQ(shard_region_alloc(r, size, 8, &q), SHARD_NO_MEMORY);

  // add_memory, then the same request succeeds, from the new memory.
  const size_t extra = 16 * MiB;
  void* more = map_memory(extra);
  ASSERT_EQ(t.add(more, extra), SHARD_OK);
  EXPECT_EQ(shard_region_total_bytes(r), 4 * MiB + extra);
  EXPECT_GT(shard_region_available_bytes(r), full.available + extra / 2);
  size_t added = 0;
  for (int i = 0; i < 20; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(r, size, 8, &p), SHARD_OK) << "after add_memory, alloc " << i;
    ASSERT_TRUE(t.contains(p, size));
    fill_pattern(p, size, 2000 + i);
    blocks.push_back({p, size, 8, uint64_t(2000 + i)});
    added++;
  }
  EXPECT_EQ(shard_region_used_bytes(r), blocks.size() * size);
  free_all(r, blocks);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// The axalloc pattern: a request bigger than the region fails, add_memory
// with a larger range, the same request succeeds.
TEST(RegionExhaustion, HugeRequestSucceedsAfterAddMemory) {
  TestRegion t = TestRegion::fresh(8 * MiB);
  RegionStats base = warm(t.r);
  void* p = nullptr;
  const size_t want = 20 * MiB;
  EXPECT_EQ(shard_region_alloc(t.r, want, 8, &p), SHARD_NO_MEMORY);
  EXPECT_EQ(t.st(), base);
  void* more = map_memory(64 * MiB);
  ASSERT_EQ(t.add(static_cast<unsigned char*>(more) + 3, 64 * MiB - 3), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(t.r, want, 8, &p), SHARD_OK);
  EXPECT_TRUE(t.contains(p, want));
  fill_sparse(p, want, 9);
  EXPECT_EQ(shard_region_used_bytes(t.r), want);
  EXPECT_TRUE(check_sparse(p, want, 9));
  EXPECT_EQ(shard_region_dealloc(t.r, p, want, 8), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(t.r), 0u);
}

// The region holds no 1 TiB boundary: at a random address an 8 MiB region
// holds one 1 time in 131072, and then a block aligned to 2^40 is a right answer.
TEST(RegionExhaustion, ImpossibleRequestsAreNoMemory) {
  TestRegion t = TestRegion::make(map_memory_without_boundary(8 * MiB, size_t{1} << 40), 8 * MiB);
  RegionStats base = warm(t.r);
  const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2, size_t(PTRDIFF_MAX) + 1,
                          size_t{1} << 40};
  for (size_t size : sizes) {
    void* p = nullptr;
    EXPECT_EQ(shard_region_alloc(t.r, size, 8, &p), SHARD_NO_MEMORY) << "size " << size;
    EXPECT_EQ(shard_region_alloc(t.r, size, 4096, &p), SHARD_NO_MEMORY) << "size " << size;
  }
  void* p = nullptr;
  EXPECT_EQ(shard_region_alloc(t.r, 8, size_t{1} << 63, &p), SHARD_NO_MEMORY) << "align 2^63";
  EXPECT_EQ(shard_region_alloc(t.r, 8, size_t{1} << 40, &p), SHARD_NO_MEMORY) << "align 2^40";
  EXPECT_EQ(t.st(), base) << "failed requests changed the accounting";
  ASSERT_EQ(shard_region_alloc(t.r, 100, 8, &p), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(t.r, p, 100, 8), SHARD_OK);
}

// ---------------------------------------------------------------------------
// add_memory parameters and overlap

TEST(RegionAddMemory, OverlapIsRejectedAndChangesNothing) {
  auto* m = static_cast<unsigned char*>(map_memory(64 * MiB));
  TestRegion t = TestRegion::make(m + 8 * MiB, 8 * MiB);  // owns [8, 16) MiB
  shard_region* r = t.r;
  RegionStats base = warm(r);
  struct Case {
    size_t off, len;
    const char* what;
  };
  const Case overlapping[] = {
      {8 * MiB, 8 * MiB, "identical"},
      {10 * MiB, 1 * MiB, "inside"},
      {8 * MiB - 4096, 1 * MiB, "over the start"},
      {16 * MiB - 1, 2 * MiB, "last byte"},
      {4 * MiB, 16 * MiB, "containing"},
      {8 * MiB - 1 * MiB, 1 * MiB + 1, "first byte"},
  };
  for (const Case& c : overlapping) {
    EXPECT_EQ(shard_region_add_memory(r, m + c.off, c.len), SHARD_MEMORY_OVERLAP) << c.what;
    EXPECT_EQ(t.st(), base) << c.what;
  }
  // Touching ranges do not overlap.
  ASSERT_EQ(t.add(m + 16 * MiB, 8 * MiB), SHARD_OK) << "adjacent above";
  ASSERT_EQ(t.add(m + 2 * MiB, 6 * MiB), SHARD_OK) << "adjacent below";
  EXPECT_EQ(shard_region_total_bytes(r), 22 * MiB);
  RegionStats grown = t.st();
  // Overlaps with the added ranges are caught too.
  EXPECT_EQ(shard_region_add_memory(r, m + 20 * MiB, 2 * MiB), SHARD_MEMORY_OVERLAP)
      << "inside added range";
  EXPECT_EQ(shard_region_add_memory(r, m + 23 * MiB, 2 * MiB), SHARD_MEMORY_OVERLAP)
      << "end of added range";
  EXPECT_EQ(shard_region_add_memory(r, m + 1 * MiB, 2 * MiB), SHARD_MEMORY_OVERLAP)
      << "start of added range";
  EXPECT_EQ(shard_region_add_memory(r, m, 64 * MiB), SHARD_MEMORY_OVERLAP) << "everything";
  EXPECT_EQ(t.st(), grown);
  ASSERT_EQ(t.add(m + 24 * MiB + 1, 8 * MiB), SHARD_OK) << "odd start, 1 byte gap";

  // Bad parameters.
  EXPECT_EQ(shard_region_add_memory(r, nullptr, 8 * MiB), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_add_memory(r, m + 40 * MiB, 0), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_add_memory(nullptr, m + 40 * MiB, 8 * MiB), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_total_bytes(r), 30 * MiB);

  // All the memory is usable: big blocks land in every range, inside them.
  std::vector<Block> blocks;
  const size_t bs = 960 * KiB;
  for (;;) {
    void* p = nullptr;
    shard_status s = shard_region_alloc(r, bs, 8, &p);
    if (s == SHARD_NO_MEMORY) break;
    ASSERT_EQ(s, SHARD_OK);
    ASSERT_TRUE(t.contains(p, bs)) << p;
    fill_sparse(p, bs, blocks.size());
    blocks.push_back({p, bs, 8, blocks.size()});
    ASSERT_LT(blocks.size(), 33u);
  }
  EXPECT_GE(blocks.size(), 15u) << "30 MiB in four ranges should hold at least 15 x 960 KiB";
  // Blocks came from more than one range.
  std::vector<int> hits(t.ranges.size(), 0);
  for (const Block& b : blocks)
    for (size_t i = 0; i < t.ranges.size(); ++i)
      if (reinterpret_cast<uintptr_t>(b.p) >= t.ranges[i].start &&
          reinterpret_cast<uintptr_t>(b.p) < t.ranges[i].end)
        hits[i]++;
  EXPECT_GE(std::count_if(hits.begin(), hits.end(), [](int h) { return h > 0; }), 3)
      << "added ranges left unused";
  for (const Block& b : blocks) {
    EXPECT_TRUE(check_sparse(b.p, b.size, b.seed));
    EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, b.align), SHARD_OK);
  }
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

// ---------------------------------------------------------------------------
// parameters of alloc / dealloc

TEST(RegionParams, AlignMustBeAPowerOfTwo) {
  TestRegion t = TestRegion::fresh(8 * MiB);
  RegionStats base = warm(t.r);
  void* p = reinterpret_cast<void*>(uintptr_t{0x42});
  for (size_t align : {size_t{3}, size_t{5}, size_t{6}, size_t{12}, size_t{24}, size_t{100},
                       size_t{65535}, size_t{65537}, (size_t{1} << 20) + 4096, SIZE_MAX}) {
    EXPECT_EQ(shard_region_alloc(t.r, 64, align, &p), SHARD_INVALID_PARAM) << "align " << align;
  }
  EXPECT_EQ(t.st(), base);
  // align 0 is taken as 1.
  ASSERT_EQ(shard_region_alloc(t.r, 24, 0, &p), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(t.r), 24u);
  EXPECT_EQ(shard_region_dealloc(t.r, p, 24, 0), SHARD_OK);
  // NULL out / NULL region.
  EXPECT_EQ(shard_region_alloc(t.r, 24, 8, nullptr), SHARD_INVALID_PARAM);
  EXPECT_EQ(shard_region_alloc(nullptr, 24, 8, &p), SHARD_INVALID_PARAM);
  EXPECT_EQ(t.st(), base);
}

// Deallocating a pointer the region did not hand out returns NOT_ALLOCATED
// and changes nothing: accounting, live blocks, later frees.
TEST(RegionParams, DeallocForeignPointerChangesNothing) {
  auto* mem = static_cast<unsigned char*>(map_memory(32 * MiB));
  TestRegion a = TestRegion::make(mem, 16 * MiB);
  TestRegion b = TestRegion::make(mem + 16 * MiB, 16 * MiB);  // side by side
  warm(a.r);
  warm(b.r);
  void *pa = nullptr, *pb = nullptr, *big = nullptr;
  ASSERT_EQ(shard_region_alloc(a.r, 48, 8, &pa), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(b.r, 48, 8, &pb), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(a.r, 3 * MiB, 8, &big), SHARD_OK);
  fill_pattern(pa, 48, 1);
  fill_pattern(pb, 48, 2);
  fill_sparse(big, 3 * MiB, 3);
  const RegionStats sa = a.st(), sb = b.st();

  uint64_t on_stack[8] = {};
  void* from_malloc = std::malloc(48);
  struct Foreign {
    void* p;
    size_t size;
    const char* what;
  };
  const Foreign foreign[] = {
      {on_stack, 48, "stack"},
      {from_malloc, 48, "malloc"},
      {pb, 48, "block of the region next door"},
      {a.r, 48, "the region's own header"},
      {mem + 16 * MiB - 4096, 48, "free space at the end of the region"},
      {mem + 8 * MiB + 64, 48, "middle of the region"},
      {reinterpret_cast<void*>(uintptr_t{4096}), 48, "low address"},
  };
  for (const Foreign& f : foreign) {
    EXPECT_EQ(shard_region_dealloc(a.r, f.p, f.size, 8), SHARD_NOT_ALLOCATED) << f.what;
    EXPECT_EQ(a.st(), sa) << f.what;
    EXPECT_EQ(b.st(), sb) << f.what;
  }
  // NULL is not a pointer the region handed out either.
  shard_status sn = shard_region_dealloc(a.r, nullptr, 48, 8);
  EXPECT_TRUE(sn == SHARD_NOT_ALLOCATED || sn == SHARD_INVALID_PARAM) << sn;
  EXPECT_EQ(a.st(), sa);

  EXPECT_EQ(check_pattern(pa, 48, 1), SIZE_MAX);
  EXPECT_EQ(check_pattern(pb, 48, 2), SIZE_MAX);
  EXPECT_TRUE(check_sparse(big, 3 * MiB, 3));
  // The refused frees did not enter any free list: the next blocks are new.
  std::vector<void*> fresh;
  for (int i = 0; i < 64; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(a.r, 48, 8, &p), SHARD_OK);
    EXPECT_TRUE(a.contains(p, 48)) << "a refused pointer came back from alloc: " << p;
    EXPECT_NE(p, pa);
    fresh.push_back(p);
  }
  for (void* p : fresh) EXPECT_EQ(shard_region_dealloc(a.r, p, 48, 8), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(a.r, pa, 48, 8), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(a.r, big, 3 * MiB, 8), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(b.r, pb, 48, 8), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(a.r), 0u);
  EXPECT_EQ(shard_region_used_bytes(b.r), 0u);
  std::free(from_malloc);
}

// A pointer into the middle of a live block was not handed out either.
TEST(RegionParams, DeallocInteriorPointerIsNotAllocated) {
  TestRegion t = TestRegion::fresh(32 * MiB);
  warm(t.r);
  struct Case {
    size_t size, offset;
  };
  for (Case c : {Case{64, 16}, Case{64, 8}, Case{4000, 2048}, Case{100000, 4096}, Case{6 * MiB, 8},
                 Case{6 * MiB, 1 * MiB}}) {
    SCOPED_TRACE("size " + std::to_string(c.size) + " offset " + std::to_string(c.offset));
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(t.r, c.size, 8, &p), SHARD_OK);
    fill_sparse(p, c.size, 5, 64);
    RegionStats s = t.st();
    EXPECT_EQ(
        shard_region_dealloc(t.r, static_cast<unsigned char*>(p) + c.offset, c.size - c.offset, 8),
        SHARD_NOT_ALLOCATED);
    EXPECT_EQ(t.st(), s);
    EXPECT_TRUE(check_sparse(p, c.size, 5, 64));
    EXPECT_EQ(shard_region_dealloc(t.r, p, c.size, 8), SHARD_OK);
  }
  EXPECT_EQ(shard_region_used_bytes(t.r), 0u);
}

// A block freed once is no longer a pointer the region handed out: a second
// dealloc must return NOT_ALLOCATED (a kernel allocator reports, it does not
// abort). Run in a child process so that an abort fails only this test.
int dealloc_twice(size_t size, size_t align) {
  TestRegion t = TestRegion::fresh(16 * MiB);
  void* keep = nullptr;  // keeps the page of the class in use
  void* p = nullptr;
  if (shard_region_alloc(t.r, size, align, &keep) != SHARD_OK) return 10;
  if (shard_region_alloc(t.r, size, align, &p) != SHARD_OK) return 11;
  if (shard_region_dealloc(t.r, p, size, align) != SHARD_OK) return 12;
  const RegionStats before = t.st();
  if (shard_region_dealloc(t.r, p, size, align) != SHARD_NOT_ALLOCATED) return 13;
  if (!(t.st() == before)) return 14;
  // The free list is intact: two fresh allocations are distinct.
  void *a = nullptr, *b = nullptr;
  if (shard_region_alloc(t.r, size, align, &a) != SHARD_OK ||
      shard_region_alloc(t.r, size, align, &b) != SHARD_OK)
    return 15;
  if (a == b || a == keep || b == keep) return 16;
  return 0;
}

TEST(RegionParamsDeath, DeallocTwiceIsNotAllocated) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(dealloc_twice(48, 8)), ::testing::ExitedWithCode(0), "") << "small block";
  EXPECT_EXIT(std::exit(dealloc_twice(20000, 8)), ::testing::ExitedWithCode(0), "")
      << "medium block";
  EXPECT_EXIT(std::exit(dealloc_twice(3 * MiB, 8)), ::testing::ExitedWithCode(0), "")
      << "huge block";
}

// ---------------------------------------------------------------------------
// alignments

TEST(RegionAlignment, UpTo64KiBInSmallRegion) {
  TestRegion t = TestRegion::fresh(16 * MiB);
  RegionStats base = warm(t.r);
  std::vector<Block> blocks;
  for (size_t align = 1; align <= 64 * KiB; align <<= 1) {
    for (size_t size : {size_t{1}, size_t{8}, size_t{100}, size_t{4096}, size_t{70000}}) {
      void* p = nullptr;
      ASSERT_EQ(shard_region_alloc(t.r, size, align, &p), SHARD_OK)
          << "size " << size << " align " << align;
      EXPECT_TRUE(is_aligned(p, align)) << p << " align " << align;
      EXPECT_TRUE(t.contains(p, size));
      fill_pattern(p, size, blocks.size());
      blocks.push_back({p, size, align, blocks.size()});
    }
    // Free every other block now, the rest at the end.
    if (align % 2) continue;
    Block b = blocks[blocks.size() - 2];
    blocks.erase(blocks.end() - 2);
    EXPECT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
    ASSERT_EQ(shard_region_dealloc(t.r, b.p, b.size, b.align), SHARD_OK);
  }
  size_t sum = 0;
  for (const Block& b : blocks) sum += b.size;
  EXPECT_EQ(shard_region_used_bytes(t.r), sum);
  free_all(t.r, blocks);
  EXPECT_EQ(t.st(), base);
}

TEST(RegionAlignment, MiBAlignmentsInBigRegion) {
  TestRegion t = TestRegion::fresh(256 * MiB);
  RegionStats base = warm(t.r);
  std::vector<Block> blocks;
  for (size_t align = 128 * KiB; align <= 8 * MiB; align <<= 1) {
    for (size_t size : {size_t{1}, size_t{64}, size_t{4096}, size_t{MiB + 1}, size_t{5 * MiB}}) {
      void* p = nullptr;
      ASSERT_EQ(shard_region_alloc(t.r, size, align, &p), SHARD_OK)
          << "size " << size << " align " << align;
      EXPECT_TRUE(is_aligned(p, align)) << p << " align " << align;
      EXPECT_TRUE(t.contains(p, size));
      fill_sparse(p, size, blocks.size());
      blocks.push_back({p, size, align, blocks.size()});
    }
  }
  size_t sum = 0;
  for (const Block& b : blocks) sum += b.size;
  EXPECT_EQ(shard_region_used_bytes(t.r), sum);
  for (const Block& b : blocks) {
    EXPECT_TRUE(check_sparse(b.p, b.size, b.seed));
    EXPECT_EQ(shard_region_dealloc(t.r, b.p, b.size, b.align), SHARD_OK);
  }
  EXPECT_EQ(t.st(), base);
}

// ---------------------------------------------------------------------------
// several regions, huge blocks, threads

TEST(RegionMulti, TwoRegionsSideBySideAreIndependent) {
  auto* mem = static_cast<unsigned char*>(map_memory(32 * MiB));
  TestRegion a = TestRegion::make(mem, 16 * MiB);
  TestRegion b = TestRegion::make(mem + 16 * MiB, 16 * MiB);
  RegionStats ba = warm(a.r), bb = warm(b.r);
  EXPECT_EQ(ba.total, 16 * MiB);
  EXPECT_EQ(bb.total, 16 * MiB);

  // Exhaust a with small blocks; b is untouched and still serves.
  std::vector<Block> in_a;
  for (;;) {
    void* p = nullptr;
    shard_status s = shard_region_alloc(a.r, 4000, 8, &p);
    if (s == SHARD_NO_MEMORY) break;
    ASSERT_EQ(s, SHARD_OK);
    ASSERT_TRUE(a.contains(p, 4000)) << "block of a outside a";
    fill_pattern(p, 4000, in_a.size());
    in_a.push_back({p, 4000, 8, in_a.size()});
    ASSERT_LT(in_a.size(), 4200u);
  }
  EXPECT_EQ(b.st(), bb) << "exhausting region a changed region b";
  std::vector<Block> in_b;
  for (int i = 0; i < 1000; ++i) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(b.r, 4000, 8, &p), SHARD_OK);
    ASSERT_TRUE(b.contains(p, 4000)) << "block of b outside b";
    fill_pattern(p, 4000, 100000 + i);
    in_b.push_back({p, 4000, 8, uint64_t(100000 + i)});
  }
  EXPECT_EQ(shard_region_used_bytes(a.r), in_a.size() * 4000);
  EXPECT_EQ(shard_region_used_bytes(b.r), in_b.size() * 4000);
  // Cross frees are refused.
  EXPECT_EQ(shard_region_dealloc(b.r, in_a[0].p, 4000, 8), SHARD_NOT_ALLOCATED);
  EXPECT_EQ(shard_region_dealloc(a.r, in_b[0].p, 4000, 8), SHARD_NOT_ALLOCATED);
  // Another thread uses both regions at once (one heap per region).
  std::vector<Block> from_thread_a, from_thread_b;
  int bad_status = 0;
  std::thread th([&] {
    for (int i = 0; i < 200; ++i) {
      void *p = nullptr, *q = nullptr;
      if (shard_region_alloc(b.r, 100, 8, &q) == SHARD_OK) {
        fill_pattern(q, 100, 5000 + i);
        from_thread_b.push_back({q, 100, 8, uint64_t(5000 + i)});
      }
      shard_status s = shard_region_alloc(a.r, 100, 8, &p);  // a is (nearly) full
      if (s == SHARD_OK) {
        fill_pattern(p, 100, 6000 + i);
        from_thread_a.push_back({p, 100, 8, uint64_t(6000 + i)});
      } else if (s != SHARD_NO_MEMORY) {
        bad_status++;
      }
    }
  });
  th.join();
  EXPECT_EQ(bad_status, 0);
  EXPECT_EQ(from_thread_b.size(), 200u);
  for (const Block& x : from_thread_b) EXPECT_TRUE(b.contains(x.p, x.size));
  for (const Block& x : from_thread_a) EXPECT_TRUE(a.contains(x.p, x.size));
  free_all(a.r, from_thread_a);
  free_all(b.r, from_thread_b);
  free_all(a.r, in_a);
  free_all(b.r, in_b);
  EXPECT_EQ(shard_region_used_bytes(a.r), 0u);
  EXPECT_EQ(shard_region_used_bytes(b.r), 0u);
  EXPECT_EQ(shard_region_total_bytes(a.r), 16 * MiB);
  EXPECT_EQ(shard_region_total_bytes(b.r), 16 * MiB);
}

// One thread using more regions than it keeps heaps for (8, most recently
// used first): every switch moves a heap to the front or gives the least
// recently used one back and adopts it again later. Blocks stay valid across
// those moves, frees land in the right region, and the accounting is exact.
TEST(RegionMulti, MoreRegionsThanHeapSlotsPerThread) {
  constexpr int kRegions = 12;
  auto* mem = static_cast<unsigned char*>(map_memory(kRegions * 2 * MiB));
  std::vector<TestRegion> regions;
  for (int i = 0; i < kRegions; ++i)
    regions.push_back(TestRegion::make(mem + i * 2 * MiB, 2 * MiB));
  std::vector<std::vector<Block>> live(kRegions);
  uint64_t seed = 0;
  // Round robin over all 12, then over 3, then in reverse: every slot state.
  auto step = [&](int i, size_t size) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(regions[i].r, size, 8, &p), SHARD_OK);
    ASSERT_TRUE(regions[i].contains(p, size));
    fill_pattern(p, size, seed);
    live[i].push_back({p, size, 8, seed++});
    if (live[i].size() > 3) {  // free the oldest
      const Block b = live[i].front();
      live[i].erase(live[i].begin());
      ASSERT_EQ(check_pattern(b.p, b.size, b.seed), SIZE_MAX);
      ASSERT_EQ(shard_region_dealloc(regions[(i + 1) % kRegions].r, b.p, b.size, 8),
                SHARD_NOT_ALLOCATED);
      ASSERT_EQ(shard_region_dealloc(regions[i].r, b.p, b.size, 8), SHARD_OK);
    }
  };
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < kRegions; ++i) step(i, 16 + 8 * size_t(round));
    for (int i = 0; i < 3 * kRegions; ++i) step(i % 3, 24);
    for (int i = kRegions; i-- > 0;) step(i, 200);
  }
  for (int i = 0; i < kRegions; ++i) {
    size_t used = 0;
    for (const Block& b : live[i]) used += b.size;
    EXPECT_EQ(shard_region_used_bytes(regions[i].r), used) << "region " << i;
    free_all(regions[i].r, live[i]);
    EXPECT_EQ(shard_region_used_bytes(regions[i].r), 0u) << "region " << i;
  }
}

TEST(RegionMulti, HugeAllocations) {
  TestRegion t = TestRegion::fresh(512 * MiB);
  RegionStats base = warm(t.r);
  std::vector<Block> blocks;
  size_t sum = 0;
  for (size_t size :
       {4 * MiB, 4 * MiB + 1, 8 * MiB, 8 * MiB - 8, 33 * MiB, 100 * MiB + 12345, 2 * MiB + 3}) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(t.r, size, 16, &p), SHARD_OK) << "size " << size;
    EXPECT_TRUE(is_aligned(p, 16));
    EXPECT_TRUE(t.contains(p, size));
    fill_sparse(p, size, size);
    blocks.push_back({p, size, 16, size});
    sum += size;
    EXPECT_EQ(shard_region_used_bytes(t.r), sum);
    EXPECT_LE(shard_region_used_bytes(t.r) + shard_region_available_bytes(t.r), t.st().total);
  }
  // No two huge blocks overlap.
  std::vector<Block> sorted = blocks;
  std::sort(sorted.begin(), sorted.end(), [](const Block& x, const Block& y) { return x.p < y.p; });
  for (size_t i = 1; i < sorted.size(); ++i)
    EXPECT_LE(static_cast<unsigned char*>(sorted[i - 1].p) + sorted[i - 1].size, sorted[i].p);
  for (const Block& b : blocks) {
    EXPECT_TRUE(check_sparse(b.p, b.size, b.seed)) << "size " << b.size;
    EXPECT_EQ(shard_region_dealloc(t.r, b.p, b.size, b.align), SHARD_OK);
  }
  EXPECT_EQ(t.st(), base);
  // The whole region is free again: one block of nearly all of it fits.
  void* p = nullptr;
  ASSERT_EQ(shard_region_alloc(t.r, 400 * MiB, 8, &p), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(t.r, p, 400 * MiB, 8), SHARD_OK);
}

// used_bytes is exact once threads are quiet, whichever thread allocated or
// freed each block.
TEST(RegionMulti, AccountingExactAcrossThreads) {
  TestRegion t = TestRegion::fresh(256 * MiB);
  warm(t.r);
  constexpr int kThreads = 4;
  std::vector<std::vector<Block>> per(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int k = 0; k < kThreads; ++k)
    ts.emplace_back([&, k] {
      Rng rng(k);
      for (int i = 0; i < 5000; ++i) {
        size_t size = rng.chance(1) ? rng.below(200 * KiB) : rng.below(2000);
        size_t align = size_t{1} << rng.below(8);
        void* p = nullptr;
        if (shard_region_alloc(t.r, size, align, &p) != SHARD_OK || !is_aligned(p, align)) {
          failures++;
          continue;
        }
        fill_pattern(p, size, uint64_t(k) << 32 | unsigned(i));
        per[k].push_back({p, size, align, uint64_t(k) << 32 | unsigned(i)});
      }
    });
  for (auto& th : ts) th.join();
  ASSERT_EQ(failures.load(), 0);
  size_t sum = 0;
  for (auto& v : per)
    for (auto& b : v) sum += b.size;
  EXPECT_EQ(shard_region_used_bytes(t.r), sum);
  // Each thread's blocks are freed by the next thread (remote frees).
  ts.clear();
  for (int k = 0; k < kThreads; ++k)
    ts.emplace_back([&, k] {
      for (const Block& b : per[(k + 1) % kThreads]) {
        if (check_pattern(b.p, b.size, b.seed) != SIZE_MAX) failures++;
        if (shard_region_dealloc(t.r, b.p, b.size, b.align) != SHARD_OK) failures++;
      }
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(shard_region_used_bytes(t.r), 0u);
  RegionStats s = t.st();
  EXPECT_LE(s.used + s.available, s.total);
}

}  // namespace
