// Fatal errors on a bare-metal kernel: the kernel's hook (shard_set_fatal_hook,
// region.h) reports and stops; without one, or if it returns, the CPU traps.
#include <atomic>

#include "core/hooks.h"
#include "shardalloc/region.h"

namespace shardalloc::platform {
namespace {

std::atomic<void (*)(const char*, const void*)> g_fatal_hook{nullptr};

}  // namespace

void fatal(const char* what, const void* p) {
  // acquire: the hook's own state, set up before it was installed, is visible.
  if (auto hook = g_fatal_hook.load(std::memory_order_acquire)) hook(what, p);
  for (;;) __builtin_trap();
}

}  // namespace shardalloc::platform

extern "C" __attribute__((visibility("default"))) void shard_set_fatal_hook(
    void (*hook)(const char* what, const void* ptr)) {
  // release: pairs with the acquire in fatal().
  shardalloc::platform::g_fatal_hook.store(hook, std::memory_order_release);
}
