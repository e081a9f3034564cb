#include "platform/linux/options.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>

#include "platform/linux/guarded.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/line_writer.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {
namespace {

Options g_options;

bool flag(const char* name) {
  const char* v = getenv(name);  // getenv does not allocate
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

bool number(const char* name, uint64_t* out) {
  const char* v = getenv(name);
  if (v == nullptr || *v < '0' || *v > '9') return false;
  // A value past 2^64 - 1 reads as 2^64 - 1 (it wrapped: a huge purge delay became a short one).
  uint64_t n = 0;
  for (; *v >= '0' && *v <= '9'; ++v) {
    if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, uint64_t(*v - '0'), &n))
      n = UINT64_MAX;
  }
  *out = n;
  return true;
}

// A signal by number or name (USR1, SIGUSR2, ...); 0 when not set or unknown.
int signal_number(const char* name) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  if (*v >= '0' && *v <= '9') {
    uint64_t n = 0;
    number(name, &n);
    return n > 0 && n < uint64_t(NSIG) ? int(n) : 0;
  }
  if (v[0] == 'S' && v[1] == 'I' && v[2] == 'G') v += 3;
  struct Named {
    const char* name;
    int number;
  };
  static constexpr Named kNames[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP},
                                     {"PROF", SIGPROF}, {"URG", SIGURG},   {"WINCH", SIGWINCH}};
  for (const Named& n : kNames) {
    if (__builtin_strcmp(v, n.name) == 0) return n.number;
  }
  return 0;
}

// Runs before main (and before other threads exist); allocations made
// earlier simply used the defaults.
__attribute__((constructor(101))) void read_options() {
  g_options.show_stats = flag("SHARDALLOC_SHOW_STATS");
  g_options.verbose = flag("SHARDALLOC_VERBOSE");
  number("SHARDALLOC_PURGE_DELAY_MS", &g_options.purge_delay_ms);
  g_process_domain.purge_delay_ms = g_options.purge_delay_ms;
  number("SHARDALLOC_CALLOC_POPULATE_MAX", &g_options.calloc_populate_max);
  g_process_domain.calloc_populate_max = g_options.calloc_populate_max;
  g_options.huge_guards = flag("SHARDALLOC_HUGE_GUARDS");
  uint64_t rate = 0;
  if (number("SHARDALLOC_GUARDED_RATE", &rate)) {
    set_guarded_rate(rate);
    guarded_sampling_start(true);
  }
  if (g_options.huge_guards) g_process_domain.source.guard = &os_guard;
  const char* profile = getenv("SHARDALLOC_PROFILE");
  if (profile != nullptr && profile[0] != '\0') g_options.profile_path = profile;
  const bool rate_set = number("SHARDALLOC_PROFILE_RATE", &g_options.profile_rate);
  if (g_options.profile_path != nullptr || rate_set)
    heap_profile_start(g_options.profile_rate, g_options.profile_path);
  number("SHARDALLOC_PROFILE_GROWTH_MB", &g_options.profile_growth_mb);
  g_options.profile_signal = signal_number("SHARDALLOC_PROFILE_SIGNAL");
  if (g_options.profile_path != nullptr &&
      (g_options.profile_growth_mb != 0 || g_options.profile_signal != 0)) {
    heap_profile_dumps(g_options.profile_growth_mb << 20, g_options.profile_signal);
  }
  if (g_options.verbose) {
    LineWriter()
        .text("shardalloc: options: show_stats=")
        .num(g_options.show_stats)
        .text(" verbose=1 purge_delay_ms=")
        .num(g_options.purge_delay_ms)
        .text(" calloc_populate_max=")
        .num(g_options.calloc_populate_max)
        .text(" huge_guards=")
        .num(g_options.huge_guards)
        .text(" huge_pages=")
        .num(huge_pages_wanted())
        .flush();
  }
}

}  // namespace

const Options& options() { return g_options; }

bool huge_pages_wanted() {
  // relaxed: every thread reads the same environment; 0 means not read yet.
  static std::atomic<int> wanted{0};
  int w = wanted.load(std::memory_order_relaxed);
  if (w == 0) {
    w = flag("SHARDALLOC_HUGE_PAGES") ? 1 : 2;
    wanted.store(w, std::memory_order_relaxed);
  }
  return w == 1;
}

}  // namespace shardalloc::platform
