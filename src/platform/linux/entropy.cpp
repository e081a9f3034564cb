#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

#include "core/hooks.h"
#include "platform/linux/errno_kept.h"

namespace shardalloc::platform {

unsigned long long entropy() {
  unsigned long long v = 0;
  // getrandom never allocates; fall back to the clock and an address (ASLR) if it fails.
  // The system call, not glibc's getrandom, which is a cancellation point:
  // a thread's first allocation (its heap's acquisition asks for a secret)
  // was one, and a pending cancellation unwound the thread out of the call
  // with its in-call flag set (api/call_guard.h). errno kept: malloc that
  // succeeds leaves it alone (ENOSYS on an old kernel, EAGAIN before the
  // pool is ready).
  long got;
  {
    const ErrnoKept kept;
    got = syscall(SYS_getrandom, &v, sizeof v, GRND_NONBLOCK);
  }
  if (got != long{sizeof v}) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = (uint64_t(ts.tv_nsec) << 20) ^ uint64_t(ts.tv_sec) ^ reinterpret_cast<uintptr_t>(&v);
  }
  return v * 0x9E3779B97F4A7C15ull;
}

}  // namespace shardalloc::platform
