// Checked mode: every row of docs/reliability.md's "Checked mode" table.
// Each corruption is made in a death-test child (hostile.h: threadsafe style).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "hostile/hostile.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"

namespace {

using hostile::KiB;
using hostile::MiB;

#define CHECKED_FATAL(what) "shardalloc: fatal: " what
constexpr const char* kDoubleFree = CHECKED_FATAL("double free detected");
constexpr const char* kOverflow =
    CHECKED_FATAL("heap corruption: the bytes after the block were overwritten");
constexpr const char* kCheckOverflow =
    CHECKED_FATAL("heap check: the bytes after a live block were overwritten");
constexpr const char* kUseAfterFree = CHECKED_FATAL(
    "(heap corruption: a free block was overwritten|heap check: a free list links|heap corruption: "
    "a freed block was "
    "written to|heap check: a freed block was written to)");

// Keeps the compiler from proving a block dead and dropping the writes under test.
void* touch(void* p) {
  asm volatile("" : : "r"(p) : "memory");
  return p;
}

TEST(CheckedMode, LibraryIsChecked) { EXPECT_EQ(shard_is_checked(), 1); }

// The trailer takes the last 16 bytes of a block: a request of n bytes gets
// the class of n + 16, and the usable size is n.
TEST(CheckedMode, UsableSizeIsTheSizeAskedFor) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{8}, size_t{24}, size_t{100}, size_t{1000}, 5 * KiB,
                   100 * KiB, 3 * MiB}) {
    auto* p = static_cast<unsigned char*>(shard_malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t usable = shard_usable_size(p);
    EXPECT_EQ(usable, n) << n;
    std::memset(p, 0xA5, usable);  // the whole usable size is the caller's
    shard_free(p);
  }
}

// Links inside freed blocks are encoded: neither null nor a block address.
TEST(CheckedMode, FreeListLinksAreEncoded) {
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(shard_malloc(48));
  for (void* p : blocks) shard_free(p);
  int plain = 0;
  for (void* p : blocks) {
    uintptr_t link;
    std::memcpy(&link, p, sizeof link);
    if (link == 0) ++plain;
    for (void* q : blocks) plain += link == reinterpret_cast<uintptr_t>(q);
  }
  EXPECT_EQ(plain, 0);
  EXPECT_GT(shard_check_heap(), 0u);
}

TEST(CheckedModeDeath, DoubleFreeNotInARow) {
  EXPECT_SHARD_ABORT(
      {
        void* keep = shard_malloc(32);
        void* a = shard_malloc(32);
        void* b = shard_malloc(32);
        shard_free(a);
        shard_free(b);
        shard_free(a);  // a is under b on the list: only the canary knows
        touch(keep);
      },
      kDoubleFree);
}

TEST(CheckedModeDeath, DoubleFreeFromAnotherThread) {
  EXPECT_SHARD_ABORT(
      {
        void* keep = shard_malloc(64);
        void* a = shard_malloc(64);
        void* b = shard_malloc(64);
        std::thread([&] {
          shard_free(a);
          shard_free(b);
        }).join();
        shard_free(a);
        touch(keep);
      },
      kDoubleFree);
}

TEST(CheckedModeDeath, DoubleFreeOfAHugeBlock) {
  EXPECT_SHARD_ABORT(
      {
        void* a = shard_malloc(2 * MiB);
        void* keep = shard_malloc(2 * MiB);
        shard_free(a);
        shard_free(a);
        touch(keep);
      },
      CHECKED_FATAL("(double free detected|free of a pointer that is not allocated)"));
}

TEST(CheckedModeDeath, OverflowByOneByteIsCaughtAtFree) {
  EXPECT_SHARD_ABORT(
      {
        auto* p = static_cast<unsigned char*>(shard_malloc(40));
        p[shard_usable_size(p)] = 0;  // one byte past the usable size
        shard_free(p);
      },
      kOverflow);
}

TEST(CheckedModeDeath, OverflowOfAnAlignedBlockIsCaughtAtFree) {
  EXPECT_SHARD_ABORT(
      {
        auto* p = static_cast<unsigned char*>(shard_malloc_aligned(200, 256));
        std::memset(p, 1, shard_usable_size(p) + 3);
        shard_free(p);
      },
      kOverflow);
}

TEST(CheckedModeDeath, OverflowOfAHugeBlockIsCaughtAtFree) {
  EXPECT_SHARD_ABORT(
      {
        auto* p = static_cast<unsigned char*>(shard_malloc(MiB + 5));
        p[shard_usable_size(p) + 1] ^=
            0xff;  // always a change (a fixed value matched the random canary byte 1 time in 256)
        shard_free(p);
      },
      kOverflow);
}

TEST(CheckedModeDeath, OverflowOfALiveBlockIsCaughtByCheckHeap) {
  EXPECT_SHARD_ABORT(
      {
        auto* p = static_cast<unsigned char*>(shard_malloc(100));
        std::memset(p, 0x5A, shard_usable_size(p) + 8);
        shard_check_heap();
      },
      kCheckOverflow);
}

// A freed block's link overwritten by a stale pointer: found when the list
// reaches it (by allocation or by shard_check_heap), never followed.
TEST(CheckedModeDeath, WriteAfterFreeIsCaughtByAllocation) {
  EXPECT_SHARD_ABORT(
      {
        std::vector<void*> blocks;
        for (int i = 0; i < 100; ++i) blocks.push_back(shard_malloc(32));
        auto* victim = static_cast<uintptr_t*>(blocks[50]);
        for (void* p : blocks) shard_free(p);
        *victim = 0x4141414141414141;  // a use after free
        // Further frees push the victim out of the quarantine, which checks it.
        for (int i = 0; i < 400; ++i) shard_free(touch(shard_malloc(32)));
      },
      kUseAfterFree);
}

TEST(CheckedModeDeath, WriteAfterFreeIsCaughtByCheckHeap) {
  EXPECT_SHARD_ABORT(
      {
        void* keep = shard_malloc(32);
        auto* victim = static_cast<uintptr_t*>(shard_malloc(32));
        shard_free(victim);
        victim[0] ^= 0x10;  // nudge the link to another address
        touch(keep);
        shard_check_heap();
      },
      kUseAfterFree);
}

// The arena slot (core/config.h: kSegmentSize); a huge block spans several.
constexpr size_t kSlot = 512 * KiB;

// The first slot boundary at or after p.
uintptr_t first_slot_start(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) + kSlot - 1) & ~(kSlot - 1);
}

// Whether the byte at p can be read (the kernel copies it into a pipe, or
// fails with EFAULT), without a fault in this process.
bool readable(const void* p) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const ssize_t n = write(fds[1], p, 1);
  const int err = errno;
  close(fds[0]);
  close(fds[1]);
  if (n != 1 && err != EFAULT) std::abort();
  return n == 1;
}

// A quarantined huge block is inaccessible, but for the first OS page of each
// slot it covers: a statistics walk that finds a span's header being set up or
// released reads the next slot's header (core/heap_walk.h). It read one inside
// a quarantined block and died of SIGSEGV (api.StatsConcurrent.ProcessHeap,
// 8 runs in 40 in the checked build).
TEST(CheckedMode, AQuarantinedHugeBlockLeavesEverySlotHeaderReadable) {
  const size_t size = 3 * MiB + 100;
  auto* block = static_cast<unsigned char*>(shard_malloc(size));
  ASSERT_NE(block, nullptr);
  std::memset(block, 0x41, size);
  const uintptr_t first = first_slot_start(block);
  const uintptr_t end = reinterpret_cast<uintptr_t>(block) + size;
  shard_free(block);  // the newest block in the quarantine stays there
  int slots = 0;
  for (uintptr_t slot = first; slot < end; slot += kSlot, ++slots) {
    EXPECT_TRUE(readable(reinterpret_cast<void*>(slot))) << "slot start " << slots;
    EXPECT_TRUE(readable(reinterpret_cast<void*>(slot + 4095)));
    if (slot + 8192 < end) {
      EXPECT_FALSE(readable(reinterpret_cast<void*>(slot + 4096)));
    }
  }
  EXPECT_GE(slots, 6);
  EXPECT_FALSE(readable(block));
  EXPECT_FALSE(readable(block + size - 1));
}

// The same for a block aligned past a slot, which starts on a slot boundary:
// its own first 4 KiB stay readable (poisoned), the rest does not.
TEST(CheckedMode, AQuarantinedSlotAlignedHugeBlockLeavesItsSlotStartsReadable) {
  const size_t size = 2 * MiB;
  auto* block = static_cast<unsigned char*>(shard_malloc_aligned(size, MiB));
  ASSERT_NE(block, nullptr);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(block) % kSlot, 0u);
  std::memset(block, 0x41, size);
  shard_free(block);
  for (size_t offset = 0; offset < size; offset += kSlot) {
    EXPECT_TRUE(readable(block + offset)) << offset;
    EXPECT_FALSE(readable(block + offset + 4096)) << offset;
  }
  EXPECT_NE(block[10], 0x41);  // poison
}

// Lines of /proc/self/maps: the process's memory mappings.
size_t mappings() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) std::abort();
  size_t lines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  return lines;
}

// A huge block larger than the quarantine's budget (8 MiB) is freed at once:
// quarantined, every slot of it would cost two mappings (its first page stays
// readable), and one free of a 16 GiB block used up vm.max_map_count
// (adversarial review).
TEST(CheckedMode, AHugeBlockLargerThanTheQuarantineIsFreedAtOnce) {
  const size_t size = 64 * MiB;
  void* block = shard_malloc(size);
  ASSERT_NE(block, nullptr);
  const size_t before = mappings();
  shard_free(block);
  EXPECT_LT(mappings(), before + 8);  // quarantined: about 256 more
  EXPECT_TRUE(readable(block));       // its slots are back in the arena
}

TEST(CheckedModeDeath, DoubleFreeOfAHugeBlockLargerThanTheQuarantine) {
  EXPECT_SHARD_ABORT(
      {
        void* a = shard_malloc(16 * MiB);
        shard_free(a);
        shard_free(a);
      },
      CHECKED_FATAL("(double free detected|free of a pointer that is not allocated)"));
}

// Those readable pages hold poison, checked at eviction and by shard_check_heap.
TEST(CheckedModeDeath, WriteAfterFreeToAHugeBlocksReadablePageIsCaughtByCheckHeap) {
  EXPECT_SHARD_ABORT(
      {
        auto* block = static_cast<unsigned char*>(shard_malloc(2 * MiB));
        const uintptr_t slot = first_slot_start(block);
        shard_free(block);
        reinterpret_cast<unsigned char*>(slot)[100] ^= 1;  // a use after free
        shard_check_heap();
      },
      kUseAfterFree);
}

TEST(CheckedModeDeath, WriteAfterFreeToAHugeBlocksReadablePageIsCaughtAtEviction) {
  EXPECT_SHARD_ABORT(
      {
        auto* block = static_cast<unsigned char*>(shard_malloc(2 * MiB));
        const uintptr_t slot = first_slot_start(block);
        shard_free(block);
        reinterpret_cast<unsigned char*>(slot)[4000] = 0;  // a use after free
        // Further huge frees push the victim out of the quarantine.
        for (int i = 0; i < 64; ++i) shard_free(touch(shard_malloc(2 * MiB)));
      },
      kUseAfterFree);
}

TEST(CheckedModeDeath, WriteToTheCanaryOfAFreedBlockIsCaughtByAllocation) {
  EXPECT_SHARD_ABORT(
      {
        void* keep = shard_malloc(64);
        auto* victim = static_cast<unsigned char*>(shard_malloc(64));
        const size_t usable = shard_usable_size(victim);
        shard_free(victim);
        victim[usable + 10] ^= 1;  // the freed block's canary (after its size record)
        for (int i = 0; i < 2000; ++i) shard_free(touch(shard_malloc(64)));
        touch(keep);
      },
      // Found by the victim's eviction or reuse, or first by the free of the
      // block after it, which checks the word before it (the victim's canary).
      CHECKED_FATAL("heap corruption: (a freed block was written to|the bytes before the block "
                    "were overwritten)"));
}

// A healthy heap under remote frees passes the check at any moment.
TEST(CheckedMode, CheckHeapPassesUnderRemoteFrees) {
  constexpr int kRounds = 200;
  std::atomic<bool> stop{false};
  std::vector<void*> handoff(256);
  std::atomic<int> ready{0};
  std::thread freer([&] {
    while (!stop.load()) {
      const int turn = ready.load(std::memory_order_acquire);
      if (turn % 2 == 0) continue;  // even: the main thread's turn
      for (size_t i = 0; i < handoff.size(); ++i) {
        std::memset(handoff[i], 0x33, 16 + 16 * (i % 8));
        shard_free(handoff[i]);
      }
      ready.store(turn + 1, std::memory_order_release);
    }
  });
  size_t checked = 0;
  for (int r = 0; r < kRounds; ++r) {
    for (size_t i = 0; i < handoff.size(); ++i) handoff[i] = shard_malloc(16 + 16 * (i % 8));
    ready.store(r * 2 + 1, std::memory_order_release);  // odd: the freer's turn
    checked += shard_check_heap();
    while (ready.load(std::memory_order_acquire) != r * 2 + 2) std::this_thread::yield();
  }
  stop = true;
  freer.join();
  EXPECT_GT(checked, 0u);
}

// The owner checks its heap while a thread with a heap of its own frees the
// owner's blocks: such a free swaps the canary, then poisons the block, its
// slack too (the freer's quarantine). A check that read the canary as live
// before the swap and the slack after the poison reported an overflow
// (within a second on one core). The freer pauses between frees, so that
// they spread over many checks.
TEST(CheckedMode, CheckHeapPassesWhileAThreadWithAHeapFreesItsBlocks) {
  constexpr size_t kBlocks = 20000;
  for (int round = 0; round < 4; ++round) {
    std::vector<void*> blocks(kBlocks);
    for (void*& p : blocks) p = shard_malloc(40);  // 64-byte blocks: 8 bytes of slack
    std::atomic<bool> done{false};
    std::thread freer([&] {
      shard_free(shard_malloc(16));  // a heap of its own: its frees go through its quarantine
      for (void* p : blocks) {
        shard_free(p);
        for (int k = 0; k < 2000; ++k) asm volatile("");
      }
      done = true;
    });
    while (!done.load()) shard_check_heap();
    freer.join();
  }
}

// ---- realloc of huge blocks ---------------------------------------------------

// A huge block grown a few bytes a call (PHP's `$s .= "x"`) grows in place
// into the room its last move left (core/realloc_growth.h). It was moved to
// the exact size at every call: copied whole onto new pages, its old copy
// quarantined (20,000 moves here; 100,000 calls of 9 bytes took 96 s). Every
// byte carries its position, checked at every move; the usable size stays the
// size asked for, and the free checks the slack past it.
TEST(CheckedMode, AHugeBlockGrownInSmallStepsMovesRarely) {
  constexpr size_t kStep = 9;
  constexpr int kSteps = 20000;
  auto byte_at = [](size_t i) { return static_cast<unsigned char>(i * 131 + (i >> 12)); };
  size_t size = 128 * KiB - 100;  // a page block, huge after a few steps
  auto* p = static_cast<unsigned char*>(shard_malloc(size));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < size; ++i) p[i] = byte_at(i);
  int moves = 0;
  for (int step = 0; step < kSteps; ++step) {
    const size_t grown = size + kStep;
    auto* q = static_cast<unsigned char*>(shard_realloc(p, grown));
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(shard_usable_size(q), grown);
    if (q != p) {
      ++moves;
      ASSERT_LT(moves, 100) << "moves in " << step + 1 << " calls";
      size_t wrong = 0;
      for (size_t i = 0; i < size; ++i) wrong += q[i] != byte_at(i);
      ASSERT_EQ(wrong, 0u) << "bytes changed by the move to " << grown;
    }
    for (size_t i = size; i < grown; ++i) q[i] = byte_at(i);
    p = q;
    size = grown;
  }
  EXPECT_GE(moves, 1);
  size_t wrong = 0;
  for (size_t i = 0; i < size; ++i) wrong += p[i] != byte_at(i);
  EXPECT_EQ(wrong, 0u);
  (void)shard_check_heap();
  shard_free(p);
}

// A huge block of `*size` bytes that a realloc moved (with room) and the
// next one kept in place.
unsigned char* grown_in_place(size_t* size) {
  size_t cur = 256 * KiB;
  auto* p = static_cast<unsigned char*>(shard_malloc(cur));
  bool moved = false;
  for (int call = 0; call < 100; ++call) {
    auto* q = static_cast<unsigned char*>(shard_realloc(p, cur + 9));
    cur += 9;
    moved = moved || q != p;
    if (moved && q == p) {
      *size = cur;
      return q;
    }
    p = q;
  }
  std::abort();  // never kept
}

// The block a growing realloc moved away from goes to the quarantine
// (inaccessible, a huge block), with or without room to grow.
TEST(CheckedMode, AHugeBlockMovedByReallocIsQuarantined) {
  auto* p = static_cast<unsigned char*>(shard_malloc(256 * KiB));
  ASSERT_NE(p, nullptr);
  auto* q = static_cast<unsigned char*>(shard_realloc(p, 256 * KiB + 4096));
  ASSERT_NE(q, p) << "a block of the exact size has no room";
  EXPECT_FALSE(readable(p + 8192));
  size_t size = 0;
  unsigned char* kept = grown_in_place(&size);
  auto* shrunk = static_cast<unsigned char*>(shard_realloc(kept, size / 2));
  EXPECT_NE(shrunk, kept) << "a shrink moves the block";
  EXPECT_FALSE(readable(kept + 8192));
  shard_free(q);
  shard_free(shrunk);
}

// A block kept in place has the new size: one byte past it is caught at free.
TEST(CheckedModeDeath, OverflowOfAHugeBlockGrownInPlaceIsCaughtAtFree) {
  EXPECT_SHARD_ABORT(
      {
        size_t size = 0;
        unsigned char* p = grown_in_place(&size);
        p[size] ^= 0xff;
        shard_free(p);
      },
      kOverflow);
}

// An overflow into the room is caught by the realloc that would grow over it.
TEST(CheckedModeDeath, OverflowIntoTheRoomIsCaughtByTheReallocThatGrowsOverIt) {
  EXPECT_SHARD_ABORT(
      {
        size_t size = 0;
        unsigned char* p = grown_in_place(&size);
        p[size + 3] ^= 0xff;
        touch(shard_realloc(p, size + 100));
      },
      kOverflow);
}

// realloc of a quarantined huge block stops before it copies anything (its
// canary, in the header's page, says quarantined).
TEST(CheckedModeDeath, ReallocOfAFreedHugeBlockIsCaught) {
  EXPECT_SHARD_ABORT(
      {
        void* p = shard_malloc(300 * KiB);
        shard_free(p);
        touch(shard_realloc(touch(p), 400 * KiB));
      },
      CHECKED_FATAL("realloc of a freed block \\(use after free\\)"));
}

// ---- region API ------------------------------------------------------------

struct RegionFixture : ::testing::Test {
  static constexpr size_t kBytes = 32 * MiB;
  shard_region* r = nullptr;
  void SetUp() override {
    ASSERT_EQ(shard_region_init(&r, shardtest::map_memory(kBytes), kBytes), SHARD_OK);
  }
};

TEST_F(RegionFixture, DoubleDeallocNotInARowIsNotAllocated) {
  void *keep, *a, *b;
  ASSERT_EQ(shard_region_alloc(r, 32, 8, &keep), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(r, 32, 8, &a), SHARD_OK);
  ASSERT_EQ(shard_region_alloc(r, 32, 8, &b), SHARD_OK);
  const size_t used = shard_region_used_bytes(r);
  ASSERT_EQ(shard_region_dealloc(r, a, 32, 8), SHARD_OK);
  ASSERT_EQ(shard_region_dealloc(r, b, 32, 8), SHARD_OK);
  EXPECT_EQ(shard_region_dealloc(r, a, 32, 8), SHARD_NOT_ALLOCATED);
  EXPECT_EQ(shard_region_used_bytes(r), used - 64);
  EXPECT_GT(shard_region_check_heap(r), 0u);
  EXPECT_EQ(shard_region_dealloc(r, keep, 32, 8), SHARD_OK);
}

TEST_F(RegionFixture, DeallocOfAnOverflowedBlockAborts) {
  EXPECT_SHARD_ABORT(
      {
        void* p;
        if (shard_region_alloc(r, 56, 8, &p) != SHARD_OK) std::abort();
        std::memset(p, 0, 56 + 8);
        shard_region_dealloc(r, p, 56, 8);
      },
      kOverflow);
}

TEST_F(RegionFixture, CheckHeapCountsLiveAndFreeBlocks) {
  std::vector<void*> blocks(1000);
  for (size_t i = 0; i < blocks.size(); ++i)
    ASSERT_EQ(shard_region_alloc(r, 8 + i % 500, 8, &blocks[i]), SHARD_OK);
  for (size_t i = 0; i < blocks.size(); i += 2)
    ASSERT_EQ(shard_region_dealloc(r, blocks[i], 8 + i % 500, 8), SHARD_OK);
  EXPECT_GE(shard_region_check_heap(r), blocks.size());
  for (size_t i = 1; i < blocks.size(); i += 2)
    ASSERT_EQ(shard_region_dealloc(r, blocks[i], 8 + i % 500, 8), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

}  // namespace
