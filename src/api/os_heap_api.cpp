// shard_heap_new: a first-class heap over OS memory. Hosted.
#include <cerrno>

#include "api/export.h"
#include "platform/linux/os_heaps.h"
#include "shardalloc/heap.h"

SHARD_EXPORT shard_heap* shard_heap_new(void) {
  shardalloc::core::FirstClassHeap* h = shardalloc::platform::os_heap_new();
  if (h == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  return reinterpret_cast<shard_heap*>(h);
}
