/* Concurrent add_memory on a region (src/core/range_claims.h,
 * shard_region_add_memory in src/api/region_api.cpp; docs/protocols.md,
 * "11. Concurrent add_memory").
 *
 * Memory is NCELL cells; each call is handed a range of cells. A call takes
 * a record (busy bit), publishes its range there (seqlock generation odd,
 * start/end, generation even, published bit), scans the other published
 * records (restarting when one changes under it), then checks the arenas;
 * with no overlap it builds its arena in its cells and publishes it, and in
 * any case gives the record back (published bit, then busy bit). Fewer
 * records than calls: a call may wait for one, and records are reused.
 *
 * Properties (assertions):
 *   - no cell is built on twice: of two calls with overlapping ranges at
 *     most one builds, at the same time or one after the other;
 *   - a call refuses only when a call with an overlapping range has
 *     published its range (ghost `started`): no spurious refusal of
 *     disjoint ranges.
 * Invalid end states catch a call that waits for ever.
 * Sequentially consistent: the memory orders of protocol 11 are argued in
 * docs/protocols.md, not modelled.
 *
 * Mutants:
 *   MUTANT_NO_SCAN          the call checks only the arenas (the code before protocol 11)
 *   MUTANT_ARENAS_FIRST     the arenas are checked before the records are scanned
 *   MUTANT_GIVE_BACK_EARLY  the record is given back before the arena is published
 */
#define NCALL 3
#define NREC 2
#define NCELL 3

/* Call i's range [lo, hi): 0 and 1 overlap in cell 1, 2 is the same range
 * as 0 (the same memory handed over twice). */
#define LO(i) ((i) == 1 -> 1 : 0)
#define HI(i) ((i) == 1 -> 3 : 2)
#define OVERLAP(a, b) (LO(a) < HI(b) && LO(b) < HI(a))

bit busy[NREC];
bit published[NREC];
byte gen[NREC];
byte rec_lo[NREC];
byte rec_hi[NREC];
bit arena_cell[NCELL];  /* published arenas cover these cells */
bit built[NCELL];       /* ghost: a call wrote its arena header here */
bit started[NCALL];     /* ghost: call i has published its range */

proctype add(byte me) {
  byte mine, j, g, lo, hi, c;
  bool conflict;

  /* take_record: the CAS on busy_ (waits while all are taken) */
  atomic {
    if
    :: !busy[0] -> mine = 0
    :: busy[0] && !busy[1] -> mine = 1
    fi;
    busy[mine] = 1
  }
  /* publish: seqlock writer, then the published bit */
  gen[mine] = gen[mine] + 1;
  rec_lo[mine] = LO(me);
  rec_hi[mine] = HI(me);
  gen[mine] = gen[mine] + 1;
  atomic { published[mine] = 1; started[me] = 1 }

  conflict = 0;
#ifdef MUTANT_ARENAS_FIRST
  atomic {
    c = LO(me);
    do
    :: c < HI(me) -> conflict = conflict || arena_cell[c]; c++
    :: c == HI(me) -> break
    od
  };
#endif
#ifndef MUTANT_NO_SCAN
  /* overlaps_another: one load of published_, then each record copied */
restart:
  j = 0;
  do
  :: j < NREC && (j == mine || !published[j]) -> j++
  :: j < NREC && j != mine && published[j] ->
    g = gen[j];
    if
    :: g % 2 == 1 -> goto restart
    :: else
    fi;
    lo = rec_lo[j];
    hi = rec_hi[j];
    if
    :: gen[j] != g -> goto restart
    :: else
    fi;
    if
    :: lo < HI(me) && LO(me) < hi -> conflict = 1; break
    :: else -> j++
    fi
  :: j == NREC -> break
  od;
#endif
#ifndef MUTANT_ARENAS_FIRST
  /* Domain::overlaps: the arena list from the head loaded once */
  atomic {
    c = LO(me);
    do
    :: c < HI(me) -> conflict = conflict || arena_cell[c]; c++
    :: c == HI(me) -> break
    od
  };
#endif
  if
  :: conflict ->
    /* a refusal names a real overlap: some other call with an overlapping range has started */
    assert((me != 0 && started[0] && OVERLAP(0, me)) || (me != 1 && started[1] && OVERLAP(1, me)) ||
           (me != 2 && started[2] && OVERLAP(2, me)))
  :: else ->
#ifdef MUTANT_GIVE_BACK_EARLY
    published[mine] = 0;
    busy[mine] = 0;
#endif
    /* build the arena in the range, one cell at a time */
    c = LO(me);
    do
    :: c < HI(me) -> assert(!built[c]); built[c] = 1; c++
    :: c == HI(me) -> break
    od;
    /* publish_arena: one release CAS */
    atomic {
      c = LO(me);
      do
      :: c < HI(me) -> arena_cell[c] = 1; c++
      :: c == HI(me) -> break
      od
    }
  fi;
#ifdef MUTANT_GIVE_BACK_EARLY
  if
  :: conflict -> published[mine] = 0; busy[mine] = 0
  :: else
  fi
#else
  /* give_back */
  published[mine] = 0;
  busy[mine] = 0
#endif
}

init {
  atomic {
    run add(0);
    run add(1);
    run add(2)
  }
}
