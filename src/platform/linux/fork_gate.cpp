// The fork gate (core/hooks.h: enter_step / leave_step; docs/protocols.md,
// "fork"): fork() copies no process in which a thread is half-way through a
// protocol step.
//
// One word counts the steps in flight (low 32 bits) and the forks being
// prepared (high 32 bits). A step adds itself and proceeds only when no
// fork is being prepared; a fork announces itself (pthread_atfork prepare),
// then waits until no step is in flight. Both sides do one RMW on the same
// word, so of a step and a fork one sees the other: the step backs off, or
// the fork waits for it.
//
// Signal handlers: a thread blocks every signal for the duration of its
// outermost step, so no handler (and no fork from a handler) runs inside a
// step of its own thread; steps nest only by plain recursion. A thread's
// first step blocks signals before it counts itself, so a handler that runs
// before that finds the thread outside any step.
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <atomic>
#include <cstdint>

#include "core/hooks.h"

namespace shardalloc::platform {
namespace {

constexpr uint64_t kForkUnit = uint64_t{1} << 32;
constexpr uint64_t kStepMask = kForkUnit - 1;

// Steps in flight (low half) and forks being prepared (high half).
constinit std::atomic<uint64_t> g_gate{0};

struct StepState {
  uint32_t depth = 0;     // nesting of the thread's steps
  bool forking = false;   // the thread is running fork's prepare handlers
  sigset_t saved_mask{};  // the signal mask before the outermost step
};
constinit thread_local StepState tl_step{};

void enter_gate() {
  for (;;) {
    // acquire: pairs with the release of a fork's parent handler (nothing to
    // see from it but the cleared count); the RMW puts us in one order with
    // every fork's announcement.
    const uint64_t seen = g_gate.fetch_add(1, std::memory_order_acquire);
    // The forking thread's own prepare handlers may allocate: let them through.
    if ((seen & ~kStepMask) == 0 || tl_step.forking) return;
    // relaxed: we take nothing back but our own count.
    g_gate.fetch_sub(1, std::memory_order_relaxed);
    // relaxed: a hint to retry; the RMW above decides.
    while ((g_gate.load(std::memory_order_relaxed) & ~kStepMask) != 0) sched_yield();
  }
}

void prepare_fork() {
  tl_step.forking = true;
  // acq_rel: an RMW in the word's order with every step's entry.
  g_gate.fetch_add(kForkUnit, std::memory_order_acq_rel);
  // acquire: pairs with leave_step's release, so every write of the steps we
  // waited for is in the memory fork copies.
  while ((g_gate.load(std::memory_order_acquire) & kStepMask) != 0) sched_yield();
}

void after_fork_in_parent() {
  // release: nothing to publish but the gate open again.
  g_gate.fetch_sub(kForkUnit, std::memory_order_release);
  tl_step.forking = false;
}

void after_fork_in_child() {
  // Only this thread runs in the child, and it is in no step (fork is never
  // called inside one): no step in flight, no fork being prepared.
  // relaxed: single-threaded here.
  g_gate.store(0, std::memory_order_relaxed);
  tl_step.forking = false;
}

__attribute__((constructor)) void register_fork_handlers() {
  pthread_atfork(&prepare_fork, &after_fork_in_parent, &after_fork_in_child);
}

}  // namespace

void enter_step() {
  StepState& t = tl_step;
  if (t.depth > 0) {
    ++t.depth;  // signals are blocked already
    return;
  }
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &t.saved_mask);
  enter_gate();
  t.depth = 1;
}

void leave_step() {
  StepState& t = tl_step;
  if (--t.depth > 0) return;
  // release: the step's writes happen-before a fork's acquire wait that sees it gone.
  g_gate.fetch_sub(1, std::memory_order_release);
  pthread_sigmask(SIG_SETMASK, &t.saved_mask, nullptr);
}

}  // namespace shardalloc::platform
