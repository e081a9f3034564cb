// Keeps the compiler from seeing through the allocator calls a test makes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardtest {

// Keeps the compiler from eliding an allocation / free pair or assuming
// anything about a pointer.
template <class T>
inline T* opaque(T* p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

// A size the compiler cannot see (no -Walloc-size-larger-than on purpose-made failures).
inline size_t hide(size_t v) {
  asm volatile("" : "+r"(v));
  return v;
}

inline bool is_aligned(const void* p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

}  // namespace shardtest
