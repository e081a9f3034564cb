// How a C API call failed, told the C way: errno.
#include <cerrno>

#include "core/hooks.h"

namespace shardalloc::platform {

void report_failure(Failure f) { errno = f == Failure::kNoMemory ? ENOMEM : EINVAL; }

}  // namespace shardalloc::platform
