// Options from the environment, read once at start-up without allocating:
//   SHARDALLOC_SHOW_STATS=1     print statistics of the process heap at exit
//   SHARDALLOC_VERBOSE=1        print options at start and each new OS arena
//   SHARDALLOC_PURGE_DELAY_MS=N purge released memory after N ms (0: at once; default 100)
//   SHARDALLOC_CALLOC_POPULATE_MAX=N calloc of a huge block on fresh memory up to N bytes
//                               takes its pages at once (default 1048576; 0: never)
//   SHARDALLOC_HUGE_GUARDS=1    an inaccessible slot after every huge block up to 1 MiB
//                               (two mprotect calls per such allocation; off by default)
//   SHARDALLOC_GUARDED_RATE=N   guarded sampling, about one allocation per N bytes in a
//                               guarded slot (platform/linux/guarded.h; 0 = off, the default)
//   SHARDALLOC_PROFILE=path     heap profiler on; profile and leak report at exit (%p: pid)
//   SHARDALLOC_PROFILE_RATE=N   one sample per N bytes on average (default 524288); alone,
//                               turns the profiler on without writing at exit
//   SHARDALLOC_PROFILE_GROWTH_MB=N  with SHARDALLOC_PROFILE: a profile path.1, path.2, ...
//                               each time the live estimate grows N MiB past the last one
//   SHARDALLOC_PROFILE_SIGNAL=S with SHARDALLOC_PROFILE: signal S (USR1, SIGUSR2, a number)
//                               asks for a profile path.signal.1, ... (written at the next
//                               sample of any thread, or at exit)
#pragma once
#include <cstdint>

#include "core/domain.h"

namespace shardalloc::platform {

struct Options {
  bool show_stats = false;
  bool verbose = false;
  uint64_t purge_delay_ms = core::kDefaultPurgeDelayMs;
  uint64_t calloc_populate_max = core::kDefaultCallocPopulateMax;
  bool huge_guards = false;
  const char* profile_path = nullptr;  // docs/profiling.md
  uint64_t profile_rate = 0;           // 0: not set
  uint64_t profile_growth_mb = 0;      // 0: no growth dumps
  int profile_signal = 0;              // 0: no dump signal
};

const Options& options();

// SHARDALLOC_HUGE_PAGES=1: arenas are advised MADV_HUGEPAGE, else
// MADV_NOHUGEPAGE (os_source.cpp). Read from the environment at the first
// call, which is the first arena's reservation: that comes before
// read_options, and every arena gets the same advice.
bool huge_pages_wanted();

}  // namespace shardalloc::platform
