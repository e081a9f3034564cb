/* The fork gate (src/platform/linux/fork_gate.cpp; docs/protocols.md,
 * "8. The fork gate"): a fork waits for the protocol steps in flight.
 *
 * Two words count the threads inside a step, one per epoch. A step reads
 * the epoch, counts itself in that epoch's word (one RMW), reads the epoch
 * again and, if a fork flipped it meanwhile, takes the count back and
 * starts over; then it goes on: it never waits, so it can never hold up a
 * fork that needs a lock the stepping thread holds. The fork's prepare
 * handler waits for the other epoch's word to read zero (units a fork that
 * ran out of time left), flips the epoch, and waits for the old epoch's
 * word to read zero; the copy follows some time later. Interleavings are
 * sequentially consistent, as the seq_cst operations of the code are.
 *
 * Property: every step that had entered (passed its second read) before the
 * fork flipped the epoch has ended when the fork copies the process. (A step
 * that enters after the flip may be cut: the child repairs what such a step
 * would leave blocking, and the docs list what it may leak; that is outside
 * this model.) Invalid end states catch a fork that waits for ever.
 *
 * Mutants:
 *   MUTANT_FORK_NO_WAIT       the fork copies without waiting for the count
 *   MUTANT_COUNT_AFTER_ENTRY  the stepper starts its step before it counts itself
 *   MUTANT_UNCOUNT_EARLY      the stepper takes its count back before the step ends
 *   MUTANT_NO_RECHECK         the stepper does not read the epoch again after counting
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

byte gate[2];            /* the two counts */
bit epoch = 0;
bool flipped = 0;        /* ghost: the fork has flipped the epoch and not yet copied */
bool copying = 0;        /* ghost: the fork is copying the process */
byte forks_done = 0;     /* ghost */
byte inside = 0;         /* ghost: steps inside their body */
byte inside_late = 0;    /* ghost: of those, entered after the current fork's flip */

proctype stepper() {
  byte n = 0;
  bit e;
  bool late;
  byte myfork;
  do
  :: n < STEPS ->
#ifdef MUTANT_COUNT_AFTER_ENTRY
    atomic { e = epoch; late = flipped; myfork = forks_done; inside++; inside_late = inside_late + late }
    gate[e]++;
#else
retry:
    e = epoch;                                            /* load, seq_cst */
    gate[e]++;                                            /* fetch_add(1), seq_cst */
#ifdef MUTANT_NO_RECHECK
    atomic { late = flipped; myfork = forks_done; inside++; inside_late = inside_late + late }
#else
    if
    :: atomic { epoch == e ->                             /* the second load sees e */
         late = flipped; myfork = forks_done; inside++; inside_late = inside_late + late }
    :: atomic { epoch != e -> gate[e]-- }; goto retry     /* a fork flipped: count again */
    fi;
#endif
#endif
#ifdef MUTANT_UNCOUNT_EARLY
    gate[e]--;
#endif
    atomic {                                              /* the step ends */
      inside--;
      if
      :: late && myfork == forks_done -> inside_late--
      :: else -> skip
      fi
    }
#ifndef MUTANT_UNCOUNT_EARLY
    gate[e]--;                                            /* uncount, release */
#endif
    n++
  :: n == STEPS -> break
  od
}

proctype forker() {
  byte n = 0;
  bit old;
  do
  :: n < FORKS ->
    old = epoch;
#ifndef MUTANT_FORK_NO_WAIT
    (gate[1 - old] == 0);                                 /* what an earlier fork left */
#endif
    atomic { epoch = 1 - old; flipped = 1 }               /* the flip, seq_cst */
#ifndef MUTANT_FORK_NO_WAIT
    (gate[old] == 0);                                     /* fetch_add(0) reads zero */
#endif
    atomic { copying = 1; assert(inside - inside_late == 0) }   /* fork() copies the process */
    atomic { copying = 0; flipped = 0; forks_done++; inside_late = 0 };
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
