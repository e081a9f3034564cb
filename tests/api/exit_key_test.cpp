// With every pthread key taken before the library's first heap, the library
// cannot make its thread-exit key: threads then keep their heaps at exit,
// and the library sets no key it did not make. (It ignored the failure of
// pthread_key_create, and set key 0, someone else's, in every thread: a
// review.) Its own executable: the process must not have a heap yet.
#include <gtest/gtest.h>
#include <pthread.h>

#include <cerrno>
#include <thread>
#include <vector>

#include "shardalloc/shardalloc.h"

TEST(ExitKey, EveryKeyTakenBeforeTheFirstHeapLeavesOtherKeysAlone) {
  std::vector<pthread_key_t> keys;
  for (;;) {
    pthread_key_t k;
    const int e = pthread_key_create(&k, nullptr);
    if (e != 0) {
      ASSERT_EQ(e, EAGAIN);
      break;
    }
    keys.push_back(k);
  }
  ASSERT_FALSE(keys.empty());
  int set = 0;
  for (int round = 0; round < 3; ++round) {  // the first thread makes the process's first heap
    std::thread([&] {
      void* p = shard_malloc(100);
      ASSERT_NE(p, nullptr);
      shard_free(p);
      for (pthread_key_t k : keys) set += pthread_getspecific(k) != nullptr;
    }).join();
  }
  EXPECT_EQ(set, 0) << "the library set a key it did not make";
  for (pthread_key_t k : keys) pthread_key_delete(k);
  void* p = shard_malloc(100);  // and it goes on working
  EXPECT_NE(p, nullptr);
  shard_free(p);
}
