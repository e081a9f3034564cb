// shardalloc C++ API: an STL allocator and a std::pmr::memory_resource over
// the process heap (shard_malloc_aligned / shard_free), and shardalloc::heap,
// a first-class heap (heap.h) as a memory_resource.
#pragma once
#include <cstddef>
#include <limits>
#include <memory_resource>
#include <new>

#include "shardalloc/heap.h"
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
    void* p = alignof(T) > alignof(std::max_align_t)
                  ? shard_malloc_aligned(n * sizeof(T), alignof(T))
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

// A first-class heap (heap.h) that owns its memory: destroying the object
// destroys the heap and every block still in it, at once. So containers
// using it (std::pmr::polymorphic_allocator) must go first, or be dropped
// without being destroyed. Any thread may allocate and deallocate through
// it at once; see heap.h for what destroy requires. Not copyable or movable:
// containers keep its address.
class heap final : public std::pmr::memory_resource {
 public:
  // Over OS memory. Throws std::bad_alloc when no heap can be made.
  heap() : h_(shard_heap_new()) {
    if (h_ == nullptr) throw std::bad_alloc();
  }
  // Over `bytes` bytes taken from region r (shard_heap_new_in_region).
  // Throws std::bad_alloc when r cannot serve them (or they are too few).
  heap(shard_region* r, std::size_t bytes) : h_(shard_heap_new_in_region(r, bytes)) {
    if (h_ == nullptr) throw std::bad_alloc();
  }
  heap(const heap&) = delete;
  heap& operator=(const heap&) = delete;
  ~heap() override { shard_heap_destroy(h_); }

  shard_heap* get() const noexcept { return h_; }
  std::size_t used_bytes() const noexcept { return shard_heap_used_bytes(h_); }

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = shard_heap_malloc_aligned(h_, bytes, align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override { shard_heap_free(h_, p); }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  shard_heap* h_;
};

}  // namespace shardalloc
