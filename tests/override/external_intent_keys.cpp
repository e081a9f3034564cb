// snmalloc src/test/func/multi_setspecific and gperftools
// src/tests/thread_dealloc_unittest.cc (TEST_HARD_THREAD_DEALLOC): what
// happens when the program took every pthread key of glibc's first,
// static block (0-31) before the allocator made its own, so that both the
// program's key and shardalloc's thread-exit key live in a second-level
// block that glibc's pthread_setspecific allocates with calloc, per thread.
// A thread whose first allocation is that calloc (its first
// pthread_setspecific on such a key) must still give its heap back at exit.
//
// A binary of its own: the keys are taken in .preinit_array, before any
// library initialiser (libstdc++'s allocates), so that shardalloc's key,
// made at the process's first allocation, comes after them. Built twice as
// external_intent.cpp is (linked, and run with LD_PRELOAD).
#include <dlfcn.h>
#include <pthread.h>

#include <gtest/gtest.h>

#include "shardalloc/stats.h"
#include "support/opaque.h"

#include <cstdint>
#include <cstdlib>
#include <new>

using shardtest::opaque;

namespace {

pthread_key_t g_early_key;
bool g_keys_ok = false;

// The original's destructor: allocates at thread exit, after the key's
// value was set by the thread's first call.
void early_key_destructor(void* arg) {
  ::operator delete(opaque(::operator new(reinterpret_cast<uintptr_t>(arg))));
}

void take_keys_before_any_allocation() {
  bool ok = true;
  for (int i = 0; i < 32; ++i) {
    pthread_key_t leaked;
    ok = ok && pthread_key_create(&leaked, nullptr) == 0;
  }
  ok = ok && pthread_key_create(&g_early_key, early_key_destructor) == 0;
  g_keys_ok = ok;
}
[[gnu::section(".preinit_array"),
  gnu::used]] void (*const g_preinit)() = take_keys_before_any_allocation;

using StatsGet = void (*)(shard_stats*);

// The thread's first call is pthread_setspecific on a key of the second
// block, whose calloc is the thread's first allocation; then 1024 blocks of
// 1 KiB, as thread_dealloc_unittest's AllocStuff.
void* first_call_is_setspecific(void*) {
  pthread_setspecific(g_early_key, reinterpret_cast<void*>(uintptr_t{32}));
  void* objs[1024];
  for (void*& o : objs) o = std::malloc(1024);
  for (void* o : objs) std::free(o);
  return nullptr;
}

// Starts and joins 200 threads running `body`, one at a time, between two
// reads of the process's statistics.
void run_200_threads(void* (*body)(void*), shard_stats* before, shard_stats* after) {
  auto* stats_get = reinterpret_cast<StatsGet>(dlsym(RTLD_DEFAULT, "shard_stats_get"));
  ASSERT_NE(stats_get, nullptr) << "shardalloc is not loaded";
  stats_get(before);
  for (int i = 0; i < 200; ++i) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, body, nullptr), 0);
    ASSERT_EQ(pthread_join(t, nullptr), 0);
  }
  stats_get(after);
}

TEST(SnmallocMultiSetspecific, ThreadsWhoseFirstAllocationIsInSetspecificGiveTheirHeapsBack) {
  ASSERT_TRUE(g_keys_ok);
  ASSERT_GE(g_early_key, 32u) << "the program's key is not in glibc's second-level block";
  static shard_stats before, after;
  ASSERT_NO_FATAL_FAILURE(run_200_threads(first_call_is_setspecific, &before, &after));
  EXPECT_LE(after.heaps_owned, before.heaps_owned)
      << "heaps still owned by exited threads: " << after.heaps_owned - before.heaps_owned;
  EXPECT_LE(after.heaps, before.heaps + 2);
  EXPECT_LE(after.segments, before.segments + 8)
      << "segments " << before.segments << " -> " << after.segments;
}

// The same threads when their first allocation is an ordinary malloc (the
// key set afterwards): the heaps go back.
void* first_call_is_malloc(void*) {
  std::free(opaque(std::malloc(48)));
  return first_call_is_setspecific(nullptr);
}
TEST(SnmallocMultiSetspecific, ThreadsThatAllocateFirstGiveTheirHeapsBack) {
  static shard_stats before, after;
  ASSERT_NO_FATAL_FAILURE(run_200_threads(first_call_is_malloc, &before, &after));
  EXPECT_LE(after.heaps_owned, before.heaps_owned);
  EXPECT_LE(after.heaps, before.heaps + 2);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
