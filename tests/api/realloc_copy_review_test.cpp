// A review of realloc's sparse copy (core/realloc_copy.h): moments where a
// page absent from the page tables holds the program's bytes (a copy that
// skipped such pages unread, as the kernel's page map would allow, lost
// them), and where the copy's system calls change what realloc promises
// (it is no cancellation point).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>

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

uintptr_t page_up(uintptr_t a) { return (a + kPage - 1) & ~uintptr_t{kPage - 1}; }
uintptr_t page_down(uintptr_t a) { return a & ~uintptr_t{kPage - 1}; }

// The byte a lazily supplied page holds at offset i of the block: never zero.
unsigned char lazy_byte(uintptr_t base, uintptr_t a) {
  return static_cast<unsigned char>(((a - base) / kPage) * 7 % 251 + 1);
}

// A userfaultfd over [start, end): pages are supplied when first touched,
// as CRIU's lazy restore (criu restore --lazy-pages) supplies a restored
// program's memory, or a far-memory runtime brings its pages back. Until
// then their page table entries are empty: neither present nor swapped.
class LazyPages {
 public:
  bool open(uintptr_t base, uintptr_t start, uintptr_t end) {
    base_ = base;
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
    fd_ = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    if (fd_ < 0) fd_ = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (fd_ < 0) return false;
    uffdio_api api{};
    api.api = UFFD_API;
    if (ioctl(fd_, UFFDIO_API, &api) != 0) return false;
    uffdio_register reg{};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(fd_, UFFDIO_REGISTER, &reg) != 0) return false;
    start_ = start;
    end_ = end;
    server_ = std::thread([this] { serve(); });
    return true;
  }
  ~LazyPages() {
    stop_.store(true);
    if (server_.joinable()) server_.join();
    if (fd_ >= 0) {
      if (end_ > start_) {
        uffdio_range range{start_, end_ - start_};
        ioctl(fd_, UFFDIO_UNREGISTER, &range);
      }
      close(fd_);
    }
  }
  size_t served() const { return served_.load(); }

 private:
  void serve() {
    alignas(kPage) static unsigned char page[kPage];
    while (!stop_.load()) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 20) <= 0) continue;
      uffd_msg msg{};
      if (read(fd_, &msg, sizeof msg) != ssize_t(sizeof msg)) continue;
      if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
      const uintptr_t at = page_down(uintptr_t(msg.arg.pagefault.address));
      for (size_t i = 0; i < kPage; ++i) page[i] = lazy_byte(base_, at + i);
      uffdio_copy copy{};
      copy.dst = at;
      copy.src = uintptr_t(page);
      copy.len = kPage;
      ioctl(fd_, UFFDIO_COPY, &copy);
      served_.fetch_add(1);
    }
  }
  int fd_ = -1;
  uintptr_t base_ = 0, start_ = 0, end_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> served_{0};
  std::thread server_;
};

}  // namespace

// A page that is neither present nor swapped out is not a page that reads
// as zero: under a userfaultfd (CRIU's lazy restore, far-memory runtimes)
// its first touch brings the program's bytes. The sparse copy took the page
// map's holes for zero and skipped them unread, so the moved block read as
// zero where the original held data (mincore also calls such pages not
// resident, which is what sends the copy down its sparse path).
TEST(ReallocCopyReview, PagesAUserfaultfdSuppliesOnFirstTouchAreCopied) {
  SKIP_IN_CHECKED_MODE();
  auto* p = static_cast<unsigned char*>(shard_malloc(kBlock));
  ASSERT_NE(p, nullptr);
  const uintptr_t base = uintptr_t(p);
  const uintptr_t start = page_up(base), end = page_down(base + kBlock);
  size_t served = 0;
  unsigned char* q = nullptr;
  {
    LazyPages lazy;
    if (!lazy.open(base, start, end)) {
      shard_free(p);
      GTEST_SKIP() << "userfaultfd unavailable here (" << std::strerror(errno) << ")";
    }
    q = static_cast<unsigned char*>(shard_realloc(p, kGrown));
    served = lazy.served();
  }
  ASSERT_NE(q, nullptr);
  size_t wrong = 0, first = SIZE_MAX;
  for (uintptr_t a = start; a < end; a += kPage) {
    // One byte a page: the page's first.
    if (q[a - base] != lazy_byte(base, a)) {
      ++wrong;
      if (first == SIZE_MAX) first = a - base;
    }
  }
  EXPECT_EQ(wrong, 0u) << "of " << (end - start) / kPage << " pages the original held (" << served
                       << " supplied on touch); first wrong at offset " << first;
  shard_free(q);
}

namespace {

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

}  // namespace

// POSIX lists no function of the malloc family among the cancellation
// points, and none may be one: a thread whose cancellation is pending
// must come back from realloc. (A page map read with glibc's open, pread
// and close, cancellation points, had the thread cancelled inside realloc,
// which neither returned its new block, leaked, nor freed the old one.)
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
