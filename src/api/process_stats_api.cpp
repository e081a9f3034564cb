// The process heap's statistics and snapshots (include/shardalloc/stats.h),
// and snapshots to a file descriptor. Hosted: the process domain and file
// descriptors are the Linux platform's (platform/linux/heap_snapshot.h).
#include <cerrno>

#include "api/export.h"
#include "api/region_record.h"
#include "api/stats_fill.h"
#include "core/hooks.h"
#include "core/snapshot.h"
#include "core/text_out.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/heap_snapshot.h"
#include "platform/linux/process_heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"

using namespace shardalloc;

SHARD_EXPORT void shard_stats_get(shard_stats* out) {
  if (out == nullptr) return;
  platform::push_own_remote_batch();
  api::fill_stats(platform::g_process_domain, out);
}

SHARD_EXPORT size_t shard_stats_json(char* buf, size_t len) {
  shard_stats s;
  platform::push_own_remote_batch();
  api::fill_stats(platform::g_process_domain, &s);
  return shard_stats_to_json(&s, buf, len);
}

SHARD_EXPORT size_t shard_heap_snapshot(char* buf, size_t len) {
  platform::push_own_remote_batch();
  core::TextOut out(buf, len);
  core::write_snapshot(out, platform::g_process_domain, "process", platform::process_id());
  return out.finish();
}

SHARD_EXPORT int shard_heap_snapshot_write(int fd) {
  platform::push_own_remote_batch();
  return platform::write_snapshot_to_fd(platform::g_process_domain, "process", fd);
}

SHARD_EXPORT int shard_region_heap_snapshot_write(const shard_region* r, int fd) {
  if (r == nullptr) {
    errno = EINVAL;
    return -1;
  }
  return platform::write_snapshot_to_fd(r->domain, "region", fd);
}

SHARD_EXPORT int shard_profile_write(int fd) {
  platform::push_own_remote_batch();
  return platform::heap_profile_write(fd);
}
SHARD_EXPORT int shard_profile_leaks_write(int fd) {
  platform::push_own_remote_batch();
  return platform::heap_profile_write_leaks(fd);
}
