// The hosted side of the core's allocation sampling (core/hooks.h): where a
// sampled allocation of the process heap goes. Two consumers share the one
// trigger (docs/profiling.md, "Consumers"):
// - the heap profiler records the block (mean gap: its rate, in bytes);
// - guarded sampling (docs/reliability.md, section 7) replaces the block by
//   one of the guarded pool (mean gap: SHARDALLOC_GUARDED_RATE bytes); free
//   reaches the pool through the "not in an arena" path of process_free.
// With both on, the gaps are drawn with the combined rate (the superposition
// of the two exponential processes: 1/R = 1/R_profile + 1/R_guarded), and a
// sampled block of b bytes goes to each consumer independently with
// probability (1 - e^(-b/R_consumer)) / (1 - e^(-b/R)): each consumer then
// samples a block with the probability it would alone, 1 - e^(-b/R_consumer),
// so the profiler's weights stay right. A block both pick is guarded and
// recorded by the profiler under its guarded address.

#include <atomic>
#include <cstdint>

#include "core/config.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/guarded.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/stack_walk.h"

namespace shardalloc::platform {
namespace {

// Per thread: a xorshift64* generator for the gaps, seeded on first use.
constinit thread_local uint64_t tl_gap_state = 0;

// The profiler's mean gap in bytes; 0 until it starts (set_sample_rate).
uint64_t profile_rate = 0;

// A uniform draw in (0, 1].
double uniform() {
  uint64_t x = tl_gap_state;
  if (x == 0) x = entropy() ^ uint64_t(reinterpret_cast<uintptr_t>(&tl_gap_state)) ^ 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tl_gap_state = x;
  const uint64_t r = x * 0x2545F4914F6CDD1Dull;
  return (double((r >> 11) + 1)) * (1.0 / 9007199254740992.0);
}

// Set while this thread takes a stack (the unwinder's own allocations must
// not take one).
constinit thread_local bool tl_in_site = false;

// The first frame of the calling stack outside libshardalloc, or fallback.
const void* caller_site(const void* fallback) {
  if (!own_module_known() || tl_in_site) return fallback;
  void* frames[16];
  tl_in_site = true;
  const int n = capture_stack(frames, 16);
  tl_in_site = false;
  for (int i = 0; i < n; ++i) {
    if (!own_frame(reinterpret_cast<uintptr_t>(frames[i]))) return frames[i];
  }
  return fallback;
}

// Guarded sampling's rate as the trigger uses it: 0 (off) in checked builds,
// which have their own canaries and quarantine and arm every block they
// hand out (a pool block has no header to arm).
uint64_t guarded_rate_in_use() { return core::kChecked ? 0 : guarded_rate(); }

// The combined mean gap of the consumers that are on; 0 when none is.
double combined_rate(uint64_t rp, uint64_t rg) {
  double inverse = 0;
  if (rp != 0) inverse += 1.0 / double(rp);
  if (rg != 0) inverse += 1.0 / double(rg);
  return inverse == 0 ? 0 : 1.0 / inverse;
}

}  // namespace

void set_sample_rate(uint64_t rate) { profile_rate = rate == 0 ? 1 : rate; }

// The mean gap while sampling is on for a heap but no consumer is (guarded
// sampling turned off by shard_guarded_set_rate(0)): a sample point then
// reports nothing, but a rate set again later is in force within about
// this many bytes. (A gap of "never" kept a heap that drew it while the
// rate was 0 from sampling again: a review's test found no guarded block
// after shard_guarded_set_rate(0) then (N).)
constexpr uint64_t kIdleRate = 256 * 1024;

long long sample_interval() {
  const double rate = combined_rate(profile_rate, guarded_rate_in_use());
  if (rate == 0) return (long long)sample_gap(kIdleRate, uniform());
  return (long long)sample_gap(rate < 1 ? 1 : uint64_t(rate), uniform());
}

void* sampled_alloc(core::Heap* h, void* block, size_t size, size_t align, size_t block_bytes,
                    bool* tracked) {
  *tracked = false;
  // Only the thread's own heap in the process domain: a signal handler that
  // interrupted a call allocates from a borrowed heap, where the stack walk
  // is not safe; those samples are skipped.
  if (h != own_process_heap()) return block;
  const uint64_t rp = heap_profile_on() ? profile_rate : 0;
  const uint64_t rg = guarded_rate_in_use();
  bool profile = rp != 0;
  bool guard = rg != 0;
  if (profile && guard) {
    const double b = double(block_bytes);
    const double any = 1 - sample_exp_neg(b / combined_rate(rp, rg));
    profile = uniform() * any <= 1 - sample_exp_neg(b / double(rp));
    guard = uniform() * any <= 1 - sample_exp_neg(b / double(rg));
  }
  void* r = block;
  if (guard && align != kSampleKeep && size <= kGuardedMaxSize) {
    const void* site = caller_site(__builtin_return_address(0));
    if (void* g = guarded_alloc_at(size, align, site)) r = g;
  }
  if (profile) {
    const bool recorded = heap_profile_record(r, size, block_bytes);
    *tracked = recorded && r == block;  // a guarded block's free reaches guarded_sample_freed
  }
  return r;
}

bool sampled_block_freed(void* block) { return heap_profile_forget(block); }

void guarded_sample_freed(void* p) {
  if (heap_profile_on()) heap_profile_forget(p);
  guarded_free_at(p, caller_site(__builtin_return_address(0)));
}

void guarded_sampling_start(bool all_heaps) {
  if (core::kChecked || guarded_rate() == 0) return;
  // The unwinder, which also finds which frames are ours, loaded now
  // (dlopen allocates), outside any allocator call.
  tl_in_site = true;
  stack_walk_start();
  tl_in_site = false;
  // Heaps made from now on copy the flag at init.
  g_process_domain.sample_allocations.store(true,
                                            std::memory_order_relaxed);  // relaxed: see domain.h
  if (!all_heaps) {
    core::Heap* own = own_process_heap();
    if (own != nullptr && !own->placeholder) {
      own->sampling = true;
      // The gap drawn at the old rate (maybe the idle one) is drawn again at
      // the new one, from the next list the slow path hands out. Not from a
      // signal handler that interrupted a call: the heap is half updated.
      if (!in_call()) own->sample_left = 0;
    }
    return;
  }
  // Before other threads start: every heap (as heap_profile_start does).
  // acquire: pairs with the release push of each heap on the list.
  for (core::Heap* h = g_process_domain.heaps.load(std::memory_order_acquire); h != nullptr;
       h = h->next_in_domain) {
    if (!h->placeholder) h->sampling = true;
  }
}

}  // namespace shardalloc::platform
