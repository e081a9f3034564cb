// shardalloc C++ API: an STL allocator and a std::pmr::memory_resource over
// the process heap (shard_malloc_aligned / shard_free).
#pragma once
#include <cstddef>
#include <limits>
#include <memory_resource>
#include <new>

#include "shardalloc/shardalloc.h"

namespace shardalloc {

// Allocates from shardalloc whether or not malloc is overridden.
template <class T>
struct stl_allocator {
  using value_type = T;
  stl_allocator() noexcept = default;
  template <class U>
  stl_allocator(const stl_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = alignof(T) > alignof(std::max_align_t) ? shard_malloc_aligned(n * sizeof(T), alignof(T))
                                                     : shard_malloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { shard_free(p); }

  template <class U>
  bool operator==(const stl_allocator<U>&) const noexcept {
    return true;
  }
};

// A memory_resource over the process heap; all instances are interchangeable.
class heap_resource final : public std::pmr::memory_resource {
 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = shard_malloc_aligned(bytes, align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override { shard_free(p); }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return dynamic_cast<const heap_resource*>(&other) != nullptr;
  }
};

// The process-wide instance.
inline heap_resource* heap_memory_resource() noexcept {
  static heap_resource resource;
  return &resource;
}

}  // namespace shardalloc
