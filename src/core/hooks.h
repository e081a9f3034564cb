// What the core needs from its platform, declared here and defined once per
// platform: src/platform/linux/ (hosted) or src/platform/bare/ (kernel).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardalloc::core {
struct Domain;
struct Heap;
struct Segment;
}  // namespace shardalloc::core

namespace shardalloc::platform {

// Prints one line naming `what` and `p`, then stops the program (or the kernel).
[[noreturn]] void fatal(const char* what, const void* p);

// The calling thread's (or CPU's) heap in domain d, acquired on first use.
// Returns null when no heap can be had (out of metadata memory). For domains
// that live for ever (d->life null): the process domain and regions.
core::Heap* current_heap(core::Domain* d);
// The same for the domain of a first-class heap (d->life set), whose cached
// heaps may belong to an earlier incarnation (docs/protocols.md 7): those are
// dropped, never returned. Kept apart so that region look-ups pay nothing for it.
core::Heap* current_first_class_heap(core::Domain* d);

// A random-ish 64-bit value for secrets (no allocation, no libc needed on bare).
unsigned long long entropy();

// The process id a heap snapshot names in its header (Linux: getpid()); 0 on
// bare metal, which has no processes.
unsigned long long process_id();

// A free found that p's segment s is no live segment of d, the domain of the
// caller's heap. Frees p into the domain that owns it when the platform can
// tell one safely (Linux: a live first-class heap over OS memory, so that
// shard_free works on its blocks), else stops with
// fatal("free of a pointer that is not allocated", p).
void free_foreign(const core::Domain* d, core::Segment* s, void* p);

// Destroy of a first-class heap has marked d dying (core/domain_life.h):
// returns once no thread is still giving back one of d's heaps (Linux: a
// thread exit or heap-cache eviction holding a pin; protocol 7 of
// docs/protocols.md). Bare: CPU heaps are never given back, nothing to wait for.
void quiesce_domain(core::Domain* d);

// Fork safety (docs/protocols.md, "fork"): a *step* is a stretch of a
// protocol that leaves shared state inconsistent until it ends (a pin held,
// a page marked notified but not yet pushed, slots claimed but not yet a
// segment, a heap claimed by a sweeper). A fork waits, for at most 200 ms,
// for the steps other threads were inside when it began (what a step it
// cuts leaves the child: protocols.md 8); a step never waits. Steps nest; they are short
// and never wait for another thread's step. Bare: no fork, no-ops.
// enter_step returns what leave_step must be given back (which count the
// step took; 0 for a nested step, which takes none).
uint32_t enter_step();
void leave_step(uint32_t token);
// How many forks made this process from the first one: the child of a fork
// sees one more than its parent did (Linux: counted in the atfork child
// handler; bare: no fork, 0). State whose owners may be threads the child
// lacks can tell a copy of it (core/range_claims.h).
uint32_t fork_generation();
// The calling thread ends inside a call, in a step that will never be left
// (an asynchronous cancellation, a pthread_exit from a signal handler): takes
// its count back where it is known, so that later forks do not wait for it
// (Linux: each would wait its 200 ms limit; bare: no fork, a no-op).
void drop_steps_of_ending_thread();

// Allocation sampling (docs/profiling.md), called by the core only for a
// domain with sample_allocations set (Linux: the process heap when the heap
// profiler is on; bare: never).
// The next gap between sample points, in bytes handed out (at least 1).
long long sample_interval();
// `block` (block_bytes of them, `size` asked for) is a sampled allocation of
// heap h, which the calling thread owns (in a call). Returns what the
// allocation returns: block, or a replacement (the core then frees block)
// aligned to `align` (0: the malloc alignment; kSampleKeep: the allocation
// must return block itself, no replacement); *tracked tells whether block is
// kept in a table that wants to hear of its free (sampled_block_freed).
inline constexpr size_t kSampleKeep = ~size_t{0};
void* sampled_alloc(core::Heap* h, void* block, size_t size, size_t align, size_t block_bytes,
                    bool* tracked);
// A block of a page holding tracked samples was freed (its page's owner, or
// any thread for a huge block): true when it was a tracked sample (now dropped).
bool sampled_block_freed(void* block);

// How an API call failed, for the caller: errno on Linux, nothing on bare.
enum class Failure { kNoMemory, kInvalidArgument };
void report_failure(Failure f);

}  // namespace shardalloc::platform
