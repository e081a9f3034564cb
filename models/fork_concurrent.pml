/* The fork gate with two forks whose prepare handlers run at the same time
 * (src/platform/linux/fork_gate.cpp; docs/protocols.md, "8. The fork gate").
 * glibc 2.36 drops its atfork lock around each handler call, so two forks'
 * prepare handlers can overlap; each takes the gate's prepare lock
 * (g_prepare_owner) for its wait, flip and wait, so that it flips the epoch
 * it read. Steps as in fork.pml. Written after a review whose model of this
 * case (fork.pml with two forkers and no lock) found a step cut that had
 * entered before a fork's flip.
 *
 * Property: every step that had entered before fork k flipped the epoch has
 * ended when fork k copies the process.
 *
 * Mutant:
 *   MUTANT_NO_PREPARE_LOCK   the prepare handlers do not take turns
 */
#ifndef NT
#define NT 2
#endif
#ifndef STEPS
#define STEPS 2
#endif

byte gate[2];
bit epoch = 0;
bool preparing = 0;     /* the prepare lock */
bool flipped[2];        /* ghost: fork k has flipped */
bool done[2];           /* ghost: fork k has copied */
byte inside_early[2];   /* ghost: steps inside that entered before fork k's flip */

proctype stepper() {
  byte n = 0;
  bit e;
  bool early0, early1;
  do
  :: n < STEPS ->
retry:
    e = epoch;                                            /* load, seq_cst */
    gate[e]++;                                            /* fetch_add(1), seq_cst */
    if
    :: atomic { epoch == e ->                             /* the second load sees e */
         early0 = !flipped[0]; early1 = !flipped[1];
         inside_early[0] = inside_early[0] + early0;
         inside_early[1] = inside_early[1] + early1 }
    :: atomic { epoch != e -> gate[e]-- }; goto retry     /* a fork flipped: count again */
    fi;
    atomic {                                              /* the step ends */
      if :: early0 && !done[0] -> inside_early[0]-- :: else -> skip fi;
      if :: early1 && !done[1] -> inside_early[1]-- :: else -> skip fi
    }
    gate[e]--;                                            /* uncount, release */
    n++
  :: n == STEPS -> break
  od
}

proctype forker(byte k) {
  bit old;
#ifndef MUTANT_NO_PREPARE_LOCK
  atomic { !preparing -> preparing = 1 }
#endif
  old = epoch;
  (gate[1 - old] == 0);                                   /* what an earlier fork left */
  atomic { epoch = 1 - old; flipped[k] = 1 }              /* the flip, seq_cst */
  (gate[old] == 0);                                       /* fetch_add(0) reads zero */
#ifndef MUTANT_NO_PREPARE_LOCK
  preparing = 0;
#endif
  atomic { assert(inside_early[k] == 0); done[k] = 1 }    /* fork() copies the process */
}

init {
  atomic {
    byte i = 0;
    do
    :: i < NT -> run stepper(); i++
    :: i == NT -> break
    od;
    run forker(0);
    run forker(1)
  }
}
