// The records of threads' remote-free batches (remote_batches.h).
#include "platform/linux/remote_batches.h"

#include <atomic>
#include <cstdint>

#include "core/assert.h"

namespace shardalloc::platform {
namespace {

// More threads freeing remotely at once than this push one block at a time.
constexpr unsigned kRecords = 256;

struct alignas(64) Record {
  core::RemoteBatch batch;
  std::atomic<uintptr_t> owner{0};  // 0: free; else the holder's tag
};

constinit Record g_records[kRecords];

}  // namespace

core::RemoteBatch* claim_remote_batch(uintptr_t owner) {
  SHARD_ASSERT(owner != 0);
  for (Record& r : g_records) {
    uintptr_t free = 0;
    // acquire: the previous holder's release (below) ordered its pushes, which
    // emptied the batch, before the record became free.
    if (r.owner.load(std::memory_order_relaxed) == 0 &&
        r.owner.compare_exchange_strong(free, owner, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      return &r.batch;
    }
  }
  return nullptr;
}

void release_remote_batch(core::RemoteBatch* batch) {
  Record* r = reinterpret_cast<Record*>(batch);  // batch is a Record's first member
  SHARD_ASSERT(r >= g_records && r < g_records + kRecords);
  // release: the batch is empty for the next thread to claim the record.
  r->owner.store(0, std::memory_order_release);
}

void remote_batches_after_fork_in_child(uintptr_t owner) {
  for (Record& r : g_records) {
    // relaxed: only this thread runs.
    if (r.owner.load(std::memory_order_relaxed) == owner) continue;
    r.batch = core::RemoteBatch{};
    r.owner.store(0, std::memory_order_relaxed);
  }
}

}  // namespace shardalloc::platform
