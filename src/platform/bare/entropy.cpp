// Entropy on a bare-metal kernel: no RNG is assumed, so this mixes what
// differs between boots and calls: a call counter, a stack address and the
// address of a global (both move under KASLR). It seeds the secret that tells
// segment headers from arbitrary memory (core/domain.h), which needs to be
// unpredictable only to the degree a kernel's layout is.
#include <atomic>
#include <cstdint>

#include "core/hooks.h"

namespace shardalloc::platform {
namespace {

std::atomic<uint64_t> g_calls{0};

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

unsigned long long entropy() {
  int local = 0;
  // relaxed: a counter; only its distinctness matters.
  const uint64_t n = g_calls.fetch_add(1, std::memory_order_relaxed);
  const auto stack = uint64_t(reinterpret_cast<uintptr_t>(&local));
  const auto global = uint64_t(reinterpret_cast<uintptr_t>(&g_calls));
  return mix(n ^ mix(stack ^ mix(global)));
}

}  // namespace shardalloc::platform
