// A review of realloc's sparse copy (core/realloc_copy.h) and the page map
// it consults (platform/linux/page_map.cpp): moments where a page the map
// calls a hole holds the program's bytes, and where the copy's system calls
// change what realloc promises (it is no cancellation point).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "platform/linux/page_map.h"
#include "shardalloc/shardalloc.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;
constexpr size_t kBlock = 16 * kMiB;
constexpr size_t kGrown = 24 * kMiB;

#if defined(SHARDALLOC_CHECKED) && SHARDALLOC_CHECKED
#define SKIP_IN_CHECKED_MODE() GTEST_SKIP() << "checked builds copy every byte (slack patterns)"
#else
#define SKIP_IN_CHECKED_MODE() (void)0
#endif

struct CancelProbe {
  void* block = nullptr;
  size_t grown = 0;
  void* result = nullptr;
  std::atomic<bool> returned{false};
};

// Cancellation is requested before the call and acted on at the first
// cancellation point the thread reaches.
void* realloc_with_cancel_pending(void* arg) {
  auto* probe = static_cast<CancelProbe*>(arg);
  shard_free(shard_malloc(16));  // the thread's heap first (a test of its own below)
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, nullptr);
  pthread_cancel(pthread_self());
  probe->result = shard_realloc(probe->block, probe->grown);
  probe->returned.store(true);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
  return nullptr;
}

void* first_malloc_with_cancel_pending(void* arg) {
  auto* probe = static_cast<CancelProbe*>(arg);
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, nullptr);
  pthread_cancel(pthread_self());
  probe->result = shard_malloc(64);
  probe->returned.store(true);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
  shard_free(probe->result);
  return nullptr;
}

void* page_map_with_cancel_pending(void* arg) {
  auto* probe = static_cast<CancelProbe*>(arg);
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, nullptr);
  pthread_cancel(pthread_self());
  uint64_t bits[1];
  shardalloc::platform::os_unpopulated(probe->block, 8, bits);
  probe->returned.store(true);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
  return nullptr;
}

}  // namespace

// POSIX lists no function of the malloc family among the cancellation
// points, and none may be one: a thread whose cancellation is pending
// must come back from realloc. The page map's open, pread and close are
// cancellation points of glibc: the thread was cancelled inside realloc,
// which neither returned its new block (leaked) nor freed the old one.
TEST(ReallocCopyReview, ASparseMoveIsNoCancellationPoint) {
  SKIP_IN_CHECKED_MODE();
  CancelProbe probe;
  probe.block = shard_malloc(kBlock);
  ASSERT_NE(probe.block, nullptr);
  static_cast<unsigned char*>(probe.block)[kBlock / 2] = 9;
  probe.grown = kGrown;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, realloc_with_cancel_pending, &probe), 0);
  void* ret = nullptr;
  ASSERT_EQ(pthread_join(t, &ret), 0);
  EXPECT_TRUE(probe.returned.load()) << "the thread was cancelled inside realloc";
  EXPECT_NE(ret, PTHREAD_CANCELED);
  if (probe.returned.load()) {
    ASSERT_NE(probe.result, nullptr);
    EXPECT_EQ(static_cast<unsigned char*>(probe.result)[kBlock / 2], 9);
    shard_free(probe.result);
  }
}

// The same for the page map's reader itself (what realloc and any later
// user of PageSource::unpopulated call).
TEST(ReallocCopyReview, ThePageMapReaderIsNoCancellationPoint) {
  void* m = mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  CancelProbe probe;
  probe.block = m;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, page_map_with_cancel_pending, &probe), 0);
  void* ret = nullptr;
  ASSERT_EQ(pthread_join(t, &ret), 0);
  EXPECT_TRUE(probe.returned.load()) << "the thread was cancelled inside os_unpopulated";
  munmap(m, 8 * kPage);
}

// A thread's first allocation acquires its heap, which asks for a secret
// (platform::entropy): glibc's getrandom is a cancellation point, so the
// thread was cancelled inside malloc, unwound out of the call with its
// in-call flag set (api/call_guard.h). Found by this review; older than
// the sparse copy.
TEST(ReallocCopyReview, AThreadsFirstAllocationIsNoCancellationPoint) {
  CancelProbe probe;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, first_malloc_with_cancel_pending, &probe), 0);
  void* ret = nullptr;
  ASSERT_EQ(pthread_join(t, &ret), 0);
  EXPECT_TRUE(probe.returned.load()) << "the thread was cancelled inside its first malloc";
  EXPECT_NE(ret, PTHREAD_CANCELED);
}
