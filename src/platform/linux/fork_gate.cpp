// The fork gate (core/hooks.h: enter_step / leave_step; docs/protocols.md,
// "8. The fork gate"): a fork waits for the protocol steps other threads
// are in, so that the child inherits none half done.
//
// Two words count the threads inside a step, one per epoch. A step counts
// itself in the current epoch's word and goes on: it never waits, so a
// thread that holds a lock of its own (or of libc's) while it allocates can
// never hold up a fork that needs that lock. The fork's prepare handler
// moves new steps to the other epoch and waits, for at most
// kForkWaitLimit, until the old epoch's word reads zero: it waits for the
// steps under way, not for a moment when no thread is in any (a stream of
// steps from two threads starved it: every fork waited 200 ms). A step that
// begins after the flip may still be cut, and the child repairs what such
// a step would leave blocking (pins: core::repair_after_fork).
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "core/first_class.h"
#include "core/hooks.h"
#include "platform/linux/guarded.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/remote_batches.h"

namespace shardalloc::platform {
namespace {

// The epoch new steps count themselves in (0 or 1); a fork flips it.
constinit std::atomic<uint32_t> g_epoch{0};
// Threads inside a step, by the epoch they counted themselves in.
constinit std::atomic<uint64_t> g_steps[2] = {0, 0};
// Nesting of the calling thread's steps (only the outermost one counts).
constinit thread_local uint32_t tl_step_depth = 0;
// How many of the count's units may be this thread's: raised before its
// outermost step counts itself, lowered after it has taken the count back,
// so never below what the count holds of this thread (a signal handler can
// interrupt between the two writes of either end; several when handlers
// that interrupted those writes run steps of their own). A fork from a
// handler waits for the count to fall to this: never for its own thread's
// interrupted step, which would not end before the handler returns (a
// review's program forked from a 3 ms timer and waited 200 ms at every fork
// from then on), at the price of one step of another thread it may not wait
// for per nested level caught in such a gap (a second review, with gdb:
// two levels, two steps): such a step is cut as one begun after the read.
constinit thread_local uint32_t tl_steps_maybe_counted[2] = {0, 0};  // by epoch

// A fork waits at most this long for the steps in flight: a fork from a
// signal handler that interrupted a step of its own thread would otherwise
// wait for ever, as would the child of _Fork() (no handlers ran).
constexpr uint64_t kForkWaitLimitNs = 200'000'000;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// The process the count belongs to: a child of _Fork() (which runs no atfork
// handlers) inherits its parent's count, steps of threads it does not have.
constinit std::atomic<pid_t> g_steps_pid{0};

// core/hooks.h: fork_generation: the process's pid above, the generation
// below. The atfork child handler counts a fork; a child of _Fork() (no
// handlers) is told by its pid and counted at its first call.
constinit std::atomic<uint64_t> g_fork_generation{0};

uint64_t fork_word(pid_t pid, uint32_t generation) {
  return uint64_t(uint32_t(pid)) << 32 | generation;
}

// A new generation for this process, unless another thread counted it already.
void count_fork(pid_t self) {
  // relaxed: the CAS decides; the word orders nothing else.
  uint64_t w = g_fork_generation.load(std::memory_order_relaxed);
  while (pid_t(w >> 32) != self &&
         !g_fork_generation.compare_exchange_weak(w, fork_word(self, uint32_t(w) + 1),
                                                  std::memory_order_relaxed)) {
  }
}

// The process whose thread runs a prepare handler (0: none). glibc 2.36
// runs the prepare handlers of concurrent forks at the same time (it drops
// its atfork lock around each call: a review counted two at once); each
// must flip the epoch it read, so they take turns here. A pid, not a flag:
// a child of _Fork() (no handlers ran) may inherit it held by a thread of
// its parent, and takes it over.
constinit std::atomic<pid_t> g_prepare_owner{0};
// This thread runs a prepare handler: a signal handler that forks inside it
// (which glibc does not support either) does not wait for it.
constinit thread_local bool tl_preparing = false;

void lock_prepare(pid_t self) {
  for (;;) {
    // relaxed load: the CAS decides.
    pid_t owner = g_prepare_owner.load(std::memory_order_relaxed);
    // acquire: the previous prepare's flip and counts are seen.
    if (owner != self && g_prepare_owner.compare_exchange_weak(
                             owner, self, std::memory_order_acquire, std::memory_order_relaxed)) {
      return;
    }
    if (owner == self) sched_yield();  // another thread of this process prepares a fork
  }
}

// Both counts at zero: they were another process's (a _Fork child's first
// fork, and every fork's child).
void clear_counts() {
  // relaxed: under the prepare lock, or in the child, single-threaded.
  g_steps[0].store(0, std::memory_order_relaxed);
  g_steps[1].store(0, std::memory_order_relaxed);
}

// Takes a unit of epoch e's count back, never below zero (see after_fork_in_child).
void uncount(uint32_t e) {
  // relaxed load: the CAS decides.
  uint64_t n = g_steps[e].load(std::memory_order_relaxed);
  // release: the step's writes happen-before a fork's acquire read that sees it gone.
  while (n != 0 && !g_steps[e].compare_exchange_weak(n, n - 1, std::memory_order_release,
                                                     std::memory_order_relaxed)) {
  }
}

// Waits until epoch e's count falls to what the forking thread itself may
// hold there (a signal handler that forks inside a step of its thread), or
// the deadline passes.
void wait_for_epoch(uint32_t e, uint64_t deadline) {
  const uint64_t own = tl_steps_maybe_counted[e];
  // fetch_add(0), an RMW: reads the latest count in the word's order;
  // acquire pairs with uncount's release, so the writes of every step we
  // waited for are in the memory fork copies; seq_cst: after the flip (enter_step).
  while (g_steps[e].fetch_add(0, std::memory_order_seq_cst) > own && now_ns() < deadline)
    sched_yield();
}

void prepare_fork() {
  const pid_t self = getpid();
  const bool nested = tl_preparing;
  if (!nested) {
    lock_prepare(self);
    tl_preparing = true;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // set before the work it guards
  }
  // relaxed: under the prepare lock; a _Fork child's first fork finds another pid.
  if (g_steps_pid.exchange(self, std::memory_order_relaxed) != self) clear_counts();
  // relaxed: only prepare handlers write the epoch, one at a time (the lock).
  const uint32_t old = g_epoch.load(std::memory_order_relaxed);
  // First what an earlier fork that ran out of time left in the other
  // epoch: steps that read the epoch before that fork's flip count again in
  // this one, so nothing new arrives there. Each wait has a bound of its
  // own: a unit stuck there must not take the old epoch's wait away.
  wait_for_epoch(old ^ 1, now_ns() + kForkWaitLimitNs);
  // seq_cst, with the count and the second epoch read of enter_step
  // (Dekker's pattern): a step either counted before this flip, and the
  // wait below sees it, or reads the new epoch and counts again there.
  g_epoch.store(old ^ 1, std::memory_order_seq_cst);
  wait_for_epoch(old, now_ns() + kForkWaitLimitNs);
  if (!nested) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    tl_preparing = false;
    g_prepare_owner.store(0, std::memory_order_release);  // release: our flip to the next prepare
  }
}

void after_fork_in_child() {
  // Only this thread runs here; a step of its own that is still open (a
  // handler forked inside it) finds the count at zero and leaves it there
  // (leave_step never goes below zero). relaxed: single-threaded.
  clear_counts();
  g_steps_pid.store(getpid(), std::memory_order_relaxed);
  // A prepare of a thread the child lacks (ours ended before the fork).
  g_prepare_owner.store(0, std::memory_order_relaxed);
  count_fork(getpid());
  // Threads that gave a first-class heap back are gone with their pins (this
  // thread holds none: give_back blocks asynchronous signals).
  core::FirstClassHeap::drop_pins_after_fork();
  // A profiler table lock held by a thread the child lacks.
  heap_profile_after_fork_in_child();
  // A guarded pool reservation of such a thread.
  guarded_after_fork_in_child();
  // Remote-batch records of threads the child lacks.
  remote_batches_after_fork_in_child(reinterpret_cast<uintptr_t>(&tl_thread));
  // Walks of threads the child lacks would keep every give-back of a free
  // arena tail off for the child's life (a review: ENOMEM in a child forked
  // while another thread read statistics). relaxed: single-threaded.
  g_process_domain.slot_readers.store(0, std::memory_order_relaxed);
}

__attribute__((constructor)) void register_fork_handlers() {
  g_steps_pid.store(getpid(),
                    std::memory_order_relaxed);  // relaxed: before any thread but the first
  g_fork_generation.store(fork_word(getpid(), 0), std::memory_order_relaxed);  // relaxed: as above
  pthread_atfork(&prepare_fork, nullptr, &after_fork_in_child);
}

}  // namespace

// A signal handler that runs between the count and the depth update finds
// the depth at zero and counts itself: no step ever runs uncounted. The
// token is 1 + the epoch counted in (0: nested, counted nothing).
uint32_t enter_step() {
  if (tl_step_depth != 0) {
    ++tl_step_depth;
    return 0;
  }
  for (;;) {
    // seq_cst, this load, the count and the second load: against
    // prepare_fork's flip and read (Dekker's pattern).
    const uint32_t e = g_epoch.load(std::memory_order_seq_cst);
    ++tl_steps_maybe_counted[e];  // before the count: see tl_steps_maybe_counted
    std::atomic_signal_fence(std::memory_order_seq_cst);  // a handler sees the two in this order
    g_steps[e].fetch_add(1, std::memory_order_seq_cst);
    if (g_epoch.load(std::memory_order_seq_cst) == e) {
      ++tl_step_depth;
      return e + 1;
    }
    // A fork flipped the epoch meanwhile and may have read e's count
    // before this unit: count again in the new epoch.
    uncount(e);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    --tl_steps_maybe_counted[e];
  }
}

uint32_t fork_generation() {
  const pid_t self = getpid();
  count_fork(self);  // a _Fork() child's first call
  // relaxed: the word changes only in a new process (before its first call
  // returns), and a thread started later sees it through pthread_create.
  return uint32_t(g_fork_generation.load(std::memory_order_relaxed));
}

void drop_steps_of_ending_thread() {
  // What tl_steps_maybe_counted holds is what the thread counted, but for a
  // thread that ended between a count and its update (the gaps of
  // enter_step and leave_step; a review's program: 3 of 500 cancelled
  // threads), where it holds one unit too many: that unit of another
  // thread's step is taken back, and a fork may then not wait for that one
  // step, as for a fork from a handler caught in such a gap (above).
  // Leaving it counted instead would make every later fork wait its limit.
  for (uint32_t e = 0; e < 2; ++e) {
    for (; tl_steps_maybe_counted[e] != 0; --tl_steps_maybe_counted[e]) uncount(e);
  }
  tl_step_depth = 0;
}

void leave_step(uint32_t token) {
  --tl_step_depth;
  if (token == 0) return;  // nested: the outermost step takes the count back
  uncount(token - 1);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // a handler sees the two in this order
  --tl_steps_maybe_counted[token - 1];  // after the count: see tl_steps_maybe_counted
}

}  // namespace shardalloc::platform
