// Checked mode's allocation and free hooks: canaries armed at malloc and
// disarmed at free (see core/checked.h). Unchecked builds compile nothing
// here: heap.h names these functions only in discarded `if constexpr` branches.
#include "core/checked.h"
#include "core/heap.h"
#include "core/hooks.h"

#if SHARDALLOC_CHECKED

namespace shardalloc::core {
namespace {

// Marks the block behind p (just allocated) live. Blocks that come off a free
// list must still carry the freed canary: anything else is a write to a
// freed block. Huge blocks are fresh spans and carry nothing yet.
void arm_canary(void* p) {
  Segment* s = segment_of(p);
  const Page* page = s->page_of(p);
  const Block* b = page->block_of(p);
  uint64_t* canary = page->canary_of(b);
  if (s->kind != SegmentKind::kHuge && *canary != page->keys.canary_freed(addr(b))) {
    platform::fatal("heap corruption: a freed block was written to (use after free), block", b);
  }
  // relaxed: the block is ours alone until we return it; whoever frees it
  // later received the pointer (and so this store) through the program.
  __atomic_store_n(canary, page->keys.canary_live(addr(b)), __ATOMIC_RELAXED);
}

}  // namespace

void disarm_canary(const Page* page, Block* b, const void* p) {
  const uint64_t live = page->keys.canary_live(addr(b));
  const uint64_t freed = page->keys.canary_freed(addr(b));
  // relaxed RMW: only atomicity matters, so that of two racing frees of one
  // block exactly one sees `live`; the list push orders everything else.
  const uint64_t seen = __atomic_exchange_n(page->canary_of(b), freed, __ATOMIC_RELAXED);
  if (SHARD_LIKELY(seen == live)) return;
  if (seen == freed) platform::fatal("double free detected", p);
  platform::fatal("heap corruption: the bytes after the block were overwritten (buffer overflow), block", p);
}

void* Heap::alloc_checked(size_t size) {
  if (size > kMaxRequest) return nullptr;
  void* p = alloc_block(checked_block_bytes(size));
  if (p != nullptr) arm_canary(p);
  return p;
}

void* Heap::alloc_aligned_checked(size_t size, size_t align) {
  if (size > kMaxRequest) return nullptr;
  void* p = alloc_aligned_block(checked_block_bytes(size), align);
  if (p != nullptr) arm_canary(p);
  return p;
}

}  // namespace shardalloc::core

#endif  // SHARDALLOC_CHECKED
