#include "platform/linux/line_writer.h"

#include <unistd.h>

namespace shardalloc::platform {

void LineWriter::flush() {
  buf_[len_++] = '\n';
  size_t done = 0;
  while (done < len_) {
    const ssize_t n = write(STDERR_FILENO, buf_ + done, len_ - done);
    if (n <= 0) break;
    done += size_t(n);
  }
  len_ = 0;
}

}  // namespace shardalloc::platform
