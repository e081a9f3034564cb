/* Protocol 7 of docs/protocols.md: the lifetime word of a domain that can be
 * destroyed (a first-class heap; src/core/domain_life.h) and the heap caches
 * of the threads that used it (src/platform/linux/thread_heaps.cpp).
 *
 *   Thread (NT of them)  used the heap in incarnation 1: its cache holds
 *            (generation 1, its heap). With REUSE it may then call the next
 *            heap made on the same record (incarnation 2), once the program
 *            has handed that heap out: its look-up finds the entry stale,
 *            drops it without touching it, and caches (2, a heap of
 *            incarnation 2). At any time it exits: give_back = try_pin(g),
 *            give the heap back (release_heap writes the domain's memory),
 *            unpin; a failed pin leaves the heap alone.
 *   init     the program: destroys incarnation 1 (begin_destroy, wait until
 *            no pin is held, unmap, end_destroy); with REUSE it then makes
 *            incarnation 2 on the same record (try_claim, map the memory,
 *            hand the heap out), later stops handing it out, waits until no
 *            call on it is in flight (destroy's precondition, the program's
 *            own synchronization) and destroys it too.
 *
 * Checked: a thread touches the domain's memory only while it is mapped and
 * belongs to the incarnation the thread's heap came from; memory is unmapped
 * only while nobody touches it; no pin is left behind; nobody waits for ever
 * (invalid end states).
 *
 * The word is modelled as its fields (gen, live, dying, pins): every step
 * on it is one atomic block, as the CAS / fetch_sub on the one word is.
 */

#ifndef NT
#define NT 2
#endif

/* DomainLife::word */
byte gen;
bit live;
bit dying;
byte pins;

/* the domain's memory (ghosts) */
bit mapped;
byte mem_gen;    /* the incarnation the mapped memory belongs to */
byte touching;   /* threads writing it now */
byte handed_out; /* the incarnation whose handle the program hands out (0: none) */
byte calls;      /* calls on the heap in flight */
byte exited;

/* DomainLife::try_pin */
inline try_pin(g, ok) {
  atomic {
#if defined(MUTANT_PIN_IGNORES_GENERATION)
    if
    :: live -> pins++; ok = 1
    :: else -> ok = 0
    fi
#elif defined(MUTANT_PIN_WHILE_DYING)
    if
    :: gen == g && (live || dying) -> pins++; ok = 1
    :: else -> ok = 0
    fi
#else
    if
    :: live && gen == g -> pins++; ok = 1
    :: else -> ok = 0
    fi
#endif
  }
}

/* give_back (thread exit or cache eviction): release_heap under a pin */
inline give_back(g) {
  try_pin(g, ok);
  if
  :: ok ->
     atomic { assert(mapped && mem_gen == g); touching++ }
     atomic { assert(mapped && mem_gen == g); touching-- }
     pins--  /* DomainLife::unpin, release */
  :: else -> skip
  fi
}

/* FirstClassHeap::destroy */
inline destroy() {
  atomic { assert(live); live = 0; dying = 1 }  /* begin_destroy: LIVE -> DYING */
#ifndef MUTANT_NO_WAIT
  pins == 0;                                    /* quiesce_domain: wait for the pins */
#endif
  atomic { assert(touching == 0); mapped = 0 }  /* release: the memory goes */
  dying = 0                                     /* end_destroy: FREE(gen) */
}

proctype Thread() {
  byte g = 1;
  bit ok;
#ifdef REUSE
  if
  :: atomic { handed_out == 2 -> calls++ }  /* a call on the next heap */
     atomic {
       /* current_heap: the entry (g = 1) is stale: dropped, not used */
       assert(!(live && gen == g));
       /* acquire_heap in incarnation 2: writes its memory */
       assert(mapped && mem_gen == 2);
       g = 2
     }
     calls--
  :: skip
  fi;
#endif
  give_back(g);
  exited++
}

init {
  byte i;
  atomic {
    gen = 1; live = 1; mapped = 1; mem_gen = 1;  /* incarnation 1, used by every thread */
    i = 0;
    do
    :: i < NT -> run Thread(); i++
    :: else -> break
    od
  }
  destroy();
#ifdef REUSE
  /* heap_new on the same record: DomainLife::try_claim (FREE(1) -> LIVE(2)), then the arenas */
  atomic { !live && !dying && pins == 0 -> gen++; live = 1 }
  atomic { mapped = 1; mem_gen = gen }
  handed_out = 2;
  /* later the program stops using it, and destroys it */
  handed_out = 0;
  calls == 0;
  destroy();
#endif
  exited == NT;
  assert(pins == 0 && touching == 0)
}
