// A signal handler that runs on the thread giving an arena's free tail back
// (Domain::give_back_tail, protocol 4 of docs/protocols.md) between the
// clear of the tail's chunk bits and its munmap, and again right after the
// munmap: a statistics walk, a snapshot, small and huge allocations and
// frees, malloc_usable_size of a live block. None may read the tail (its
// memory is still mapped at the first point, gone at the second) or see it
// as ours.
//
// The moment is made certain by interposing munmap (this executable's
// definition wins over libc's for the static library's calls, as in
// tests/guarded/guarded_fork_test.cpp): the tail's munmap (from a 4 MiB
// chunk boundary inside a 64 MiB entry) raises the signal before and after
// the real call. Not with sanitizers (they intercept munmap themselves).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "platform/linux/os_source.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/test_support.h"

namespace {

namespace platform = shardalloc::platform;

constexpr size_t kMiB = size_t{1} << 20;
[[maybe_unused]] constexpr size_t kArena = size_t{64} * kMiB;  // (unused with sanitizers)

std::atomic<bool> g_armed{false};
std::atomic<int> g_signals{0};
std::atomic<uintptr_t> g_tail{0};
std::atomic<bool> g_bad{false};
void* g_live = nullptr;

void handler(int) {
  g_signals.fetch_add(1);
  const uintptr_t tail = g_tail.load();
  if (platform::os_owns(reinterpret_cast<void*>(tail))) g_bad.store(true);
  shard_stats st{};
  shard_stats_get(&st);
  static char snap[1 << 20];
  if (shard_heap_snapshot(snap, sizeof snap) == 0) g_bad.store(true);
  void* small = shard_malloc(100);
  void* huge = shard_malloc(2 * kMiB);
  if (small == nullptr || huge == nullptr) g_bad.store(true);
  if (huge != nullptr) static_cast<char*>(huge)[2 * kMiB - 1] = 1;
  shard_free(small);
  shard_free(huge);
  if (shard_usable_size(g_live) < 64) g_bad.store(true);
}

}  // namespace

#ifndef SHARDTEST_SANITIZED
extern "C" int munmap(void* addr, size_t len) {
  const auto a = reinterpret_cast<uintptr_t>(addr);
  const bool tail = g_armed.load() && a % kArena != 0 && a % platform::kCommitChunk == 0 &&
                    (a + len) % kArena == 0 && len >= kArena - platform::kCommitChunk;
  if (tail) {
    g_tail.store(a);
    raise(SIGUSR1);  // bits clear, still mapped
  }
  const int rc = int(syscall(SYS_munmap, addr, len));
  if (tail) raise(SIGUSR1);  // gone
  return rc;
}
#endif

namespace {

void signal_during_a_give_back() {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, nullptr) != 0) std::_Exit(2);
  g_live = shard_malloc(64);
  void* first = shard_malloc(300 * kMiB);
  if (g_live == nullptr || first == nullptr) std::_Exit(3);
  shard_free(first);
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(4);
  lim.rlim_cur = rlim_t(shardtest::proc_memory().vm + 260 * kMiB);
  if (setrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(5);
  g_armed.store(true);
  void* second = shard_malloc(400 * kMiB);
  g_armed.store(false);
  if (second == nullptr) std::_Exit(6);
  shard_free(second);
  if (g_signals.load() < 2) std::_Exit(7);  // no tail went back
  if (g_bad.load()) std::_Exit(8);
  shard_free(g_live);
  std::_Exit(0);
}

TEST(OsRemnantSignalDeath, AHandlerOnTheGiversThreadNeverSeesTheTail) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "sanitizers intercept munmap; an address-space limit leaves them no room";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(signal_during_a_give_back(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
