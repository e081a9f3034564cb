/* The fork gate (src/platform/linux/fork_gate.cpp; docs/protocols.md,
 * "8. The fork gate"): fork() must copy no process in which a thread is
 * inside a protocol step.
 *
 * One word: steps in flight (gate_steps) and forks being prepared
 * (gate_forks); each side changes it with one atomic RMW and reads what the
 * other side did from the value that RMW returned (stepper) or from a later
 * load (forker).
 *
 * Property: while a fork copies the process (between its prepare handler's
 * wait and its parent handler), no thread is inside a step: a stepper
 * asserts it when it enters its step, the forker when it starts copying.
 * Invalid end states catch a gate that never opens or a fork that waits for
 * ever.
 *
 * Mutants:
 *   MUTANT_CHECK_THEN_ADD   the stepper reads the fork count, then adds itself
 *                           in a second step (not one RMW)
 *   MUTANT_FORK_NO_WAIT     the fork does not wait for steps in flight
 *   MUTANT_STEP_NO_CHECK    the stepper ignores forks being prepared
 */
#ifndef NT
#define NT 2
#endif
#ifndef STEPS
#define STEPS 2
#endif
#ifndef FORKS
#define FORKS 2
#endif

byte gate_steps = 0;
byte gate_forks = 0;
byte inside = 0;     /* ghost: threads inside a step */
bool copying = 0;    /* ghost: a fork is copying the process */

proctype stepper() {
  byte n = 0;
  byte seen_forks;
  do
  :: n < STEPS ->
enter:
#ifdef MUTANT_CHECK_THEN_ADD
    seen_forks = gate_forks;
    gate_steps++;
#else
    atomic { seen_forks = gate_forks; gate_steps++ }   /* fetch_add(1) */
#endif
#ifndef MUTANT_STEP_NO_CHECK
    if
    :: seen_forks != 0 ->
       gate_steps--;                                   /* back off */
       (gate_forks == 0);                              /* wait (sched_yield loop) */
       goto enter
    :: else -> skip
    fi;
#endif
    atomic { inside++; assert(!copying) }
    atomic { inside-- }
    gate_steps--;                                      /* leave_step: fetch_sub, release */
    n++
  :: n == STEPS -> break
  od
}

proctype forker() {
  byte n = 0;
  do
  :: n < FORKS ->
    gate_forks++;                                      /* prepare: fetch_add(kForkUnit) */
#ifndef MUTANT_FORK_NO_WAIT
    (gate_steps == 0);                                 /* wait for the steps in flight */
#endif
    atomic { copying = 1; assert(inside == 0) }        /* fork() copies the process */
    copying = 0;
    gate_forks--;                                      /* parent handler */
    n++
  :: n == FORKS -> break
  od
}

init {
  atomic {
    byte i = 0;
    do
    :: i < NT -> run stepper(); i++
    :: i == NT -> break
    od;
    run forker()
  }
}
