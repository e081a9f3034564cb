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
  std::atomic<uint32_t> claimed{0};
};

constinit Record g_records[kRecords];

}  // namespace

core::RemoteBatch* claim_remote_batch() {
  for (Record& r : g_records) {
    uint32_t free = 0;
    // acquire: the previous holder's release (below) ordered its pushes, which
    // emptied the batch, before the record became free.
    if (r.claimed.load(std::memory_order_relaxed) == 0 &&
        r.claimed.compare_exchange_strong(free, 1, std::memory_order_acquire,
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
  r->claimed.store(0, std::memory_order_release);
}

void remote_batches_after_fork_in_child(const core::RemoteBatch* keep) {
  for (Record& r : g_records) {
    if (&r.batch == keep) continue;
    r.batch = core::RemoteBatch{};
    r.claimed.store(0, std::memory_order_relaxed);  // relaxed: only this thread runs
  }
}

}  // namespace shardalloc::platform
