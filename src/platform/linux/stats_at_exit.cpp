// SHARDALLOC_SHOW_STATS=1: statistics of the process heap at exit, printed
// without allocating.
#include <sys/resource.h>

#include "core/config.h"
#include "core/stats.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/line_writer.h"
#include "platform/linux/options.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {
namespace {

core::DomainStats g_stats;  // static: too large for a thread's stack at exit

// One row of the table, for a class with pages. Huge blocks (class 0) have no one block size.
void print_class_row(unsigned cls, const core::ClassStats& c) {
  if (c.pages == 0) return;
  LineWriter line;
  if (cls == 0) {
    line.text("   huge      varies");
  } else {
    line.num(cls, 7).num(core::class_block_size(cls), 12);
  }
  line.num(c.pages, 7)
      .num(c.live_blocks, 13)
      .num(c.live_bytes, 12)
      .num(c.capacity_blocks, 17)
      .flush();
}

void print_stats() {
  push_own_remote_batch();
  core::collect_stats(g_process_domain, &g_stats);
  const core::DomainStats& s = g_stats;
  LineWriter().text("shardalloc: statistics of the process heap").flush();
  LineWriter().text("  class  block_size  pages  live_blocks  live_bytes  capacity_blocks").flush();
  for (unsigned cls = 1; cls < core::kClassCount; ++cls) print_class_row(cls, s.classes[cls]);
  print_class_row(0, s.classes[0]);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  LineWriter()
      .text("  heaps: ")
      .num(s.heaps)
      .text(" (")
      .num(s.heaps_owned)
      .text(" owned); abandoned heaps adopted ")
      .num(s.heaps_adopted)
      .text(", swept ")
      .num(s.heaps_swept)
      .flush();
  LineWriter()
      .text("  segments: ")
      .num(s.segments_claimed)
      .text(" in use, peak ")
      .num(s.peak_segments)
      .text(" (")
      .num(s.peak_segments * core::kSegmentSize >> 20)
      .text(" MiB); reserved from the OS: ")
      .num(s.total_bytes >> 20)
      .text(" MiB")
      .flush();
  LineWriter()
      .text("  live bytes: ")
      .num(s.live_bytes)
      .text(" (in huge blocks: ")
      .num(s.classes[0].live_bytes)
      .text(")")
      .flush();
  LineWriter()
      .text("  remote frees collected: ")
      .num(s.remote_frees)
      .text("; purged: ")
      .num(s.purged_bytes >> 20)
      .text(" MiB")
      .flush();
  LineWriter().text("  peak RSS: ").num(uint64_t(ru.ru_maxrss)).text(" KiB").flush();
}

__attribute__((destructor)) void stats_at_exit() {
  if (options().show_stats) print_stats();
}

}  // namespace
}  // namespace shardalloc::platform
