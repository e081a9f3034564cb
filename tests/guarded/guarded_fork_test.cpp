// Guarded sampling and fork (review-sampling): a fork while another thread
// reserves the guarded pool (its first guarded sample: mmap of the pool,
// then the fault handler, then the pool's publication). The child inherited
// the reservation flag set with no pool and no thread to finish it: its
// first guarded sample spun for ever.
//
// The window is made certain by interposing mmap (this executable's
// definition wins over libc's for the static library's calls): the pool's
// mapping (its size, PROT_NONE) lets the main thread fork first. A fork that
// waits for the reservation (a step) would wait for a thread that waits for
// the fork; the gate's 200 ms limit ends that, and the child must still get
// a pool. Release builds only (checked builds do not sample); not built with
// sanitizers (they intercept mmap themselves).
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "platform/linux/guarded.h"
#include "shardalloc/shardalloc.h"

namespace {

std::atomic<int> g_armed{0};
std::atomic<int> g_in_reservation{0};
std::atomic<int> g_forked{0};

constexpr size_t kPoolBytes =
    (2 * shardalloc::platform::kGuardedSlots + 1) * shardalloc::platform::kGuardedPage;

}  // namespace

extern "C" void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (len == kPoolBytes && prot == PROT_NONE && g_armed.exchange(0) == 1) {
    g_in_reservation.store(1);
    // Until the main thread has forked (or long enough for it to).
    for (int i = 0; i < 400 && g_forked.load() == 0; ++i) usleep(5000);
  }
  return reinterpret_cast<void*>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}

namespace {

TEST(GuardedFork, F01_AForkDuringThePoolsReservationLeavesTheChildAPool) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not sample";
  shard_free(shard_malloc(16));  // this thread's heap, sampled from the call below
  shard_guarded_set_rate(1);     // every sample guarded; threads made later too
  g_armed.store(1);
  std::thread reserver([] {
    for (int i = 0; i < 64; ++i) shard_free(shard_malloc(64));
  });
  while (g_in_reservation.load() == 0) sched_yield();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(10);  // a spinning child dies of SIGALRM
    int guarded = 0;
    for (int i = 0; i < 64; ++i) {
      void* p = shard_malloc(300);  // a class this thread never used: sampled
      guarded += shardalloc::platform::guarded_owns(p);
      shard_free(p);
    }
    std::_Exit(guarded > 0 ? 0 : 3);
  }
  g_forked.store(1);
  reserver.join();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "child killed by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
  shard_guarded_set_rate(0);
}

}  // namespace
