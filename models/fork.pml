/* The fork gate (src/platform/linux/fork_gate.cpp; docs/protocols.md,
 * "8. The fork gate"): a fork waits for the protocol steps in flight.
 *
 * One word counts the threads inside a step. A step adds itself (one RMW)
 * and goes on: it never waits, so it can never hold up a fork that needs a
 * lock the stepping thread holds. The fork's prepare handler reads the count
 * with an RMW and waits until it is zero; the copy follows some time later.
 *
 * Property: every step that was under way when the fork read the count has
 * ended when the fork copies the process. (A step that begins after that
 * read may be cut: the child repairs what such a step would leave blocking,
 * and the docs list what it may leak; that is outside this model.)
 * Invalid end states catch a fork that waits for ever.
 *
 * Mutants:
 *   MUTANT_FORK_NO_WAIT       the fork copies without waiting for the count
 *   MUTANT_COUNT_AFTER_ENTRY  the stepper starts its step before it counts itself
 *   MUTANT_UNCOUNT_EARLY      the stepper takes its count back before the step ends
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
bool checked = 0;      /* ghost: the fork has read the count (zero) and not yet copied */
byte inside_early = 0; /* ghost: threads inside a step that began before that read */
bool copying = 0;      /* ghost: the fork is copying the process */

proctype stepper() {
  byte n = 0;
  bool early;
  do
  :: n < STEPS ->
#ifdef MUTANT_COUNT_AFTER_ENTRY
    atomic { early = !checked; inside_early = inside_early + early; assert(!(copying && early)) }
    gate_steps++;
#else
    atomic { gate_steps++; early = !checked }            /* fetch_add(1) */
    atomic { inside_early = inside_early + early; assert(!(copying && early)) }
#endif
#ifdef MUTANT_UNCOUNT_EARLY
    gate_steps--;
    atomic { inside_early = inside_early - early }
#else
    atomic { inside_early = inside_early - early }       /* the step ends */
    gate_steps--;                                         /* fetch_sub(1), release */
#endif
    n++
  :: n == STEPS -> break
  od
}

proctype forker() {
  byte n = 0;
  do
  :: n < FORKS ->
#ifdef MUTANT_FORK_NO_WAIT
    checked = 1;
#else
    atomic { gate_steps == 0 -> checked = 1 }             /* fetch_add(0) reads zero */
#endif
    atomic { copying = 1; assert(inside_early == 0) }     /* fork() copies the process */
    atomic { copying = 0; checked = 0 };
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
