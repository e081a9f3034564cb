// Heap snapshots to a file descriptor (the text comes from core/snapshot.h).
#pragma once
#include "core/domain.h"

namespace shardalloc::platform {

// Writes the snapshot of d to fd: 0, or -1 with errno set (EBADF for a
// negative fd, or the error of write(2); EIO when it wrote nothing).
int write_snapshot_to_fd(const core::Domain& d, const char* domain_name, int fd);

}  // namespace shardalloc::platform
