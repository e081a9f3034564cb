#include "platform/linux/page_map.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "core/segment.h"

namespace shardalloc::platform {

namespace {

// A page map entry: bit 63 a page is present, bit 62 it is swapped out.
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kSwapped = uint64_t{1} << 62;
// Entries read per call: 1 KiB of stack (a signal handler's realloc may run
// on a small alternate stack).
constexpr size_t kEntriesPerRead = 128;

// The system calls themselves, not glibc's open, pread and close: those are
// cancellation points, and realloc must not be one (POSIX names no function
// of the malloc family among them): a thread whose cancellation was pending
// was cancelled inside realloc, its new block leaked and its old one kept.
// (Nor can a library that interposes open, as sandboxes and fakeroot do,
// see the call, or allocate in it.)
int open_page_map() {
  return int(syscall(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
}
ssize_t pread_raw(int fd, void* buf, size_t bytes, off_t at) {
  return ssize_t(syscall(SYS_pread64, fd, buf, bytes, at));
}
void close_raw(int fd) { syscall(SYS_close, fd); }

bool read_entries(int fd, uintptr_t first_page, size_t pages, uint64_t* bits) {
  uint64_t entries[kEntriesPerRead];
  for (size_t done = 0; done < pages;) {
    const size_t n = pages - done < kEntriesPerRead ? pages - done : kEntriesPerRead;
    const off_t at = off_t((first_page + done) * sizeof(uint64_t));
    if (pread_raw(fd, entries, n * sizeof(uint64_t), at) != ssize_t(n * sizeof(uint64_t)))
      return false;
    for (size_t i = 0; i < n; ++i) {
      const size_t page = done + i;
      const uint64_t bit = uint64_t{1} << (page % 64);
      if ((entries[i] & (kPresent | kSwapped)) == 0) {
        bits[page / 64] |= bit;
      } else {
        bits[page / 64] &= ~bit;
      }
    }
    done += n;
  }
  return true;
}

}  // namespace

// Opened for each call, not kept: /proc/self is resolved at open, so an fd
// kept across a fork would read the parent's map in the child.
// (A kernel whose pages are not the core's kOsPage has entries of its own size: no answer.)
bool os_unpopulated(const void* p, size_t pages, uint64_t* bits) {
  if (sysconf(_SC_PAGESIZE) != long{core::kOsPage}) return false;
  const int saved_errno = errno;  // realloc leaves errno alone when it succeeds
  const int fd = open_page_map();
  bool read = false;
  if (fd >= 0) {
    read = read_entries(fd, reinterpret_cast<uintptr_t>(p) / core::kOsPage, pages, bits);
    close_raw(fd);
  }
  errno = saved_errno;
  return read;
}

}  // namespace shardalloc::platform
