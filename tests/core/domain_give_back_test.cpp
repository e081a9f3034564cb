// Domain::give_back_tail: when the source refuses to grow (an address-
// space limit), the free tails of arenas that earlier huge blocks grew go back
// and the source is asked again (a review: malloc of 1000, 2000, then 3000
// MiB in turn, nothing live, under a 4.5 GiB limit failed with ENOMEM). The
// fake source below hands out 64 MiB-aligned runs of 4 MiB chunks
// (kArenaReleaseGrain) of one reservation under a budget of chunks, and
// makes a given-back range inaccessible, so any later read of it (a walk
// that did not skip it) faults.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/domain.h"
#include "core/segment.h"
#include "core/stats.h"

using namespace shardalloc::core;

namespace {

constexpr size_t kArenas = 16;  // the pool: 16 OS arenas' worth (1 GiB of address space)
constexpr size_t kGrain = kArenaReleaseGrain;
constexpr size_t kPerArena = kOsArenaSize / kGrain;  // chunks per OS arena's worth
constexpr size_t kChunks = kArenas * kPerArena;

struct FakeOs {
  uintptr_t base = 0;
  std::atomic<bool> used[kChunks] = {};
  std::atomic<size_t> budget{0};  // chunks that may be in use at once
  std::atomic<size_t> in_use{0};
  std::atomic<size_t> given_back{0};          // chunks released from arenas' tails
  std::atomic<bool> run_start[kChunks] = {};  // a reservation starts at this chunk
  std::atomic<size_t> probes{0};              // reservations released whole (probes)
};
FakeOs g_os;

void* fake_reserve(size_t bytes, size_t align, size_t* out) {
  if (align > kOsArenaSize || bytes % kOsArenaSize != 0) return nullptr;
  const size_t n = bytes / kGrain;
  if (g_os.in_use.load() + n > g_os.budget.load()) return nullptr;  // the "limit"
  for (size_t i = 0; i + n <= kChunks; i += kPerArena) {
    bool free_run = true;
    for (size_t k = i; k < i + n && free_run; ++k) free_run = !g_os.used[k].load();
    if (!free_run) continue;
    for (size_t k = i; k < i + n; ++k) g_os.used[k].store(true);
    g_os.run_start[i].store(true);
    g_os.in_use += n;
    void* p = reinterpret_cast<void*>(g_os.base + i * kGrain);
    if (mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) return nullptr;
    *out = bytes;
    return p;
  }
  return nullptr;
}

void fake_release(void* p, size_t bytes) {
  ASSERT_EQ(addr(p) % kGrain, 0u);
  ASSERT_EQ(bytes % kGrain, 0u);
  // Drop the contents and make the range fault on any access, as an unmap would.
  ASSERT_EQ(madvise(p, bytes, MADV_DONTNEED), 0);
  ASSERT_EQ(mprotect(p, bytes, PROT_NONE), 0);
  const size_t first = (addr(p) - g_os.base) / kGrain;
  for (size_t k = first; k < first + bytes / kGrain; ++k) g_os.used[k].store(false);
  g_os.in_use -= bytes / kGrain;
  if (g_os.run_start[first].exchange(false)) {
    ++g_os.probes;  // a whole reservation: Domain::tails_could_make_room's probe
  } else {
    g_os.given_back += bytes / kGrain;
  }
}

class GiveBack : public ::testing::Test {
 protected:
  void SetUp() override {
    const size_t bytes = (kArenas + 1) * kOsArenaSize;
    void* raw = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(raw, MAP_FAILED);
    raw_ = raw;
    g_os.base = align_up(addr(raw), kOsArenaSize);
    for (auto& u : g_os.used) u.store(false);
    for (auto& u : g_os.run_start) u.store(false);
    g_os.in_use = 0;
    g_os.given_back = 0;
    g_os.probes = 0;
    d_.source.reserve = &fake_reserve;
    d_.source.release = &fake_release;
    d_.ensure_secret(0x5eed);
  }
  void TearDown() override { munmap(raw_, (kArenas + 1) * kOsArenaSize); }

  // A huge segment of `mib` MiB of slots, or null.
  Segment* huge(size_t mib) {
    return d_.claim_segment(mib * (size_t{1} << 20) / kSegmentSize, 0, 0);
  }

  void* raw_ = nullptr;
  Domain d_;
};

TEST_F(GiveBack, GrowingHugeBlocksFitUnderTheBudgetOnceFreeTailsGoBack) {
  g_os.budget = 9 * kPerArena;  // 576 MiB of address space
  // 100 MiB: an arena of kHugeArenaSize (4 OS arenas' worth, 511 slots);
  // 300 MiB does not fit its slots: a new arena of 5 (9 in use); 400 MiB
  // needs 7 more, which only the two tails make room for.
  for (size_t mib : {size_t{100}, size_t{300}, size_t{400}}) {
    Segment* s = huge(mib);
    ASSERT_NE(s, nullptr) << mib << " MiB (chunks in use " << g_os.in_use << ")";
    ptr<char>(addr(s) + kSegmentHeaderSize)[0] = 1;
    d_.release_segment(s);
  }
  EXPECT_EQ(g_os.given_back.load(), 9 * kPerArena - 2);  // both earlier arenas' tails
  // Each of them keeps its first chunk (its header and 7 slots), not its
  // first 64 MiB: a program whose blocks grow leaves 4 MiB of address space
  // behind per arena (it left 64 MiB, and failed far below an address-space
  // limit: 383 MiB served of 700 MiB allowed).
  EXPECT_EQ(g_os.in_use.load(), 7 * kPerArena + 2);
  // The walks skip what went back (a read of it would fault), and count what stays.
  DomainStats stats;
  collect_stats(d_, &stats);
  EXPECT_EQ(stats.total_bytes, g_os.in_use.load() * kGrain);
  // Given back for good: the tails stay claimed; the first chunks and the
  // new arena serve one-slot segments.
  std::vector<Segment*> small;
  for (int i = 0; i < 200; ++i) {
    Segment* s = d_.claim_segment(1, 0, 0);
    if (s == nullptr) break;
    ptr<char>(addr(s) + kSegmentHeaderSize)[0] = 1;  // mapped and writable
    small.push_back(s);
  }
  EXPECT_GE(small.size(), 200u);
  for (Segment* s : small) d_.release_segment(s);
}

// One tail at a time, the largest first, until the source maps the request;
// and none for a request larger than all the domain has reserved (a failed
// probe of 1 PiB gave every tail back, and the arenas' remaining 64 MiB
// piled up as mappings of their own: 402 arenas after 400 rounds).
TEST_F(GiveBack, OnlyTheLargestTailNeededAndNoneForARequestNothingCouldHold) {
  g_os.budget = 11 * kPerArena;
  // Arenas of 4 and 5 OS arenas' worth (tails of all but their first chunk).
  for (size_t mib : {size_t{100}, size_t{300}}) {
    Segment* s = huge(mib);
    ASSERT_NE(s, nullptr) << mib;
    d_.release_segment(s);
  }
  ASSERT_EQ(g_os.in_use.load(), 9 * kPerArena);
  EXPECT_EQ(huge(2048), nullptr);  // 33 OS arenas' worth: more than the 9 reserved
  EXPECT_EQ(g_os.given_back.load(), 0u);
  // 350 MiB: 6 OS arenas' worth; the larger arena's tail is enough to get them.
  Segment* s = huge(350);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(g_os.given_back.load(), 5 * kPerArena - 1);
  d_.release_segment(s);
}

// A request larger than all the domain has reserved, which the tails make
// room for together with what the limit has left (a review: a bound of
// "no larger than what is reserved" refused 1, 2, then 4 GiB under 6 GiB).
TEST_F(GiveBack, ARequestLargerThanWhatIsReservedGetsRoomFromATail) {
  g_os.budget = 9 * kPerArena;
  Segment* first = huge(200);  // an arena of 4 OS arenas' worth
  ASSERT_NE(first, nullptr);
  d_.release_segment(first);
  // 7 OS arenas' worth: 4 in use + 7 > 9; its first chunk + 7 <= 9.
  Segment* s = huge(400);
  ASSERT_NE(s, nullptr) << "chunks in use " << g_os.in_use;
  EXPECT_EQ(g_os.given_back.load(), 4 * kPerArena - 1);
  EXPECT_EQ(g_os.probes.load(), 1u);
  d_.release_segment(s);
}

// Walks running while tails go back: a give-back that sees a walk keeps its
// tail (the walk may be reading it), and a walk that starts after it never
// reads it. Faults here (a read of a given-back range) kill the test.
TEST_F(GiveBack, WalksRunningMeanwhileNeverReadAGivenBackTail) {
  g_os.budget = 9 * kPerArena;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> walks{0};
  std::vector<std::thread> walkers;
  for (int t = 0; t < 2; ++t) {
    walkers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        DomainStats stats;
        collect_stats(d_, &stats);
        walks.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::microseconds(20));  // idle moments for a give-back
      }
    });
  }
  while (walks.load() == 0) std::this_thread::yield();
  size_t served = 0;
  // At least 300 rounds, and on until a give-back got past the walkers (at most 20000).
  for (int round = 0; round < 20000 && (round < 300 || g_os.given_back.load() == 0); ++round) {
    // Sizes that keep needing new arenas: each round's largest no longer
    // fits what the earlier rounds left, until the tails go back.
    const size_t mib = 60 + size_t(round % 6) * 60;
    if (Segment* s = huge(mib)) {
      ptr<char>(addr(s) + kSegmentHeaderSize)[0] = 1;
      d_.release_segment(s);
      ++served;
    }
  }
  stop = true;
  for (auto& w : walkers) w.join();
  EXPECT_GT(walks.load(), 0u);
  EXPECT_GT(served, 0u);
  EXPECT_GT(g_os.given_back.load(), 0u) << "no give-back got past the walkers in 20000 rounds";
}

}  // namespace
