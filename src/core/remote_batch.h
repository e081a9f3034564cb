// A thread's runs of remote frees, one chain per size class, each pushed
// with one CAS (docs/protocols.md, "Remote-free batches").
//
// A thread that frees many blocks of a page it does not own (a consumer
// freeing a producer's batch, a thread freeing what an exited thread left)
// links them into a chain of its own, with no atomic operation, and pushes
// the chain onto the page's thread_free list with one CAS when a free of
// another page of the same class comes, when the chain is full, or when the
// thread exits. So a run of n such frees costs one CAS, and one transfer of
// the page's free line between cores, where it cost n. Blocks in a chain are
// still counted in their page's `used`: the page, and its segment, stay
// while the chain holds any of them.
//
// Only the process heap batches (the malloc family's free, in a call: a
// signal handler's free takes the plain path and never touches the chain),
// and only release builds: region and first-class heaps keep exact counts
// at every call, and checked builds send every free through their own path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/block.h"
#include "core/page.h"
#include "core/segment.h"
#include "core/size_class.h"

namespace shardalloc::core {

// Blocks larger than this are pushed at once: a chain would hold one or two.
inline constexpr size_t kRemoteBatchBlockMax = 2048;
// Limits of one chain: at most this many blocks, and this many bytes of them
// (what a thread that stops freeing may keep from one page's owner).
inline constexpr uint32_t kRemoteChainBlocks = 64;
inline constexpr size_t kRemoteChainBytes = 8 * 1024;
// One chain per size class up to kRemoteBatchBlockMax (class 0 unused): the
// frees of a batch of mixed sizes interleave their pages, one per class.
inline constexpr unsigned kRemoteBatchClasses = size_class_of(kRemoteBatchBlockMax) + 1;

struct RemoteChain {
  Page* page = nullptr;   // null: the chain is empty
  Block* head = nullptr;  // the latest block; linked to the next by Page::set_next
  Block* tail = nullptr;  // the first block; its link is set by the push
  uint32_t count = 0;
  uint32_t limit = 0;  // blocks the chain may hold (kRemoteChainBlocks, kRemoteChainBytes)

  // b, a block of `on` (the chain's page), goes on top; the caller checked
  // that it is not on top already and that there is room.
  SHARD_INLINE void link(Page* on, Block* b) {
    on->set_next(b, head);
    head = b;
    ++count;
  }
};

struct RemoteBatch {
  RemoteChain chains[kRemoteBatchClasses];
};

// free_remote (heap.h) of p in segment s, a segment of small, medium or
// large pages of the caller's domain (its cookie checked: not huge, not
// foreign), but a block up to kRemoteBatchBlockMax waits in the chain of its
// class; a block of another page of that class pushes the chain first.
void free_remote_batched(Segment* s, void* p, RemoteBatch& batch);
// The common case of free_remote_batched, inline: p is a block start, below
// capacity, of the page its class's chain holds, not on top of it, and the chain
// has room: links it in and returns true; else does nothing and returns false.
SHARD_INLINE bool append_remote_batched(Segment* s, void* p, RemoteBatch& batch) {
  if constexpr (kChecked) return false;
  Page* page = s->page_of(p);
  const unsigned cls = page->size_class;
  if (cls >= kRemoteBatchClasses) return false;
  RemoteChain& chain = batch.chains[cls];
  Block* b = static_cast<Block*>(p);
  // (A chain's page is in use: it holds blocks of the chain.)
  if (page != chain.page || b == chain.head || chain.count >= chain.limit ||
      !page->is_handed_block(p)) {
    return false;
  }
  chain.link(page, b);
  return true;
}

// Pushes every chain of `batch` and empties it.
void flush_remote_batch(RemoteBatch& batch);

}  // namespace shardalloc::core
