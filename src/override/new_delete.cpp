// Every C++ operator new / delete, over the process heap. new calls the
// new-handler and throws std::bad_alloc; the nothrow forms return nullptr.
//
// libshardalloc.so needs libc only (no libstdc++, libm or libgcc_s), so that
// a preloaded C program maps and touches no more than with glibc's malloc.
// What operator new needs from the C++ runtime - the new-handler, throwing
// std::bad_alloc, catching what a handler throws - it finds when a request
// has failed, with dlsym, in whatever C++ runtime the program has loaded
// (a C++ program always has one; a C program that calls operator new has
// none, and gets nullptr from the nothrow forms and a clear fatal error from
// the others). This file is built without exceptions (no personality
// routine, no catch), but with unwind tables: a handler's exception and
// std::bad_alloc unwind through operator new's frames to the caller.
// Looking symbols up only on failure keeps dlsym off every successful path;
// dlsym may allocate, which is safe because no lock is held here.
#include <dlfcn.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <type_traits>

#include "api/export.h"
#include "api/process_alloc.h"
#include "platform/linux/line_writer.h"

using namespace shardalloc;

namespace {

using NewHandler = void (*)();
// The mangled names below spell size_t as unsigned long ("m"), as on every
// 64-bit Linux target (x86-64, aarch64, riscv64).
static_assert(std::is_same_v<size_t, unsigned long>);

// A symbol of the program's C++ runtime, looked up in the global scope once
// it exists (null while it does not: a C program may dlopen one later).
void* runtime_symbol(std::atomic<void*>& cache, const char* name) {
  // relaxed: the pointer is the whole message; dlsym's result never changes.
  void* f = cache.load(std::memory_order_relaxed);
  if (f == nullptr) {
    f = dlsym(RTLD_DEFAULT, name);
    if (f != nullptr) cache.store(f, std::memory_order_relaxed);
  }
  return f;
}

// std::get_new_handler(): libstdc++ and libc++abi both define it in namespace std.
NewHandler current_new_handler() {
  static std::atomic<void*> get;
  void* f = runtime_symbol(get, "_ZSt15get_new_handlerv");
  return f != nullptr ? reinterpret_cast<NewHandler (*)()>(f)() : nullptr;
}

// Throws std::bad_alloc through the runtime's own thrower (libstdc++'s
// std::__throw_bad_alloc(), libc++'s std::__1::__throw_bad_alloc()), so the
// exception object, its type_info and destructor are the runtime's.
[[noreturn]] void throw_bad_alloc(size_t size) {
  static std::atomic<void*> gnu, llvm;
  void* f = runtime_symbol(gnu, "_ZSt17__throw_bad_allocv");
  if (f == nullptr) f = runtime_symbol(llvm, "_ZNSt3__117__throw_bad_allocEv");
  if (f != nullptr) reinterpret_cast<void (*)()>(f)();
  platform::LineWriter()
      .text("shardalloc: fatal: operator new(")
      .num(size)
      .text(") failed, and no C++ runtime is loaded to throw std::bad_alloc")
      .flush();
  abort();
}

void* try_alloc(size_t size, size_t align) {
  return align <= core::kMinAlign ? api::process_malloc(size)
                                  : api::process_malloc_aligned(size, align);
}

// The throwing forms after a failed allocation: the new-handler until it
// gives up (or throws), then std::bad_alloc.
[[gnu::noinline]] void* new_retry(size_t size, size_t align) {
  for (;;) {
    void* p = try_alloc(size, align);
    if (p != nullptr) return p;
    NewHandler handler = current_new_handler();
    if (handler == nullptr) throw_bad_alloc(size);
    handler();
  }
}

// The throwing forms but for a direct size's popped block.
[[gnu::noinline]] void* new_general(size_t size) {
  void* p = api::process_malloc(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_retry(size, 0);
}

inline void* new_impl(size_t size) {
  if (void* p = api::process_malloc_popped(size)) return p;
  return new_general(size);
}

// The runtime's own nothrow operator new of the same form (RTLD_NEXT: the
// definition ours interposes), which calls our throwing form inside its own
// try/catch (libstdc++ since GCC 9, libc++), or null.
void* next_nothrow_new(std::atomic<void*>& cache, const char* name) {
  // relaxed: as in runtime_symbol.
  void* f = cache.load(std::memory_order_relaxed);
  if (f == nullptr) {
    f = dlsym(RTLD_NEXT, name);
    if (f != nullptr) cache.store(f, std::memory_order_relaxed);
  }
  return f;
}

// The nothrow forms after a failed allocation. Without a new-handler: nullptr.
// With one, the handler may throw, and its exception must not leave a
// nothrow new; catching it here would need the C++ runtime's personality
// routine at load time, so the request goes to the runtime's nothrow
// operator new instead, which catches. (Without that, the handler is not
// called: nullptr rather than an exception from a noexcept function.)
[[gnu::noinline]] void* nothrow_retry(size_t size) {
  if (current_new_handler() == nullptr) return nullptr;
  static std::atomic<void*> next;
  void* f = next_nothrow_new(next, "_ZnwmRKSt9nothrow_t");
  return f != nullptr
             ? reinterpret_cast<void* (*)(size_t, const std::nothrow_t&)>(f)(size, std::nothrow_t())
             : nullptr;
}
[[gnu::noinline]] void* nothrow_retry_array(size_t size) {
  if (current_new_handler() == nullptr) return nullptr;
  static std::atomic<void*> next;
  void* f = next_nothrow_new(next, "_ZnamRKSt9nothrow_t");
  return f != nullptr
             ? reinterpret_cast<void* (*)(size_t, const std::nothrow_t&)>(f)(size, std::nothrow_t())
             : nullptr;
}
using AlignedNothrow = void* (*)(size_t, std::align_val_t, const std::nothrow_t&);
[[gnu::noinline]] void* nothrow_retry_aligned(size_t size, std::align_val_t align) {
  if (current_new_handler() == nullptr) return nullptr;
  static std::atomic<void*> next;
  void* f = next_nothrow_new(next, "_ZnwmSt11align_val_tRKSt9nothrow_t");
  return f != nullptr ? reinterpret_cast<AlignedNothrow>(f)(size, align, std::nothrow_t())
                      : nullptr;
}
[[gnu::noinline]] void* nothrow_retry_aligned_array(size_t size, std::align_val_t align) {
  if (current_new_handler() == nullptr) return nullptr;
  static std::atomic<void*> next;
  void* f = next_nothrow_new(next, "_ZnamSt11align_val_tRKSt9nothrow_t");
  return f != nullptr ? reinterpret_cast<AlignedNothrow>(f)(size, align, std::nothrow_t())
                      : nullptr;
}

}  // namespace

// Checked builds tag each block with the operator new that allocated it and
// check it (and the size of sized delete) at operator delete; ordinary
// builds compile the tags and kinds away. (A nothrow form's retry through
// the runtime's nothrow new reaches our throwing form of the same kind,
// which tags the block already; tagging it again is harmless.)
constexpr core::AllocKind kOne = core::AllocKind::kNew;
constexpr core::AllocKind kArray = core::AllocKind::kNewArray;
constexpr size_t kUnsized = SIZE_MAX;

SHARD_EXPORT_CXX void* operator new(size_t size) { return api::process_tag(new_impl(size), kOne); }
SHARD_EXPORT_CXX void* operator new[](size_t size) {
  return api::process_tag(new_impl(size), kArray);
}
SHARD_EXPORT_CXX void* operator new(size_t size, const std::nothrow_t&) noexcept {
  void* p = try_alloc(size, 0);
  return api::process_tag(p != nullptr ? p : nothrow_retry(size), kOne);
}
SHARD_EXPORT_CXX void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  void* p = try_alloc(size, 0);
  return api::process_tag(p != nullptr ? p : nothrow_retry_array(size), kArray);
}
SHARD_EXPORT_CXX void* operator new(size_t size, std::align_val_t a) {
  return api::process_tag(new_retry(size, size_t(a)), kOne);
}
SHARD_EXPORT_CXX void* operator new[](size_t size, std::align_val_t a) {
  return api::process_tag(new_retry(size, size_t(a)), kArray);
}
SHARD_EXPORT_CXX void* operator new(size_t size, std::align_val_t a,
                                    const std::nothrow_t&) noexcept {
  void* p = try_alloc(size, size_t(a));
  return api::process_tag(p != nullptr ? p : nothrow_retry_aligned(size, a), kOne);
}
SHARD_EXPORT_CXX void* operator new[](size_t size, std::align_val_t a,
                                      const std::nothrow_t&) noexcept {
  void* p = try_alloc(size, size_t(a));
  return api::process_tag(p != nullptr ? p : nothrow_retry_aligned_array(size, a), kArray);
}

SHARD_EXPORT_CXX void operator delete(void* p) noexcept { api::process_free_as(p, kOne, kUnsized); }
SHARD_EXPORT_CXX void operator delete[](void* p) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
SHARD_EXPORT_CXX void operator delete(void* p, size_t n) noexcept {
  api::process_free_as(p, kOne, n);
}
SHARD_EXPORT_CXX void operator delete[](void* p, size_t n) noexcept {
  api::process_free_as(p, kArray, n);
}
SHARD_EXPORT_CXX void operator delete(void* p, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kOne, kUnsized);
}
SHARD_EXPORT_CXX void operator delete[](void* p, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
SHARD_EXPORT_CXX void operator delete(void* p, std::align_val_t) noexcept {
  api::process_free_as(p, kOne, kUnsized);
}
SHARD_EXPORT_CXX void operator delete[](void* p, std::align_val_t) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
SHARD_EXPORT_CXX void operator delete(void* p, size_t n, std::align_val_t) noexcept {
  api::process_free_as(p, kOne, n);
}
SHARD_EXPORT_CXX void operator delete[](void* p, size_t n, std::align_val_t) noexcept {
  api::process_free_as(p, kArray, n);
}
SHARD_EXPORT_CXX void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kOne, kUnsized);
}
SHARD_EXPORT_CXX void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  api::process_free_as(p, kArray, kUnsized);
}
