// Review of sealed pages (protocol 3 of docs/protocols.md): a borrowed heap.
//
// Domain::alloc_borrowed (the allocation of a signal handler that interrupted
// a call, or of a thread's late destructor after its heap was given back)
// acquired a heap with acquire_heap, which adopts the abandoned heap with the
// most segments and unseals all its pages (now: the domain's borrow heap),
// allocated one block and gave the heap back with a plain `owned = 0`: no
// seal, no look at `notified`. The
// abandoned heap's pages are then plain pages of a heap nobody owns: frees
// into them no longer count down, the free of a page's last block no longer
// gives the page back, and the memory stays until a sweep or an adoption
// (never, for a region that does not run short).
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/domain.h"
#include "core/heap.h"
#include "core/segment.h"
#include "platform/linux/process_heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/snapshot_support.h"

namespace {

pthread_key_t g_late_key;
std::atomic<int> g_late_allocs{0};

// Runs after the library's own thread-exit destructor (a key made later has a
// higher index; glibc runs destructors in key order): the thread has no heap
// any more, so its malloc borrows one (Domain::alloc_borrowed).
void late_destructor(void*) {
  void* p = shard_malloc(48);
  if (p != nullptr) g_late_allocs.fetch_add(1);
  shard_free(p);
}

TEST(SealedPagesReview, ABorrowedHeapStaysSealed) {
#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
  GTEST_SKIP() << "checked mode keeps this thread's last 256 frees in its quarantine, so their "
                  "pages complete only when later frees push them out or the thread exits";
#endif
  shard_free(shard_malloc(64));  // this thread has a heap (and the library its exit key)
  ASSERT_EQ(pthread_key_create(&g_late_key, &late_destructor), 0);
  shard_stats before;
  shard_stats_get(&before);

  // B gets a heap of its own first (so that it does not adopt A's heap).
  std::atomic<int> stage{0};
  std::thread b([&] {
    shard_free(shard_malloc(32));
    pthread_setspecific(g_late_key, &stage);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();

  // A allocates many blocks (the abandoned heap with the most segments) and exits.
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 30000; ++i) {
      void* p = shard_malloc(100);
      ASSERT_NE(p, nullptr);
      blocks.push_back(p);
    }
  }).join();
  const uint64_t held = shardtest::abandoned_segments(shardtest::process_snapshot());
  ASSERT_GE(held, 4u);

  // B exits: its late destructor borrows a heap (the borrow heap; before it
  // existed, A's: the one with most segments).
  stage.store(2);
  b.join();
  ASSERT_EQ(g_late_allocs.load(), 1);

  // Every block of A is freed: each sealed page's last free gives it back.
  for (void* p : blocks) shard_free(p);
  shard_stats after;
  shard_stats_get(&after);
  if (after.heaps_swept != before.heaps_swept) {
    GTEST_SKIP() << "a periodic sweep ran (more than 200 ms passed): it seals the pages again";
  }
  EXPECT_EQ(shardtest::abandoned_segments(shardtest::process_snapshot()), 0u)
      << "segments before the frees: " << held
      << "; the borrowed heap was given back unsealed, its pages no longer come back";
  pthread_key_delete(g_late_key);
}

pthread_key_t g_borrow_key;
void* g_borrowed[2] = {nullptr, nullptr};

void borrowing_destructor(void*) {
  for (void*& p : g_borrowed) p = shard_malloc(48);
}

// A borrow takes the domain's borrow heap, not the abandoned heap with the
// most segments: adopting that one unsealed and sealed all its pages at every
// borrowed malloc (a review: 0.2 us each, 371 us with an exited thread's
// 1 GiB heap left; now 0.4 us). No thread adopts the borrow heap.
TEST(SealedPagesReview, ABorrowUsesTheBorrowHeapNotTheLargestAbandonedOne) {
  using shardalloc::core::segment_of;
  auto& domain = shardalloc::platform::g_process_domain;
  shard_free(shard_malloc(64));  // the library's exit key first
  ASSERT_EQ(pthread_key_create(&g_borrow_key, &borrowing_destructor), 0);
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 30000; ++i) blocks.push_back(shard_malloc(100));
  }).join();
  ASSERT_NE(blocks.front(), nullptr);
  const auto* abandoned = segment_of(blocks.front())->heap;
  std::thread([] {
    shard_free(shard_malloc(32));
    pthread_setspecific(g_borrow_key, &g_borrow_key);
  }).join();
  ASSERT_NE(g_borrowed[0], nullptr);
  ASSERT_NE(g_borrowed[1], nullptr);
  const auto* borrow = domain.borrow_heap.load();
  ASSERT_NE(borrow, nullptr);
  EXPECT_TRUE(borrow->for_borrowing);
  EXPECT_EQ(segment_of(g_borrowed[0])->heap, borrow);
  EXPECT_EQ(segment_of(g_borrowed[1])->heap, borrow);
  EXPECT_NE(abandoned, borrow);
  // Threads that start now adopt abandoned heaps or make new ones, never it.
  for (int t = 0; t < 4; ++t) {
    void* p = nullptr;
    std::thread([&] { p = shard_malloc(100); }).join();
    ASSERT_NE(p, nullptr);
    EXPECT_NE(segment_of(p)->heap, borrow);
    shard_free(p);
  }
  for (void* p : g_borrowed) shard_free(p);
  for (void* p : blocks) shard_free(p);
  pthread_key_delete(g_borrow_key);
}

}  // namespace
