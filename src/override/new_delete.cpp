// Every C++ operator new / delete, over the process heap. new calls the
// new-handler and throws std::bad_alloc; the nothrow forms return nullptr.
#include <cstdint>
#include <new>

#include "api/process_alloc.h"

#define SHARD_EXPORT __attribute__((visibility("default")))

using namespace shardalloc;

namespace {

[[gnu::noinline]] void* new_retry(size_t size, size_t align, bool nothrow) {
  for (;;) {
    void* p = align <= core::kMinAlign ? api::process_malloc(size) : api::process_malloc_aligned(size, align);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (...) {
        return nullptr;
      }
    } else {
      handler();
    }
  }
}

inline void* new_impl(size_t size) {
  void* p = api::process_malloc(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_retry(size, 0, false);
}

inline void* new_aligned(size_t size, std::align_val_t align, bool nothrow) {
  return new_retry(size, size_t(align), nothrow);
}

}  // namespace

// Checked builds tag each block with the operator new that allocated it and
// check it (and the size of sized delete) at operator delete; ordinary
// builds compile the tags and kinds away.
constexpr core::AllocKind kOne = core::AllocKind::kNew;
constexpr core::AllocKind kArray = core::AllocKind::kNewArray;
constexpr size_t kUnsized = SIZE_MAX;

SHARD_EXPORT void* operator new(size_t size) { return api::process_tag(new_impl(size), kOne); }
SHARD_EXPORT void* operator new[](size_t size) { return api::process_tag(new_impl(size), kArray); }
SHARD_EXPORT void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return api::process_tag(new_retry(size, 0, true), kOne);
}
SHARD_EXPORT void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return api::process_tag(new_retry(size, 0, true), kArray);
}
SHARD_EXPORT void* operator new(size_t size, std::align_val_t a) {
  return api::process_tag(new_aligned(size, a, false), kOne);
}
SHARD_EXPORT void* operator new[](size_t size, std::align_val_t a) {
  return api::process_tag(new_aligned(size, a, false), kArray);
}
SHARD_EXPORT void* operator new(size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return api::process_tag(new_aligned(size, a, true), kOne);
}
SHARD_EXPORT void* operator new[](size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return api::process_tag(new_aligned(size, a, true), kArray);
}

SHARD_EXPORT void operator delete(void* p) noexcept { api::process_free_as(p, kOne, kUnsized); }
SHARD_EXPORT void operator delete[](void* p) noexcept { api::process_free_as(p, kArray, kUnsized); }
SHARD_EXPORT void operator delete(void* p, size_t n) noexcept { api::process_free_as(p, kOne, n); }
SHARD_EXPORT void operator delete[](void* p, size_t n) noexcept { api::process_free_as(p, kArray, n); }
SHARD_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { api::process_free_as(p, kOne, kUnsized); }
SHARD_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
SHARD_EXPORT void operator delete(void* p, std::align_val_t) noexcept { api::process_free_as(p, kOne, kUnsized); }
SHARD_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { api::process_free_as(p, kArray, kUnsized); }
SHARD_EXPORT void operator delete(void* p, size_t n, std::align_val_t) noexcept { api::process_free_as(p, kOne, n); }
SHARD_EXPORT void operator delete[](void* p, size_t n, std::align_val_t) noexcept {
  api::process_free_as(p, kArray, n);
}
SHARD_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kOne, kUnsized);
}
SHARD_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
