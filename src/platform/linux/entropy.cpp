#include <sys/random.h>
#include <time.h>

#include <cstdint>

#include "core/hooks.h"

namespace shardalloc::platform {

unsigned long long entropy() {
  unsigned long long v = 0;
  // getrandom never allocates; fall back to the clock and an address (ASLR) if it fails.
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != sizeof v) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = (uint64_t(ts.tv_nsec) << 20) ^ uint64_t(ts.tv_sec) ^ reinterpret_cast<uintptr_t>(&v);
  }
  return v * 0x9E3779B97F4A7C15ull;
}

}  // namespace shardalloc::platform
