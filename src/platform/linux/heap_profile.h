// The heap profiler (docs/profiling.md): sampled allocations of the process
// heap with their call stacks, in a table of its own memory (no malloc).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shardalloc::platform {

// Starts sampling the process heap, one sample per `rate` bytes on average.
// Call before other threads start (the options constructor does, for
// SHARDALLOC_PROFILE); later calls do nothing. At exit, when `path` is not null, writes the profile
// of live samples there (%p becomes the pid) and the leak report to path.leaks.
void heap_profile_start(uint64_t rate, const char* path);
bool heap_profile_on();
// The fork gate's child handler: a table lock the fork copied held (its
// holder is gone) makes the table unusable in the child: samples and frees
// are not recorded there, dumps are empty, instead of waiting for ever.
void heap_profile_after_fork_in_child();
// The calling thread ends (thread_heaps.cpp, on_thread_exit), maybe inside a
// call, or inside shard_profile_write, which takes the lock outside one: if
// it was inside the profiler, the table lock may stay held for good, and the
// table is given up as in a fork child that lacks the lock's holder.
void heap_profile_thread_ended_in_call();

// Dumps while the program runs (docs/profiling.md, "Dumps while running"),
// to numbered files next to the exit profile (so only with a path): one
// each time the estimated live bytes pass the last such dump's by
// growth_bytes (0: none), written by the sampling thread (path.1, path.2,
// ...); and, when signal > 0, a handler for that signal that asks for a dump
// (path.signal.1, ...) written at the next sample. Call after heap_profile_start; false when the
// profiler is off or the handler could not be installed.
bool heap_profile_dumps(uint64_t growth_bytes, int signal);
// Set by the dump signal's handler, cleared by the thread that writes the
// dump: the next thread to record a sample (or the exit path). Not tested on
// the allocation paths: one load and branch on every fast-path miss moved
// bench/run --icount (pair 65.8 -> 65.9, batch_malloc 26.8 -> 26.9).
extern std::atomic<uint32_t> g_profile_dump_request;
// Writes the asked-for dump, if one is asked for and no dump is being
// written by this thread. Not in a signal handler.
void heap_profile_serve_request();
// The mean gap between samples, in bytes (sampling.cpp).
void set_sample_rate(uint64_t rate);

// Records a sampled allocation (sampling.cpp calls it); false when it was not
// recorded (a nested call, a signal handler's heap, or the table is full).
bool heap_profile_record(void* block, size_t size, size_t block_bytes);
// A block of a page holding samples was freed: true when it was one (now dropped).
bool heap_profile_forget(void* block);

// The collapsed-stack profile of the live samples ("frame;frame;... bytes"
// lines, outermost frame first, bytes estimated). 0, or -1 with errno.
int heap_profile_write(int fd);
// The leak report (the live samples grouped by stack, largest first).
int heap_profile_write_leaks(int fd);

// The sampling math, exposed for tests.
double sample_log(double x);      // natural logarithm, x > 0 (no libm)
double sample_exp_neg(double x);  // e^-x, x >= 0
// The estimated number of allocations one sample of `block_bytes` stands for.
double sample_weight(size_t block_bytes, uint64_t rate);
// A draw of the exponential gap with mean `rate` for the uniform u in (0, 1].
uint64_t sample_gap(uint64_t rate, double u);

}  // namespace shardalloc::platform
