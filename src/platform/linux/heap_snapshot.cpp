// Heap snapshots to a file descriptor, through a buffer on the stack (no
// allocation), and SHARDALLOC_SNAPSHOT=path: a snapshot of the process heap
// at exit. The text and the walk behind it are the core's (core/snapshot.h).
// Render with tools/shardalloc-heapmap.
#include "platform/linux/heap_snapshot.h"
#include "platform/linux/call_guard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "core/hooks.h"
#include "core/snapshot.h"
#include "core/text_out.h"
#include "platform/linux/fd_text.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {
namespace {

// SHARDALLOC_SNAPSHOT=path: a snapshot of the process heap at exit. "%p" in
// the path becomes the process id (a preloaded library reaches children too).
// Priority 101: runs after the other destructors of this library and after
// the program's own (it is one of the last to run).
__attribute__((destructor(101))) void snapshot_at_exit() {
  const char* spec = getenv("SHARDALLOC_SNAPSHOT");  // getenv does not allocate
  if (spec == nullptr || spec[0] == '\0') return;
  char path[4096];
  size_t n = 0;
  for (const char* c = spec; *c != '\0' && n + 24 < sizeof path; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      char digits[20];
      int k = 0;
      for (uint64_t pid = uint64_t(getpid()); k == 0 || pid != 0; pid /= 10)
        digits[k++] = char('0' + pid % 10);
      while (k > 0) path[n++] = digits[--k];
      ++c;
    } else {
      path[n++] = *c;
    }
  }
  path[n] = '\0';
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  push_own_remote_batch();
  write_snapshot_to_fd(g_process_domain, "process", fd);
  close(fd);
}

}  // namespace

unsigned long long process_id() { return static_cast<unsigned long long>(getpid()); }

int write_snapshot_to_fd(const core::Domain& d, const char* domain_name, int fd) {
  if (fd < 0) {
    errno = EBADF;
    return -1;
  }
  FdText out(fd);
  core::write_snapshot(out, d, domain_name, process_id());
  out.finish();
  return out.failed() ? -1 : 0;
}

}  // namespace shardalloc::platform
