// The C API (process heap, memory from the OS): malloc semantics of
// shard_malloc / calloc / realloc / free / malloc_aligned / usable_size.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "support/resident_pages.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr size_t kPtrdiffMax = size_t(PTRDIFF_MAX);

// Position-only pattern (survives a realloc that moves the block).
unsigned char pos_byte(size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131 + (i >> 8) * 7 + seed) ^ (seed >> 3));
}

void fill_pos(void* p, size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = pos_byte(i, seed);
}

// First offset in [0, n) that differs, or SIZE_MAX.
size_t check_pos(const void* p, size_t n, unsigned seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != pos_byte(i, seed)) return i;
  return SIZE_MAX;
}

bool all_zero(const void* p, size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------

TEST(CApi, MallocZeroIsUniqueAndNonNull) {
  std::vector<void*> ps;
  for (int i = 0; i < 1000; ++i) {
    void* p = shard_malloc(0);
    ASSERT_NE(p, nullptr);
    ps.push_back(p);
  }
  std::vector<void*> sorted = ps;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "malloc(0) returned a pointer twice";
  for (void* p : ps) shard_free(p);
  void* c = shard_calloc(0, 0);
  ASSERT_NE(c, nullptr);
  void* d = shard_calloc(0, 16);
  ASSERT_NE(d, nullptr);
  void* e = shard_calloc(16, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_NE(c, d);
  EXPECT_NE(d, e);
  shard_free(c);
  shard_free(d);
  shard_free(e);
}

TEST(CApi, FreeNullIsNoop) {
  shard_free(nullptr);
  EXPECT_EQ(shard_usable_size(nullptr), 0u);
  void* p = shard_malloc(32);
  ASSERT_NE(p, nullptr);
  shard_free(nullptr);
  fill_pos(p, 32, 1);
  EXPECT_EQ(check_pos(p, 32, 1), SIZE_MAX);
  shard_free(p);
}

TEST(CApi, BasicAlignmentOfMalloc) {
  for (size_t size = 1; size <= 4096; size += (size < 256 ? 1 : 61)) {
    void* p = shard_malloc(size);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(is_aligned(p, 8)) << "size " << size << " -> " << p;
    if (size % 16 == 0) {
      EXPECT_TRUE(is_aligned(p, 16)) << "size " << size << " -> " << p;
    }
    shard_free(p);
  }
}

TEST(CApi, TooLargeFailsWithENOMEM) {
  const size_t sizes[] = {SIZE_MAX,        SIZE_MAX - 1, SIZE_MAX - 4096,
                          kPtrdiffMax + 1, kPtrdiffMax,  size_t{1} << 50};
  for (size_t size : sizes) {
    errno = 0;
    EXPECT_EQ(shard_malloc(size), nullptr) << "malloc(" << size << ")";
    EXPECT_EQ(errno, ENOMEM) << "malloc(" << size << ")";
    errno = 0;
    EXPECT_EQ(shard_malloc_aligned(size, 64), nullptr) << "malloc_aligned(" << size << ", 64)";
    EXPECT_EQ(errno, ENOMEM) << "malloc_aligned(" << size << ", 64)";
    errno = 0;
    EXPECT_EQ(shard_calloc(1, size), nullptr) << "calloc(1, " << size << ")";
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(shard_realloc(nullptr, size), nullptr) << "realloc(NULL, " << size << ")";
    EXPECT_EQ(errno, ENOMEM);
  }
  // An alignment that is a power of two but cannot be served.
  errno = 0;
  EXPECT_EQ(shard_malloc_aligned(16, size_t{1} << 62), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // The heap is still fine afterwards.
  void* p = shard_malloc(100);
  ASSERT_NE(p, nullptr);
  shard_free(p);
}

TEST(CApi, CallocOverflowFailsWithENOMEM) {
  struct Case {
    size_t n, size;
  };
  const Case cases[] = {
      {SIZE_MAX, 2},
      {2, SIZE_MAX},
      {SIZE_MAX / 2 + 1, 2},                     // wraps to exactly 0
      {size_t{1} << 32, size_t{1} << 32},        // wraps to 0
      {(size_t{1} << 32) + 1, size_t{1} << 32},  // wraps to 2^32
      {kPtrdiffMax / 2 + 1, 2},                  // no wrap, but > PTRDIFF_MAX
      {SIZE_MAX, SIZE_MAX},
      {3, SIZE_MAX / 3 + 1},
  };
  for (const Case& c : cases) {
    errno = 0;
    EXPECT_EQ(shard_calloc(c.n, c.size), nullptr) << "calloc(" << c.n << ", " << c.size << ")";
    EXPECT_EQ(errno, ENOMEM) << "calloc(" << c.n << ", " << c.size << ")";
  }
}

TEST(CApi, MallocAlignedRejectsNonPowerOfTwo) {
  for (size_t align : {size_t{3}, size_t{6}, size_t{12}, size_t{24}, size_t{48}, size_t{100},
                       size_t{1000}, (size_t{1} << 20) + 1, size_t{3} << 20, SIZE_MAX}) {
    errno = 0;
    EXPECT_EQ(shard_malloc_aligned(64, align), nullptr) << "align " << align;
    EXPECT_EQ(errno, EINVAL) << "align " << align;
  }
}

TEST(CApi, CallocZeroesFreshMemory) {
  for (size_t size : {size_t{1}, size_t{8}, size_t{24}, size_t{100}, size_t{1000}, size_t{8000},
                      size_t{20000}, size_t{130000}, 1 * MiB, 5 * MiB + 3}) {
    for (size_t n : {size_t{1}, size_t{3}}) {
      void* p = shard_calloc(n, size);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(all_zero(p, n * size)) << "calloc(" << n << ", " << size << ")";
      EXPECT_GE(shard_usable_size(p), n * size);
      shard_free(p);
    }
  }
}

// Fill blocks with garbage, free them, calloc the same sizes: the reused
// (dirty) memory must come back zeroed.
TEST(CApi, CallocZeroesReusedMemory) {
  for (size_t size : {size_t{16}, size_t{40}, size_t{256}, size_t{1000}, size_t{4096},
                      size_t{12000}, size_t{70000}, size_t{200000}, 2 * MiB, 9 * MiB}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const size_t count = size >= MiB ? 4 : size >= 64 * KiB ? 20 : 300;
    for (int round = 0; round < 3; ++round) {
      std::vector<void*> ps;
      for (size_t i = 0; i < count; ++i) {
        void* p = shard_malloc(size);
        ASSERT_NE(p, nullptr);
        std::memset(p, 0xab, shard_usable_size(p));
        ps.push_back(p);
      }
      for (void* p : ps) shard_free(p);
      ps.clear();
      size_t dirty = 0;
      for (size_t i = 0; i < count; ++i) {
        void* p = shard_calloc(1, size);
        ASSERT_NE(p, nullptr);
        dirty += !all_zero(p, size);
        std::memset(p, 0xcd, size);  // dirty again for the next round
        ps.push_back(p);
      }
      EXPECT_EQ(dirty, 0u) << "calloc returned non-zero bytes in round " << round;
      for (void* p : ps) shard_free(p);
    }
  }
}

TEST(CApi, ReallocNullIsMalloc) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{300000}, 3 * MiB}) {
    void* p = shard_realloc(nullptr, size);
    ASSERT_NE(p, nullptr) << "realloc(NULL, " << size << ")";
    EXPECT_GE(shard_usable_size(p), size);
    fill_pos(p, size, 3);
    EXPECT_EQ(check_pos(p, size, 3), SIZE_MAX);
    shard_free(p);
  }
}

// Grow through every kind of block and shrink back; the common prefix is
// preserved at each step.
TEST(CApi, ReallocPreservesContentsAcrossSizeClasses) {
  const size_t up[] = {1,    8,     16,     24,     100,    1000,        8000,     8192,
                       8193, 70000, 131072, 131073, 600000, 5 * MiB + 1, 40 * MiB, 65 * MiB};
  std::vector<size_t> seq(std::begin(up), std::end(up));
  for (size_t i = std::size(up) - 1; i-- > 0;) seq.push_back(up[i]);
  for (size_t i = 0; i < std::size(up); i += 3) seq.push_back(up[i]);  // big jumps up again
  void* p = nullptr;
  size_t cur = 0;
  unsigned seed = 0;
  for (size_t next : seq) {
    void* q = shard_realloc(p, next);
    ASSERT_NE(q, nullptr) << "realloc(" << cur << " -> " << next << ")";
    EXPECT_GE(shard_usable_size(q), next);
    size_t keep = std::min(cur, next);
    EXPECT_EQ(check_pos(q, keep, seed), SIZE_MAX)
        << "realloc " << cur << " -> " << next << " lost contents";
    fill_pos(q, next, ++seed);
    p = q;
    cur = next;
  }
  shard_free(p);
}

// A huge block grown a little at a time (stress-ng's bigheap: 64 KiB a
// call) moves with room to grow again (core/realloc_growth.h): a few dozen
// copies on the way to 48 MiB, where moving to the exact size copied it at
// every 512 KiB slot crossed (96 copies of up to 48 MiB). One word in every
// 4 KiB carries its position, checked after every move. Checked builds too:
// the block grows in place into the room (its size record rewritten).
TEST(CApi, AHugeBlockGrownInSmallStepsMovesRarely) {
  constexpr size_t kStep = 64 * 1024;
  constexpr size_t kWordEvery = 4096;
  size_t cur = 256 * 1024;
  auto* p = static_cast<unsigned char*>(shard_malloc(cur));
  ASSERT_NE(p, nullptr);
  auto word_at = [](size_t at) { return uint64_t{at} * 0x9e3779b97f4a7c15ULL; };
  auto stamp = [&](unsigned char* b, size_t from, size_t to) {
    for (size_t at = (from + kWordEvery - 1) / kWordEvery * kWordEvery; at + 8 <= to;
         at += kWordEvery) {
      const uint64_t v = word_at(at);
      std::memcpy(b + at, &v, 8);
    }
  };
  stamp(p, 0, cur);
  size_t moves = 0;
  while (cur < 48 * MiB) {
    const size_t next = cur + kStep;
    auto* q = static_cast<unsigned char*>(shard_realloc(p, next));
    ASSERT_NE(q, nullptr) << "realloc(" << cur << " -> " << next << ")";
    ASSERT_GE(shard_usable_size(q), next);
    if (q != p) {
      ++moves;
      for (size_t at = 0; at + 8 <= cur; at += kWordEvery) {
        uint64_t v;
        std::memcpy(&v, q + at, 8);
        ASSERT_EQ(v, word_at(at)) << "word at " << at << " after a move to " << next;
      }
    }
    stamp(q, cur, next);
    p = q;
    cur = next;
  }
  EXPECT_LE(moves, 40u) << "moves on the way to " << cur << " bytes (96 without room to grow)";
  EXPECT_GE(moves, 1u);
  shard_free(p);
}

// The room a moving realloc adds (core/realloc_growth.h) costs memory only
// where the program writes it: placed on a span an earlier block wrote (the
// most resident span is preferred), its pages go back (release_room).
TEST(CApi, TheRoomOfAMovedBlockOnAWrittenSpanIsNotResident) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds fill the room with the slack pattern";
  const size_t big = 64 * MiB;
  void* earlier = shard_malloc(big);
  ASSERT_NE(earlier, nullptr);
  std::memset(earlier, 1, big);
  shard_free(earlier);  // its span stays resident until the purge delay
  const size_t size = 8 * MiB;
  void* p = shard_malloc(size);
  ASSERT_NE(p, nullptr);
  std::memset(p, 2, size);
  const size_t grown = shard_usable_size(p) + 4096;
  auto* q = static_cast<unsigned char*>(shard_realloc(p, grown));
  ASSERT_NE(q, nullptr);
  const size_t usable = shard_usable_size(q);
  ASSERT_GE(usable, grown + 512 * 1024) << "the block moved without room";
  EXPECT_EQ(q[size - 1], 2);
  const size_t room_pages = (usable - grown) / kOsPage;
  EXPECT_LE(resident_pages(q + grown, usable - grown), room_pages / 8)
      << "of " << room_pages << " pages of room";
  shard_free(q);
}

// Failed realloc leaves the block alone.
TEST(CApi, FailedReallocKeepsBlock) {
  for (size_t size : {size_t{100}, size_t{50000}, 2 * MiB}) {
    void* p = shard_malloc(size);
    ASSERT_NE(p, nullptr);
    fill_pos(p, size, 9);
    errno = 0;
    EXPECT_EQ(shard_realloc(p, SIZE_MAX), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(shard_realloc(p, kPtrdiffMax + 1), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(check_pos(p, size, 9), SIZE_MAX);
    void* q = shard_realloc(p, size * 2);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(check_pos(q, size, 9), SIZE_MAX);
    shard_free(q);
  }
}

// Many blocks reallocated at random, each checked against its own pattern.
TEST(CApi, RandomReallocs) {
  constexpr size_t kBlocks = 64;
  struct B {
    void* p = nullptr;
    size_t size = 0;
    unsigned seed = 0;
  };
  std::vector<B> bs(kBlocks);
  Rng rng(11);
  const size_t steps = scaled(20000, sanitizer_factor(), 2000);
  size_t bad = 0;
  for (size_t step = 0; step < steps; ++step) {
    B& b = bs[rng.below(kBlocks)];
    size_t size = size_t{1} << rng.below(rng.chance(3) ? 23 : 17);
    size += rng.below(size);
    void* q = shard_realloc(b.p, size);
    ASSERT_NE(q, nullptr) << "step " << step;
    bad += check_pos(q, std::min(size, b.size), b.seed) != SIZE_MAX;
    b.p = q;
    b.size = size;
    b.seed = unsigned(step);
    fill_pos(q, size, b.seed);
  }
  for (B& b : bs) {
    bad += check_pos(b.p, b.size, b.seed) != SIZE_MAX;
    shard_free(b.p);
  }
  EXPECT_EQ(bad, 0u) << "realloc lost or mixed up contents";
}

// Every power of two from 1 to 64 MiB, several sizes each; three blocks per
// (align, size) live at once must not overlap.
TEST(CApi, MallocAlignedEveryPowerOfTwo) {
  for (size_t align = 1; align <= 64 * MiB; align <<= 1) {
    std::vector<size_t> sizes = {1, 8, 24, 100, 4096, 65536 + 8, MiB + 1, align};
    if (align <= 4 * MiB) sizes.push_back(align + align / 2);
    for (size_t size : sizes) {
      SCOPED_TRACE("align " + std::to_string(align) + " size " + std::to_string(size));
      void* ps[3];
      for (void*& p : ps) {
        errno = 0;
        p = shard_malloc_aligned(size, align);
        ASSERT_NE(p, nullptr) << "errno " << errno;
        EXPECT_TRUE(is_aligned(p, align)) << p;
        EXPECT_GE(shard_usable_size(p), size);
        fill_sparse(p, size, reinterpret_cast<uintptr_t>(&p), 1024);
      }
      for (void*& p : ps) EXPECT_TRUE(check_sparse(p, size, reinterpret_cast<uintptr_t>(&p), 1024));
      std::sort(std::begin(ps), std::end(ps));
      EXPECT_LE(static_cast<char*>(ps[0]) + size, ps[1]);
      EXPECT_LE(static_cast<char*>(ps[1]) + size, ps[2]);
      for (void* p : ps) shard_free(p);
    }
  }
}

// usable_size >= requested, and all of it can be written without touching
// any other live block.
TEST(CApi, UsableSizeIsWritable) {
  std::vector<size_t> sizes;
  for (size_t s = 0; s <= 300; ++s) sizes.push_back(s);
  for (size_t s = 301; s < 200000; s = s * 9 / 8 + 7) sizes.push_back(s);
  for (size_t s : {512 * KiB - 1, 512 * KiB, 512 * KiB + 1, 3 * MiB + 5}) sizes.push_back(s);
  struct B {
    void* p;
    size_t usable;
  };
  std::vector<B> live;
  for (size_t size : sizes) {
    void* p = shard_malloc(size);
    ASSERT_NE(p, nullptr);
    size_t u = shard_usable_size(p);
    EXPECT_GE(u, size) << "size " << size;
    if (size >= 64 && size <= 128 * KiB) {
      EXPECT_LE(u, size + size / 4 + 64) << "size " << size << ": too much waste";
    }
    live.push_back({p, u});
    fill_pattern(p, u, 1);
  }
  for (const B& b : live)
    EXPECT_EQ(check_pattern(b.p, b.usable, 1), SIZE_MAX) << "usable ranges overlap";
  for (const B& b : live) shard_free(b.p);
  for (size_t align : {size_t{16}, size_t{256}, size_t{4096}, size_t{65536}}) {
    for (size_t size : {size_t{1}, size_t{100}, size_t{5000}}) {
      void* p = shard_malloc_aligned(size, align);
      ASSERT_NE(p, nullptr);
      EXPECT_GE(shard_usable_size(p), size);
      std::memset(p, 0x11, shard_usable_size(p));
      shard_free(p);
    }
  }
}

// Blocks allocated by one thread are freed by another, including after the
// allocating thread exited; contents survive and memory is reused.
TEST(CApi, CrossThreadFree) {
  constexpr size_t kN = 20000;
  std::vector<void*> ps(kN);
  std::thread producer([&] {
    Rng rng(3);
    for (size_t i = 0; i < kN; ++i) {
      size_t size = 16 + rng.below(rng.chance(1) ? 200000 : 2000);
      ps[i] = shard_malloc(size);
      if (ps[i]) {
        std::memcpy(ps[i], &size, sizeof size);
        fill_pattern(static_cast<char*>(ps[i]) + 8, size - 8, i);
      }
    }
  });
  producer.join();  // exited: its heap is abandoned
  size_t bad = 0;
  for (size_t i = 0; i < kN; ++i) {
    ASSERT_NE(ps[i], nullptr);
    size_t size;
    std::memcpy(&size, ps[i], sizeof size);
    bad += check_pattern(static_cast<char*>(ps[i]) + 8, size - 8, i) != SIZE_MAX;
    if (i % 2) shard_free(ps[i]);
  }
  std::thread consumer([&] {
    for (size_t i = 0; i < kN; i += 2) shard_free(ps[i]);
  });
  consumer.join();
  EXPECT_EQ(bad, 0u);
  // The same thread (main) keeps working.
  for (int i = 0; i < 1000; ++i) {
    void* p = shard_malloc(100);
    ASSERT_NE(p, nullptr);
    fill_pattern(p, 100, i);
    EXPECT_EQ(check_pattern(p, 100, i), SIZE_MAX);
    shard_free(p);
  }
}

// ---------------------------------------------------------------------------
// Invalid frees print one line and abort (shardalloc.h).

class CApiDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void free_stack_pointer() {
  uint64_t on_stack[4] = {1, 2, 3, 4};
  void* volatile p = on_stack;
  shard_free(p);
}

void free_glibc_pointer() {
  void* volatile p = std::malloc(64);
  shard_free(p);
}

void double_free() {
  void* volatile p = shard_malloc(64);
  shard_free(p);
  shard_free(p);
}

void free_interior_pointer() {
  char* volatile p = static_cast<char*>(shard_malloc(256));
  shard_free(p + 16);
}

TEST_F(CApiDeath, FreeOfStackPointerAborts) {
  EXPECT_EXIT(free_stack_pointer(), ::testing::KilledBySignal(SIGABRT), ".+");
}

TEST_F(CApiDeath, FreeOfGlibcPointerAborts) {
  EXPECT_EXIT(free_glibc_pointer(), ::testing::KilledBySignal(SIGABRT), ".+");
}

TEST_F(CApiDeath, DoubleFreeAborts) {
  EXPECT_EXIT(double_free(), ::testing::KilledBySignal(SIGABRT), ".+");
}

TEST_F(CApiDeath, InteriorPointerFreeAborts) {
  EXPECT_EXIT(free_interior_pointer(), ::testing::KilledBySignal(SIGABRT), ".+");
}

}  // namespace
