// Frees (and allocations) from signal handlers, into the heaps the
// interrupted thread is using (docs/protocols.md, "Signal handlers").
//
// Worker threads allocate and free blocks of ten regions, two first-class
// heaps and the process heap (more domains than the thread's heap cache has
// slots, so the cache reorders and evicts all the time) while a per-thread
// timer interrupts them every few microseconds. The handler frees blocks the
// worker handed it through a same-thread mailbox and allocates and frees one
// block of its own. Workers exit while their timer still fires, so handlers
// also run inside the library's thread-exit destructor and after it.
//
// Afterwards: every region and first-class heap accounts zero bytes in use,
// no heap is owned (no heap stayed with an exited thread), and every heap
// passes its consistency check. Before the entry points were made
// async-signal-safe this died with "free of a pointer that is not
// allocated", found the same heap in two cache slots, or left heaps owned by
// exited threads.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/rng.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr int kRegions = 10;  // more than the thread heap cache's 8 slots
constexpr int kHeaps = 2;
constexpr size_t kRegionBytes = 16 * MiB;

shard_region* g_regions[kRegions];
shard_heap* g_heaps[kHeaps];

// Where a block came from.
enum class Kind : uint8_t { kRegion, kHeap, kProcess };

struct Block {
  Kind kind;
  uint8_t index;  // region or heap
  uint32_t size;
  void* p;
};

uint64_t tag_of(const void* p, size_t size) {
  return reinterpret_cast<uintptr_t>(p) * 0x9e3779b97f4a7c15ull ^ size;
}

// Failures seen inside handlers (no gtest there: only async-signal-safe work).
std::atomic<uint64_t> g_handler_errors{0};
std::atomic<uint64_t> g_handler_frees{0};
std::atomic<uint64_t> g_handler_allocs{0};

void free_block(const Block& b) {
  if (*static_cast<uint64_t*>(b.p) != tag_of(b.p, b.size))
    g_handler_errors.fetch_add(1, std::memory_order_relaxed);
  switch (b.kind) {
    case Kind::kRegion:
      if (shard_region_dealloc(g_regions[b.index], b.p, b.size, 8) != SHARD_OK) {
        g_handler_errors.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    case Kind::kHeap:
      shard_heap_free(g_heaps[b.index], b.p);
      break;
    case Kind::kProcess:
      shard_free(b.p);
      break;
  }
}

bool alloc_block(Kind kind, uint8_t index, uint32_t size, Block* out) {
  void* p = nullptr;
  switch (kind) {
    case Kind::kRegion:
      if (shard_region_alloc(g_regions[index], size, 8, &p) != SHARD_OK) p = nullptr;
      break;
    case Kind::kHeap:
      p = shard_heap_malloc(g_heaps[index], size);
      break;
    case Kind::kProcess:
      p = shard_malloc(size);
      break;
  }
  if (p == nullptr) return false;
  *static_cast<uint64_t*>(p) = tag_of(p, size);
  *out = Block{kind, index, size, p};
  return true;
}

// Blocks the worker hands to its own signal handler. Written by the thread
// and read by a handler on the same thread: relaxed atomics and signal
// fences order them.
struct Mailbox {
  static constexpr uint32_t kCap = 256;
  Block slots[kCap];
  std::atomic<uint32_t> head{0};  // next slot the worker fills
  std::atomic<uint32_t> tail{0};  // next slot the handler takes

  bool put(const Block& b) {
    const uint32_t h = head.load(std::memory_order_relaxed);
    if (h - tail.load(std::memory_order_relaxed) == kCap) return false;
    slots[h % kCap] = b;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    head.store(h + 1, std::memory_order_relaxed);
    return true;
  }
  bool take(Block* b) {
    const uint32_t t = tail.load(std::memory_order_relaxed);
    if (t == head.load(std::memory_order_relaxed)) return false;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    *b = slots[t % kCap];
    tail.store(t + 1, std::memory_order_relaxed);
    return true;
  }
};

thread_local Mailbox* tl_mailbox = nullptr;
thread_local uint32_t tl_handler_calls = 0;

void on_signal(int) {
  const int saved_errno = errno;
  Mailbox* m = tl_mailbox;
  if (m != nullptr) {
    Block b;
    for (int i = 0; i < 4 && m->take(&b); ++i) {
      free_block(b);
      g_handler_frees.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // An allocation of the handler's own, in a domain picked in turn, freed at once.
  const uint32_t n = tl_handler_calls++;
  const Kind kind = n % 3 == 0 ? Kind::kRegion : n % 3 == 1 ? Kind::kHeap : Kind::kProcess;
  const uint8_t index = uint8_t(kind == Kind::kRegion ? n % kRegions : n % kHeaps);
  Block own;
  if (alloc_block(kind, index, 16 + n % 2000, &own)) {
    g_handler_allocs.fetch_add(1, std::memory_order_relaxed);
    free_block(own);
  }
  errno = saved_errno;
}

// The worker's timer, deleted by a key destructor that runs after the
// library's own (its key is created later), so that signals keep coming
// while the library gives the thread's heaps back.
pthread_key_t g_timer_key;

void delete_timer(void* timer) {
  timer_delete(*static_cast<timer_t*>(timer));
  delete static_cast<timer_t*>(timer);
}

void arm_timer_for_this_thread(long interval_ns) {
  auto* timer = new timer_t;
  sigevent sev{};
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGUSR1;
  sev._sigev_un._tid = pid_t(syscall(SYS_gettid));
  ASSERT_EQ(timer_create(CLOCK_MONOTONIC, &sev, timer), 0);
  itimerspec spec{};
  spec.it_value.tv_nsec = interval_ns;
  spec.it_interval.tv_nsec = interval_ns;
  ASSERT_EQ(timer_settime(*timer, 0, &spec, nullptr), 0);
  pthread_setspecific(g_timer_key, timer);
}

// The timer's period: 20 us natively. Under qemu-user a handler (malloc and
// free, emulated) can take longer than that, and with a signal pending again
// whenever one returns the thread never gets back to its loop (the aarch64
// cross stage timed out, old and new library alike, at 180% CPU): 200 us there.
long timer_interval_ns() {
  return std::getenv("SHARDALLOC_UNDER_QEMU") != nullptr ? 200'000 : 20'000;
}

void worker(uint64_t seed, size_t ops) {
  Mailbox mailbox;
  arm_timer_for_this_thread(timer_interval_ns());
  tl_mailbox = &mailbox;
  Rng rng(seed);
  std::vector<Block> live(64, Block{Kind::kProcess, 0, 0, nullptr});
  for (size_t i = 0; i < ops; ++i) {
    const uint64_t r = rng.next();
    const Kind kind = Kind(r % 3);
    const uint8_t index = uint8_t(kind == Kind::kRegion ? (r >> 8) % kRegions : (r >> 8) % kHeaps);
    const uint32_t size = (r >> 16) % 16 == 0 ? uint32_t(1024 + (r >> 24) % (40 * KiB))
                                              : uint32_t(8 + (r >> 24) % 1000);
    Block b;
    if (!alloc_block(kind, index, size, &b)) continue;
    if ((r >> 40) % 2 == 0 && mailbox.put(b)) continue;
    Block& slot = live[(r >> 44) % live.size()];
    if (slot.p != nullptr) free_block(slot);
    slot = b;
  }
  for (Block& b : live) {
    if (b.p != nullptr) free_block(b);
  }
  // Drain the mailbox with the signal blocked (the handler takes from it too),
  // then exit with the timer still firing.
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old);
  tl_mailbox = nullptr;
  Block b;
  while (mailbox.take(&b)) free_block(b);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// Every heap of a domain: as many threads as it has heaps, each adopting one
// (their first call), check their heap at once.
template <class Check>
void check_every_heap(uint64_t heaps, Check check) {
  std::barrier sync(std::ptrdiff_t(heaps) + 1);
  std::vector<std::thread> threads;
  for (uint64_t i = 0; i < heaps; ++i) {
    threads.emplace_back([&] {
      check();
      sync.arrive_and_wait();  // hold the heap until every thread has adopted one
    });
  }
  sync.arrive_and_wait();
  for (auto& t : threads) t.join();
}

TEST(SignalStorm, S01toS04_HandlersFreeIntoTheInterruptedHeaps) {
  for (auto& r : g_regions)
    ASSERT_EQ(shard_region_init(&r, map_memory(kRegionBytes), kRegionBytes), SHARD_OK);
  for (auto& h : g_heaps) ASSERT_NE(h = shard_heap_new(), nullptr);
  shard_free(shard_malloc(1));  // the library's exit key exists before ours
  ASSERT_EQ(pthread_key_create(&g_timer_key, &delete_timer), 0);
  struct sigaction sa {};
  sa.sa_handler = &on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);

  const size_t rounds = scaled(8, stress_scale(), 2);
  const size_t ops = scaled(20000, stress_scale() * sanitizer_factor(), 2000);
  for (size_t round = 0; round < rounds; ++round) {
    std::vector<std::thread> threads;
    for (uint64_t t = 0; t < 3; ++t) threads.emplace_back(worker, round * 16 + t + 1, ops);
    for (auto& t : threads) t.join();
  }
  signal(SIGUSR1, SIG_IGN);

  EXPECT_EQ(g_handler_errors.load(), 0u);
  EXPECT_GT(g_handler_frees.load() + g_handler_allocs.load(), 0u);
  std::printf("handler frees %llu, handler allocations %llu\n",
              (unsigned long long)g_handler_frees.load(),
              (unsigned long long)g_handler_allocs.load());
  for (int i = 0; i < kRegions; ++i) {
    EXPECT_EQ(shard_region_used_bytes(g_regions[i]), 0u) << "region " << i;
    shard_stats st;
    ASSERT_EQ(shard_region_stats(g_regions[i], &st), SHARD_OK);
    EXPECT_EQ(st.heaps_owned, 0u) << "region " << i << ": a heap stayed with an exited thread";
    shard_region* r = g_regions[i];
    check_every_heap(st.heaps, [r] { shard_region_check_heap(r); });
  }
  for (int i = 0; i < kHeaps; ++i) {
    EXPECT_EQ(shard_heap_used_bytes(g_heaps[i]), 0u) << "heap " << i;
    shard_stats st;
    ASSERT_EQ(shard_heap_stats(g_heaps[i], &st), SHARD_OK);
    EXPECT_EQ(st.heaps_owned, 0u) << "heap " << i << ": a heap stayed with an exited thread";
    shard_heap_destroy(g_heaps[i]);
  }
  shard_check_heap();
}

}  // namespace
