// Small bit and address helpers shared by the core.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

namespace shardalloc::core {

constexpr bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
constexpr uintptr_t align_up(uintptr_t x, size_t align) {
  return (x + align - 1) & ~(uintptr_t(align) - 1);
}
constexpr uintptr_t align_down(uintptr_t x, size_t align) { return x & ~(uintptr_t(align) - 1); }
inline uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }
template <class T = void>
inline T* ptr(uintptr_t a) {
  return reinterpret_cast<T*>(a);
}

#define SHARD_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHARD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SHARD_NOINLINE __attribute__((noinline))
#define SHARD_INLINE inline __attribute__((always_inline))

}  // namespace shardalloc::core
