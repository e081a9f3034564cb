// A fork from a signal handler inside the claim of a thread's remote-free
// batch record (docs/protocols.md 10). A thread that never allocated claims
// a record at its first free of another heap's block, then registers its
// exit hook (pthread_setspecific), then stores the record in its TLS. The
// child used to keep only the record its TLS named: a fork in between gave
// the forking thread's record back, the thread used it anyway, and the
// child's next thread to free remotely claimed it too: two threads linked
// into one batch's chains without atomics (a review: SIGSEGV in
// flush_remote_chain, or 1216 blocks that never came back, 10 runs of 10).
// Records are now tagged with their thread, and the child keeps the
// forking thread's by its tag.
//
// The window is hit every time: this executable's pthread_setspecific
// (called by the library inside the window) raises the signal when armed.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/test_support.h"

namespace {

std::atomic<bool> g_armed{false};
std::atomic<int> g_forks{0};

}  // namespace

extern "C" int pthread_setspecific(pthread_key_t key, const void* value) {
  using Fn = int (*)(pthread_key_t, const void*);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_setspecific"));
  if (g_armed.exchange(false)) raise(SIGUSR1);
  return real(key, value);
}

namespace {

constexpr int kBlocks = 200000;
constexpr size_t kSize = 64;
void* g_blocks[2 * kBlocks];
void* g_first = nullptr;
pid_t g_parent = 0;
pthread_barrier_t g_go;
std::atomic<int> g_owner_state{0};

void fork_in_handler(int) {
  g_forks.fetch_add(1);
  fork();  // the child goes on in this handler, on this thread
}

uint64_t live_of_size() {
  shard_stats s;
  shard_stats_get(&s);
  return s.classes[shard_size_class(kSize)].live_blocks;
}

// In the child: an owner allocates, then this thread and another free its
// blocks at once (the other claims the lowest free record), then both exit.
void* owner(void*) {
  for (void*& p : g_blocks) p = shard_malloc(kSize);
  g_owner_state = 1;
  while (g_owner_state.load() != 2) usleep(100);
  return nullptr;
}

void* other_freer(void*) {
  pthread_barrier_wait(&g_go);
  for (int i = 1; i < 2 * kBlocks; i += 2) shard_free(g_blocks[i]);
  return nullptr;
}

[[noreturn]] void child_rounds() {
  const uint64_t base = live_of_size();
  for (int round = 0; round < 10; ++round) {
    g_owner_state = 0;
    pthread_t w, u;
    pthread_create(&w, nullptr, owner, nullptr);
    while (g_owner_state.load() != 1) usleep(100);
    pthread_barrier_init(&g_go, nullptr, 2);
    pthread_create(&u, nullptr, other_freer, nullptr);
    pthread_barrier_wait(&g_go);
    for (int i = 0; i < 2 * kBlocks; i += 2) shard_free(g_blocks[i]);
    pthread_join(u, nullptr);
    g_owner_state = 2;
    pthread_join(w, nullptr);
    pthread_barrier_destroy(&g_go);
    const uint64_t live = live_of_size();  // pushes this thread's batch first
    if (live != base) {
      std::fprintf(stderr, "child round %d: %llu blocks of %zu bytes live, %llu before\n", round,
                   (unsigned long long)live, kSize, (unsigned long long)base);
      _exit(1);
    }
  }
  _exit(0);
}

void* first_freer(void*) {
  g_armed = true;       // this thread never allocated: its first free claims a record
  shard_free(g_first);  // the handler forks inside the claim
  g_armed = false;
  if (getpid() != g_parent) child_rounds();
  return nullptr;
}

void* first_owner(void*) {
  g_first = shard_malloc(kSize);
  return nullptr;
}

}  // namespace

TEST(ForkBatch, AForkInsideARecordClaimKeepsTheRecordForTheForkingThread) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not batch remote frees";
#if defined(SHARDTEST_TSAN)
  GTEST_SKIP() << "TSan does not support starting threads in the child of a multi-threaded fork";
#endif
  g_parent = getpid();
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = fork_in_handler;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, first_owner, nullptr), 0);
  pthread_join(t, nullptr);
  ASSERT_NE(g_first, nullptr);
  ASSERT_EQ(pthread_create(&t, nullptr, first_freer, nullptr), 0);
  pthread_join(t, nullptr);
  ASSERT_EQ(g_forks.load(), 1) << "the claim no longer calls pthread_setspecific: move the hook";
  int status = 0;
  const pid_t child = waitpid(-1, &status, 0);
  ASSERT_GT(child, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child lost blocks (see its output)";
}
