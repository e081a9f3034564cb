// core::TextOut into a file descriptor, through a buffer of its own (on the
// caller's stack): heap snapshots and heap profiles are written with it,
// without allocating.
#pragma once
#include <errno.h>
#include <unistd.h>

#include <cstddef>

#include "core/text_out.h"

namespace shardalloc::platform {

// TextOut's drain: all of text to the descriptor in *context, retrying after
// EINTR; false (errno set) when the descriptor fails.
inline bool write_all_to_fd(void* context, const char* text, size_t n) {
  const int fd = *static_cast<const int*>(context);
  size_t done = 0;
  while (done < n) {
    const ssize_t w = write(fd, text + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    done += size_t(w);
  }
  return true;
}

class FdText : public core::TextOut {
 public:
  // (The base keeps the addresses of fd_ and buf_ only; nothing is written before finish or a full
  // buffer.)
  explicit FdText(int fd) : core::TextOut(buf_, sizeof buf_, &write_all_to_fd, &fd_), fd_(fd) {}
  FdText(const FdText&) = delete;
  FdText& operator=(const FdText&) = delete;

 private:
  int fd_;
  char buf_[4096];
};

}  // namespace shardalloc::platform
