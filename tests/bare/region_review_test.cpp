// Adversarial review of the region API on the bare-metal platform (threads
// play CPUs, cpu_threads.h): what one CPU's failing allocations cost the
// other CPUs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "bare/cpu_threads.h"
#include "core/first_class.h"
#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "support/rng.h"
#include "support/test_support.h"

using namespace shardtest;
using namespace bare_test;
using shardalloc::core::DomainLife;

namespace {

constexpr unsigned kCpus = 4;
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new CpuHooks(kCpus));

}  // namespace

// The kmalloc loop of docs/kernel.md on 4 CPUs at once: alloc, and on
// SHARD_NO_MEMORY hand the region a fresh piece and retry (several CPUs may
// add at once); blocks go round the CPUs and are freed by the next one. No
// block overlaps another, contents survive, and the counts end exact.
TEST(BareRegionReview, KmallocLoopOnAllCpusWithConcurrentGrowth) {
  shard_region* r = new_region(4 * MiB);
  std::atomic<size_t> handed{4 * MiB};
  std::atomic<int> adds{0}, bad{0};
  auto kmalloc = [&](size_t size, size_t align) -> void* {
    for (;;) {
      void* p = nullptr;
      const shard_status s = shard_region_alloc(r, size, align, &p);
      if (s == SHARD_OK) return p;
      if (s != SHARD_NO_MEMORY) return nullptr;
      const size_t bytes = std::max(size + align + (2u << 20), size_t{8} << 20);
      void* more = map_memory(bytes);
      if (shard_region_add_memory(r, more, bytes) != SHARD_OK) return nullptr;
      handed += bytes;
      adds++;
    }
  };
  constexpr unsigned kN = 4;
  // ring[c]: blocks CPU c-1 hands to CPU c. Each block starts with its size
  // and alignment.
  static std::atomic<void*> ring[kN][64];
  auto release = [&](void* p) {
    const size_t* h = static_cast<size_t*>(p);
    if (shard_region_dealloc(r, p, h[0], h[1]) != SHARD_OK) bad++;
  };
  on_cpus(0, kN, [&](unsigned cpu) {
    Rng rng(cpu + 1);
    for (int i = 0; i < 20000; ++i) {
      const size_t size = rng.chance(2) ? 200 * KiB + rng.below(3 * MiB) : 16 + rng.below(4000);
      const size_t align = rng.chance(10) ? size_t{1} << rng.below(17) : 8;
      void* p = kmalloc(size, align);
      if (p == nullptr || !is_aligned(p, align)) {
        bad++;
        continue;
      }
      static_cast<size_t*>(p)[0] = size;
      static_cast<size_t*>(p)[1] = align;
      static_cast<unsigned char*>(p)[size - 1] = static_cast<unsigned char>(cpu);
      // Free a block the previous CPU handed us (a cross-CPU free).
      if (void* mine = ring[cpu][rng.below(64)].exchange(nullptr)) release(mine);
      // Hand ours to the next CPU, or free it here when the slot is taken.
      void* expected = nullptr;
      if (!ring[(cpu + 1) % kN][rng.below(64)].compare_exchange_strong(expected, p)) release(p);
    }
  });
  EXPECT_EQ(bad.load(), 0);
  size_t sum = 0;
  std::vector<std::pair<uintptr_t, uintptr_t>> all;
  for (auto& row : ring)
    for (auto& s : row)
      if (void* p = s.load()) {
        const size_t size = static_cast<size_t*>(p)[0];
        sum += size;
        all.push_back({uintptr_t(p), uintptr_t(p) + size});
      }
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LE(all[i - 1].second, all[i].first) << "overlap";
  EXPECT_EQ(shard_region_used_bytes(r), sum);
  EXPECT_EQ(shard_region_total_bytes(r), handed.load());
  std::printf("pieces added: %d, live at the end: %zu\n", adds.load(), all.size());
  on_cpus(0, 1, [&](unsigned) {
    for (auto& row : ring)
      for (auto& s : row)
        if (void* p = s.exchange(nullptr)) release(p);
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

namespace {

// The scenario of the test below, in a child: exits 0 when the record that
// reached its last generation is not reused, the CPU that kept a slot of it
// gets a block of the new heap, and the region's other blocks stay intact.
void generation_wrap_scenario() {
  shard_region* r = new_region(64 * MiB);
  shard_heap* h = nullptr;
  on_cpus(0, 1, [&](unsigned) { h = shard_heap_new_in_region(r, 4 * MiB); });
  if (h == nullptr) std::_Exit(10);
  // CPU 1 uses the heap once: its slot keeps (its heap, generation g).
  on_cpus(1, 1, [&](unsigned) { shard_heap_free(h, shard_heap_malloc(h, 64)); });
  auto* record = reinterpret_cast<shardalloc::core::FirstClassHeap*>(h);
  const uint32_t g = record->life.generation();
  on_cpus(0, 1, [&](unsigned) { shard_heap_destroy(h); });
  // 2^32 - 1 - g further incarnations of this record, none of them used on
  // CPU 1 (what new/destroy cycles on the other CPUs do over time), leave
  // the word at FREE(2^32 - 1): written here directly. Had the generation
  // wrapped, g more would bring CPU 1's slot back to current.
  if (g == DomainLife::kLastGeneration) std::_Exit(14);
  record->life.word.store(uint64_t{DomainLife::kLastGeneration} << 32);
  void* filler = nullptr;
  shard_heap* h2 = nullptr;
  on_cpus(0, 1, [&](unsigned) {
    // The old span's memory goes to a region block, filled; the new heap
    // gets a span elsewhere, and another record.
    if (shard_region_alloc(r, 4 * MiB, 16, &filler) != SHARD_OK) std::_Exit(11);
    std::memset(filler, 0xab, 4 * MiB);
    h2 = shard_heap_new_in_region(r, 4 * MiB);
  });
  if (h2 == nullptr) std::_Exit(12);
  if (reinterpret_cast<void*>(h2) == reinterpret_cast<void*>(h)) {
    std::fprintf(stderr, "the record was claimed again after its last generation\n");
    std::_Exit(13);
  }
  if (record->life.word.load() != uint64_t{DomainLife::kLastGeneration} << 32) std::_Exit(15);
  void* q = nullptr;
  on_cpus(1, 1, [&](unsigned) { q = shard_heap_malloc(h2, 64); });
  exit_checking_filler(filler, 4 * MiB, 0xab, q, "CPU 1's");
}

}  // namespace

// First-class heap records are reused under a 32-bit generation
// (core/domain_life.h); a CPU's slot in the record's CPU table keeps the
// heap and generation it last used (cpu_heaps.cpp, current_first_class_heap)
// and is trusted when the generation matches. Had the generation wrapped,
// after 2^32 incarnations that a CPU did not take part in its slot would
// match again, and it would use a heap that went with an earlier
// incarnation's memory (a review ran the 2^32 new/destroy cycles for real:
// SIGSEGV after 39 minutes). The last generation retires the record
// instead. (White box: the record's word is set to what the cycles leave.)
TEST(BareRegionReviewDeathTest, ARecordAtItsLastGenerationIsNotReusedUnderAStaleCpuSlot) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(generation_wrap_scenario(), ::testing::ExitedWithCode(0), "");
}

// Review of 5568c3d (Domain::platform_record, white box): a domain's CPU
// table is kept in the domain once found; CPUs racing on the first calls
// all keep the one table of the list; a record's next incarnation starts
// with nothing kept (the Domain is rebuilt) and finds the same table again,
// whose slots then give each CPU a heap of the new incarnation (blocks in
// the new span), never the old one's.
TEST(BareRegionRev2, ARecordsNextIncarnationKeepsTheSameTableAgain) {
  shard_region* r = new_region(64 * MiB);
  shard_region* other = new_region(16 * MiB);
  shard_heap* h = nullptr;
  on_cpus(0, 1, [&](unsigned) { h = shard_heap_new_in_region(r, 4 * MiB); });
  ASSERT_NE(h, nullptr);
  auto* record = reinterpret_cast<shardalloc::core::FirstClassHeap*>(h);
  EXPECT_EQ(record->domain.platform_record.load(), nullptr);
  on_cpus(0, kCpus, [&](unsigned) {  // first calls on every CPU at once
    for (int i = 0; i < 100; ++i) shard_heap_free(h, shard_heap_malloc(h, 64));
  });
  void* const table = record->domain.platform_record.load();
  ASSERT_NE(table, nullptr);
  // The table's first word is its domain (cpu_heaps.cpp, CpuTable).
  EXPECT_EQ(*static_cast<void**>(table), static_cast<void*>(&record->domain));
  on_cpus(0, 1, [&](unsigned) {
    void* p = nullptr;
    ASSERT_EQ(shard_region_alloc(other, 64, 8, &p), SHARD_OK);
    ASSERT_EQ(shard_region_dealloc(other, p, 64, 8), SHARD_OK);
  });
  void* const other_table =
      reinterpret_cast<shardalloc::core::Domain*>(other)->platform_record.load();
  ASSERT_NE(other_table, nullptr);
  EXPECT_NE(other_table, table);
  EXPECT_EQ(*static_cast<void**>(other_table), static_cast<void*>(other));
  for (int round = 0; round < 20; ++round) {
    on_cpus(0, 1, [&](unsigned) {
      shard_heap_destroy(h);
      h = shard_heap_new_in_region(r, 4 * MiB);
    });
    ASSERT_EQ(static_cast<void*>(h), static_cast<void*>(record)) << "the record is reused";
    EXPECT_EQ(record->domain.platform_record.load(), nullptr) << "rebuilt with the domain";
    const uintptr_t span = uintptr_t(record->span);
    const size_t span_bytes = record->span_bytes;
    std::atomic<int> outside{0};
    on_cpus(0, kCpus, [&](unsigned) {
      void* p = shard_heap_malloc(h, 64);
      if (p == nullptr || uintptr_t(p) < span || uintptr_t(p) >= span + span_bytes) outside++;
      shard_heap_free(h, p);
    });
    EXPECT_EQ(outside.load(), 0) << "round " << round;
    EXPECT_EQ(record->domain.platform_record.load(), table) << "round " << round;
  }
  on_cpus(0, 1, [&](unsigned) { shard_heap_destroy(h); });
}
