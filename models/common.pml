/* The page / heap state of shardalloc's lock-free protocols 1-3
 * (docs/protocols.md), shared by notify.pml and abandon.pml.
 * Every inline below follows one function of src/core/ (named in its
 * comment) step by step; see docs/reliability.md for what is abstracted.
 *
 * Conventions
 *   - One heap H (its class queue, full queue, notified stack and `owned`
 *     word), NP pages of one size class, NB blocks per page.
 *   - A block is a number 1..NBLK; page of block b = (b-1)/NB. Blocks are
 *     bare next pointers: next[b] (0 = null) links every list.
 *   - A page number in a list (notified stack, next_notified) is page+1, 0 = null.
 *   - The thread_free word of page p is (tf_head[p], tf_state[p], tf_rem[p]):
 *     every load, store and CAS of it is one atomic step on all three. (The
 *     code stores a SEALED page's head as an offset; the model keeps the
 *     block number: the encoding carries no protocol state.)
 *   - An `atomic { }` holds at most one access to memory another thread
 *     may touch at that time; the rest of it is thread-private (the
 *     owner's lists, a block the thread holds, ghost variables).
 *   - Ghost variables (holder, inflight, on_stack, owners, owner_pid) exist
 *     only to state properties; the code has no such fields.
 */

#ifndef NP
#define NP 2
#endif
#ifndef NB
#define NB 2
#endif
#define NBLK (NP * NB)
#define PAGE(b) (((b) - 1) / NB)
#define NOBODY 255

#define NORMAL 0
#define FULL 1
#define NOTIFIED 2
#define SEALED 3

/* ---- shared memory ------------------------------------------------------------ */
byte tf_head[NP];        /* Page::thread_free, list head (a block or 0) */
byte tf_state[NP];       /* Page::thread_free, NotifyState */
byte tf_rem[NP];         /* Page::thread_free, a SEALED page's remaining count (0 otherwise) */
byte next[NBLK + 1];     /* Block::next */
byte next_notified[NP];  /* Page::next_notified */
byte notified;           /* Heap::notified (MPSC stack of pages) */
bit owned;               /* Heap::owned */
bit in_use[NP];          /* Page::in_use: written by the owner, read by remote frees */

/* ---- owner-private (Page / Heap fields only the heap's owner touches) ---------- */
byte free_head[NP];      /* Page::free */
byte local_head[NP];     /* Page::local_free */
byte used[NP];           /* Page::used */
bit in_full[NP];         /* Page::in_full (the page is in H.full) */
bit in_queue[NP];        /* the page is in H's class queue */

/* ---- ghosts -------------------------------------------------------------------- */
byte holder[NBLK + 1];   /* 0: in the allocator; else _pid + 1 of the thread holding the block */
byte inflight[NP];       /* remote frees that may still touch the page */
bit on_stack[NP];        /* the page is on H.notified */
byte owners;             /* threads that own H */
byte owner_pid = NOBODY;

/* Ownership: every owner-only step asserts it runs on the owner. */
#define OWNER_ONLY assert(owner_pid == _pid)

/* ---- Page::collect (page.cpp) ------------------------------------------------------
 * Takes the whole thread_free list (CAS keeps the state bits), splices it and
 * local_free into free, subtracts the blocks taken from used. */
inline collect(p) {
  OWNER_ONLY;
  atomic { rh = tf_head[p]; rs = tf_state[p]; rr = tf_rem[p] }  /* relaxed pre-check */
  if
  :: rh != 0 ->
     ok = 0;
     do
     :: ok -> break
     :: else ->
        atomic {  /* compare_exchange_weak(raw -> without_list(raw)), acquire: state and remaining kept */
          if
          :: tf_head[p] == rh && tf_state[p] == rs && tf_rem[p] == rr -> tf_head[p] = 0; ok = 1
          :: else -> rh = tf_head[p]; rs = tf_state[p]; rr = tf_rem[p]
          fi
        }
     od;
     skip;  /* (spin: a loop's exit may not jump straight into a d_step) */
     d_step {  /* walk the taken list (now private), count it, splice it into free */
       cnt = 1; last = rh;
       assert(holder[rh] == 0 && PAGE(rh) == p);
       do
       :: next[last] != 0 ->
          last = next[last]; cnt++;
          assert(cnt <= NB);  /* a cycle or a foreign block in the list */
          assert(holder[last] == 0 && PAGE(last) == p)
       :: else -> break
       od;
       next[last] = free_head[p];
       free_head[p] = rh;
       assert(used[p] >= cnt);
       used[p] = used[p] - cnt;
       cnt = 0; last = 0
     }
  :: else -> skip
  fi;
  skip;
  d_step {  /* local_free goes in front of free */
    if
    :: local_head[p] != 0 ->
       last = local_head[p];
       do
       :: next[last] != 0 -> last = next[last]
       :: else -> break
       od;
       next[last] = free_head[p];
       free_head[p] = local_head[p];
       local_head[p] = 0
    :: else -> skip
    fi;
    last = 0; rh = 0; rs = 0; rr = 0; ok = 0; cnt = 0
  }
}

/* ---- Heap::move_to_full (heap_queues.cpp) --------------------------------------------
 * ok = 1: the page went to the full queue; ok = 0: remote frees arrived, collect instead. */
inline move_to_full(p) {
  OWNER_ONLY;
  atomic { rh = tf_head[p]; rs = tf_state[p] }  /* relaxed load */
  if
  :: rs == NORMAL ->
     if
     :: rh != 0 -> ok = 0
     :: else ->
#ifdef MUTANT_FULL_WITH_BLOCKS
        atomic { tf_state[p] = FULL; ok = 1 }  /* no CAS: blocks pushed meanwhile are parked unseen */
#else
        atomic {  /* compare_exchange_strong(null|NORMAL -> null|FULL), release */
          if
          :: tf_head[p] == rh && tf_state[p] == rs -> tf_state[p] = FULL; ok = 1
          :: else -> ok = 0
          fi
        }
#endif
     fi
  :: else -> ok = 1  /* kNotified (or kFull): just move it */
  fi;
  skip;
  d_step {
    if
    :: ok -> in_queue[p] = 0; in_full[p] = 1
    :: else -> skip
    fi;
    rh = 0; rs = 0
  }
}

/* ---- Heap::move_out_of_full (heap_queues.cpp) ---------------------------------------- */
inline move_out_of_full(p) {
  OWNER_ONLY;
  atomic { rh = tf_head[p]; rs = tf_state[p] }
  do
  :: rs != FULL -> break
  :: else ->
     atomic {  /* compare_exchange_weak(FULL -> NORMAL, head kept) */
       if
       :: tf_head[p] == rh && tf_state[p] == rs -> tf_state[p] = NORMAL; rs = NORMAL
       :: else -> rh = tf_head[p]; rs = tf_state[p]
       fi
     }
  od;
  skip;
  d_step { in_full[p] = 0; in_queue[p] = 1; rh = 0; rs = 0 }
}

/* ---- Heap::free_page (heap_free.cpp) --------------------------------------------------
 * A page that is NOTIFIED is not freed: its notifier may still write next_notified. */
inline free_page(p) {
  OWNER_ONLY;
  atomic { rs = tf_state[p] }  /* relaxed load */
  if
#ifndef MUTANT_FREE_NOTIFIED_PAGE
  :: rs == NOTIFIED -> skip
#endif
  :: else ->
     atomic {
       /* The page goes back to its segment; its memory may be reused at once. */
       assert(inflight[p] == 0);  /* no remote free is still touching it */
       assert(!on_stack[p]);      /* not linked in H.notified */
       assert(tf_head[p] == 0);   /* no block is waiting in thread_free */
       assert(used[p] == 0);
       in_queue[p] = 0; in_full[p] = 0;
       in_use[p] = 0;
       free_head[p] = 0; local_head[p] = 0;
       tf_state[p] = NORMAL; tf_rem[p] = 0;  /* (model only: nobody reads it before the page's next init) */
       i = 1;
       do  /* (model only: forget the links of the page's blocks) */
       :: i <= NB -> next[p * NB + i] = 0; i++
       :: else -> break
       od;
       i = 0
     }
  fi;
  rs = 0
}

/* ---- Heap::drain_notified (heap_free.cpp) ----------------------------------------------- */
inline drain_notified() {
  OWNER_ONLY;
  if
  :: notified == 0 -> skip  /* relaxed emptiness test */
  :: else ->
     atomic { list = notified; notified = 0 }  /* exchange(nullptr), acquire */
     do
     :: list == 0 -> break
     :: else ->
        pg = list - 1;
        d_step { list = next_notified[pg]; next_notified[pg] = 0 }  /* (model only: forget the stale link) */
        atomic {
          /* CAS loop state -> NORMAL, head kept: net effect of the loop */
          assert(tf_state[pg] == NOTIFIED && on_stack[pg]);
          tf_state[pg] = NORMAL;
          on_stack[pg] = 0
        }
        if
        :: in_full[pg] -> move_out_of_full(pg)
        :: else -> skip
        fi
     od;
     pg = 0
  fi
}

/* ---- Page::init + Heap::fresh_page (heap_alloc.cpp): a free page gets all its blocks ---- */
inline fresh_page() {
  OWNER_ONLY;
  pg = 0;
  do
  :: pg < NP && in_use[pg] -> pg++
  :: pg < NP && !in_use[pg] ->
     d_step {
       assert(inflight[pg] == 0 && !on_stack[pg]);
       tf_head[pg] = 0; tf_state[pg] = NORMAL; tf_rem[pg] = 0;  /* thread_free.store(0, relaxed) */
       next_notified[pg] = 0;
       i = 1;
       free_head[pg] = 0;
       do  /* all NB blocks on the free list (extend, in one go) */
       :: i <= NB -> next[pg * NB + i] = free_head[pg]; free_head[pg] = pg * NB + i; i++
       :: else -> break
       od;
       i = 0;
       local_head[pg] = 0; used[pg] = 0;
       in_full[pg] = 0; in_queue[pg] = 1;
       in_use[pg] = 1
     }
     break
  :: pg >= NP -> break
  od
}

/* Pops a block of page p; got = the block. */
inline pop_free(p) {
  d_step {
    got = free_head[p];
    free_head[p] = next[got];
    next[got] = 0;  /* (model only: the link of a block in use is user data; forgetting it merges states) */
    used[p]++;
    assert(holder[got] == 0);  /* never hand out a block twice */
    holder[got] = _pid + 1
  }
}

/* ---- Heap::free_local + page_freed_slow (heap.h, heap_free.cpp) ------------------------
 * The owner frees block b it holds. */
inline free_local(b) {
  OWNER_ONLY;
  fp = PAGE(b);
  d_step {
    assert(holder[b] == _pid + 1);
    /* the double-free checks must not fire for a correct free (free_local
     * compares with the local_free and free heads, the thread_free head, and
     * tests used == 0; one relaxed load of the shared word) */
    assert(!(b == local_head[fp] || b == free_head[fp] || used[fp] == 0 || b == tf_head[fp]));
    next[b] = local_head[fp];
    local_head[fp] = b;
    used[fp]--;
    holder[b] = 0
  }
  if
  :: used[fp] == 0 || in_full[fp] ->
     /* page_freed_slow */
     if
     :: in_full[fp] -> move_out_of_full(fp)
     :: else -> skip
     fi;
     if
     :: used[fp] != 0 -> skip
     :: else ->
        /* the only page of its class queue stays (no page churn for one block) */
        i = 0; cnt = 0;
        do
        :: i < NP -> if :: in_queue[i] -> cnt++ :: else fi; i++
        :: else -> break
        od;
        if
        :: in_queue[fp] && cnt == 1 -> skip
        :: else -> free_page(fp)
        fi;
        i = 0; cnt = 0
     fi
  :: else -> skip
  fi;
  fp = 0
}

/* ---- free_remote + push_notified (heap_free.cpp) ------------------------------------------
 * A thread that does not own H frees block b it holds. The code's fast path
 * (a plain push into a NORMAL or NOTIFIED page) and slow paths (a FULL page,
 * a SEALED one) are one CAS loop here: each iteration computes the next word
 * from the one it read, as `AnyPush::next` does:
 *   FULL -> NOTIFIED (notify); SEALED with remaining 1 -> NOTIFIED (notify);
 *   SEALED with remaining r > 1 -> SEALED, r - 1; NORMAL, NOTIFIED: unchanged.
 * A notifier pushes the page on H.notified, then (protocol 3) reads owned and,
 * when nobody owns H, claims it and gives the notified pages back itself. */
inline free_remote(b) {
  rp = PAGE(b);
  atomic {
    assert(holder[b] == _pid + 1);
    assert(in_use[rp]);  /* free_remote: "not allocated" must not fire for a live block */
    inflight[rp]++
  }
  atomic { rh = tf_head[rp]; rs = tf_state[rp]; rr = tf_rem[rp] }  /* relaxed load */
  ok = 0;
  do
  :: ok -> break
  :: else ->
     assert(rh != b);  /* the double-free check must not fire */
     next[b] = rh;     /* b->next = seen head (b is still ours) */
     atomic {          /* compare_exchange_weak(raw -> AnyPush::next(raw)), acq_rel */
       if
       :: tf_head[rp] == rh && tf_state[rp] == rs && tf_rem[rp] == rr ->
          tf_head[rp] = b;
#ifdef MUTANT_NO_NOTIFY
          rs = NORMAL;  /* never takes the duty to notify: the owner is not told */
#endif
          if
          :: rs == FULL -> tf_state[rp] = NOTIFIED; nt = 1
          :: rs == SEALED && rr == 1 -> tf_state[rp] = NOTIFIED; tf_rem[rp] = 0; nt = 1
          :: rs == SEALED && rr != 1 -> assert(rr > 1); tf_rem[rp] = rr - 1; nt = 0
          :: rs != FULL && rs != SEALED -> tf_state[rp] = rs; nt = 0
          fi;
          holder[b] = 0;
          ok = 1;
          if
          :: !nt -> inflight[rp]--  /* done with the page */
          :: else -> skip
          fi
       :: else -> rh = tf_head[rp]; rs = tf_state[rp]; rr = tf_rem[rp]
       fi
     }
  od;
  if
  :: nt ->
     /* we moved the page to NOTIFIED: push it on the heap's notified stack */
     atomic { hd = notified }  /* relaxed load */
     ok = 0;
     do
     :: ok -> break
     :: else ->
        next_notified[rp] = hd;
        atomic {  /* compare_exchange_weak(head -> page), seq_cst */
          if
          :: notified == hd ->
             assert(!on_stack[rp]);  /* a page is on the stack at most once */
             notified = rp + 1;
             on_stack[rp] = 1;
             ok = 1;
             inflight[rp]--
          :: else -> hd = notified
          fi
        }
     od;
     hd = 0; nt = 0; ok = 0;
#ifndef MUTANT_NOTIFY_NO_OWNER_CHECK
     if
     :: owned == 0 -> reclaim_abandoned()  /* owned.load(seq_cst) */
     :: else -> skip
     fi
#else
     skip
#endif
  :: else -> skip
  fi;
  rh = 0; rs = 0; rr = 0; rp = 0; ok = 0
}

/* ---- Domain::acquire_heap's try_own, release_heap (domain_heaps.cpp) ---------------------- */
inline try_own() {
  if
  :: owned == 0 ->  /* relaxed pre-check */
#ifdef MUTANT_NONATOMIC_OWN
     owned = 1;  /* load then store: two threads can both pass the check */
     ok = 1;
#else
     atomic {      /* compare_exchange_strong(0 -> 1), acquire */
       if
       :: owned == 0 -> owned = 1; ok = 1
       :: else -> ok = 0
       fi
     }
#endif
  :: else -> ok = 0
  fi;
  if
  :: ok -> atomic { owners++; assert(owners == 1); owner_pid = _pid }
  :: else -> skip
  fi
}

/* Heap::collect_all (heap_lifecycle.cpp): drain, then every page of the class
 * queue and of the full queue: collect, move out of full if it has room,
 * free it when empty. */
inline collect_all() {
  OWNER_ONLY;
  drain_notified();
  pq = 0;
  do  /* the class queue */
  :: pq < NP && in_use[pq] && in_queue[pq] ->
     collect(pq);
     if :: in_full[pq] && free_head[pq] != 0 -> move_out_of_full(pq) :: else fi;
     if :: used[pq] == 0 -> free_page(pq) :: else fi;
     pq++
  :: pq < NP && !(in_use[pq] && in_queue[pq]) -> pq++
  :: pq >= NP -> break
  od;
  pq = 0;
  do  /* the full queue */
  :: pq < NP && in_use[pq] && in_full[pq] ->
     collect(pq);
     if :: in_full[pq] && free_head[pq] != 0 -> move_out_of_full(pq) :: else fi;
     if :: used[pq] == 0 -> free_page(pq) :: else fi;
     pq++
  :: pq < NP && !(in_use[pq] && in_full[pq]) -> pq++
  :: pq >= NP -> break
  od;
  pq = 0
}

/* ---- protocol 3, sealed pages (heap_lifecycle.cpp, domain_heaps.cpp) ---------------------- */

/* Heap::seal: collects page p; sd = 0: no live block left (the caller frees
 * it); sd = 1: sealed (SEALED, remaining = its live blocks), or left
 * NOTIFIED for the drain / reclaim that will take it. */
inline seal(p) {
  OWNER_ONLY;
  sd = 2;  /* undecided */
  do
  :: sd != 2 -> break
  :: else ->
     collect(p);
     if
     :: used[p] == 0 -> sd = 0
     :: else ->
        atomic { rh = tf_head[p]; rs = tf_state[p]; rr = tf_rem[p] }  /* relaxed load */
        if
        :: rs == NOTIFIED -> sd = 1
        :: rs != NOTIFIED && rh != 0 -> skip  /* frees arrived: collect them too */
        :: rs != NOTIFIED && rh == 0 ->
           atomic {  /* compare_exchange_weak(raw -> sealed(0, used)), release */
             if
             :: tf_head[p] == rh && tf_state[p] == rs && tf_rem[p] == rr ->
                tf_state[p] = SEALED;
#ifdef MUTANT_SEAL_COUNT_HIGH
                tf_rem[p] = used[p] + 1;  /* counts one block too many: the page never completes */
#else
                tf_rem[p] = used[p];
#endif
                sd = 1
             :: else -> skip  /* a free got in first: collect it */
             fi
           }
        fi
     fi
  od;
  rh = 0; rs = 0; rr = 0
}

/* Heap::seal_or_free */
inline seal_or_free(p) {
  seal(p);
  if
  :: sd == 0 -> free_page(p)
  :: sd == 1 && in_full[p] && free_head[p] != 0 -> move_out_of_full(p)
  :: else -> skip
  fi;
  sd = 0
}

/* Heap::abandon_pages: drain, then every page of the class queue and of the
 * full queue: seal it, or free it when it has no live block. */
inline abandon_pages() {
  OWNER_ONLY;
  drain_notified();
  pq = 0;
  do  /* the class queue */
  :: pq < NP && in_use[pq] && in_queue[pq] -> seal_or_free(pq); pq++
  :: pq < NP && !(in_use[pq] && in_queue[pq]) -> pq++
  :: pq >= NP -> break
  od;
  pq = 0;
  do  /* the full queue */
  :: pq < NP && in_use[pq] && in_full[pq] -> seal_or_free(pq); pq++
  :: pq < NP && !(in_use[pq] && in_full[pq]) -> pq++
  :: pq >= NP -> break
  od;
  pq = 0
}

/* Heap::reclaim_notified: a claimer takes the notified pages and seals or frees each. */
inline reclaim_notified() {
  OWNER_ONLY;
  if
  :: notified == 0 -> skip  /* relaxed emptiness test */
  :: else ->
     atomic { list = notified; notified = 0 }  /* exchange(nullptr), acquire */
     do
     :: list == 0 -> break
     :: else ->
        pg = list - 1;
        d_step { list = next_notified[pg]; next_notified[pg] = 0 }  /* (model only: forget the stale link) */
        atomic {  /* CAS loop state -> NORMAL, head kept: net effect of the loop */
          assert(tf_state[pg] == NOTIFIED && on_stack[pg]);
          tf_state[pg] = NORMAL;
          on_stack[pg] = 0
        }
        seal(pg);
        if
        :: sd == 1 && in_full[pg] && free_head[pg] != 0 -> move_out_of_full(pg)
        :: sd == 1 && !(in_full[pg] && free_head[pg] != 0) -> skip
        :: sd == 0 ->
           /* no live block left: the page goes back with its segment (here:
            * all pages), when no page of it holds a live block; else it stays whole */
           fq = 0;
           do
           :: fq < NP && !(in_use[fq] && used[fq] != 0) -> fq++
           :: fq < NP && in_use[fq] && used[fq] != 0 -> break
           :: fq >= NP -> break
           od;
           if
           :: fq >= NP ->
              fq = 0;
              do
              :: fq < NP && in_use[fq] -> free_page(fq); fq++
              :: fq < NP && !in_use[fq] -> fq++
              :: fq >= NP -> break
              od
           :: fq < NP && in_full[pg] -> move_out_of_full(pg)
           :: fq < NP && !in_full[pg] -> skip
           fi;
           fq = 0
        fi;
        sd = 0
     od;
     pg = 0
  fi
}

/* Domain::give_up: owned = 0 (seq_cst), then, while pages wait on the
 * notified stack (seq_cst load), claim the heap again and give them back. */
inline give_up() {
  gu = 1;
  do
  :: gu ->
     atomic { OWNER_ONLY; owners--; owner_pid = NOBODY; owned = 0 }
     if
#ifndef MUTANT_GIVE_UP_NO_RECHECK
     :: notified != 0 ->
        try_own();
        if
        :: ok -> ok = 0; reclaim_notified()
        :: else -> gu = 0  /* another thread owns it: it drains the stack */
        fi
#endif
     :: else -> gu = 0
     fi
  :: !gu -> break
  od
}

/* Domain::reclaim_abandoned: a notifier found the heap unowned. */
inline reclaim_abandoned() {
  try_own();
  if
  :: ok -> ok = 0; reclaim_notified(); give_up()
  :: else -> skip  /* its owner (or a releaser's last look) drains the stack */
  fi
}

/* Domain::release_heap: abandon_pages, then give_up. */
inline release_heap() {
  abandon_pages();
  give_up()
}

/* Heap::unseal_all: an adopter turns every sealed page back into a plain
 * one before it allocates: kFull when it sits in the full queue with nothing
 * waiting, else kNormal (and out of the full queue). */
inline unseal_all() {
  OWNER_ONLY;
  pq = 0;
  do
  :: pq < NP && in_use[pq] ->
     atomic { rh = tf_head[pq]; rs = tf_state[pq]; rr = tf_rem[pq] }  /* relaxed load */
     do
     :: rs != SEALED -> break
     :: else ->
        atomic {  /* compare_exchange_weak(raw -> head | FULL or NORMAL), release */
          if
          :: tf_head[pq] == rh && tf_state[pq] == rs && tf_rem[pq] == rr ->
             tf_state[pq] = ((in_full[pq] && rh == 0 && free_head[pq] == 0) -> FULL : NORMAL);
             tf_rem[pq] = 0;
             rs = tf_state[pq];
             ok = 1
          :: else -> rh = tf_head[pq]; rs = tf_state[pq]; rr = tf_rem[pq]
          fi
        }
     od;
     if
     :: ok && in_full[pq] && rs == NORMAL -> move_out_of_full(pq)
     :: else -> skip
     fi;
     ok = 0; pq++
  :: pq < NP && !in_use[pq] -> pq++
  :: pq >= NP -> break
  od;
  pq = 0; rh = 0; rs = 0; rr = 0
}

/* ---- Heap::alloc: fast path (a class-queue page with a free block, no drain)
 * or alloc_slow: drain_notified, find_page (collect, move_to_full), fresh_page.
 * got = the block, or 0 when no page can serve. */
inline alloc() {
  OWNER_ONLY;
  got = 0;
  /* The fast path pops from the page the direct table points at (a class
   * queue page) without draining; modelled as: any class queue page with a
   * free block may serve without the slow path. */
  atomic {
    pq = 0; ok = 0;
    do
    :: pq < NP && in_queue[pq] && free_head[pq] != 0 -> ok = 1; break
    :: pq < NP -> pq++
    :: pq >= NP -> break
    od
  }
  if
  :: ok -> pop_free(pq)
  :: else ->
     drain_notified();
     /* find_page */
     pq = 0;
     do
     :: pq >= NP -> break
     :: pq < NP && !(in_use[pq] && in_queue[pq]) -> pq++
     :: pq < NP && in_use[pq] && in_queue[pq] ->
        if
        :: free_head[pq] == 0 -> collect(pq)
        :: else -> skip
        fi;
        if
        :: free_head[pq] != 0 -> pop_free(pq); break
        :: else ->
           move_to_full(pq);
           if
           :: ok -> pq++
           :: else -> skip  /* remote frees arrived: collect them (same page again) */
           fi
        fi
     od;
     if
     :: got == 0 ->
        fresh_page();
        if
        :: pg >= NP && !no_oom_collect ->
           /* Heap::claim_segment: out of slots, give back this heap's empty
            * pages (collect_all) and try once more */
           collect_all();
           fresh_page()
        :: else -> skip
        fi;
        if
        :: pg < NP -> pop_free(pg)
        :: else -> skip  /* no free page: out of memory */
        fi;
        pg = 0
     :: else -> skip
     fi
  fi;
  pq = 0; ok = 0
}

/* Rest-point invariants of the notify protocol (checked by the owner between
 * operations): a page in the full queue is FULL or NOTIFIED, never NORMAL
 * (else remote frees into it would never notify: a lost wake-up); a FULL page
 * has no block waiting in thread_free; a NOTIFIED page is on H.notified or
 * its notifier is on the way. */
inline check_rest_invariants() {
#ifndef NO_REST_CHECKS
  atomic {
    i = 0;
    do
    :: i < NP ->
       assert(!(in_use[i] && tf_state[i] == SEALED));  /* a heap that allocates has no sealed page */
       assert(!(in_use[i] && in_full[i] && tf_state[i] == NORMAL));
       assert(!(tf_state[i] == FULL && tf_head[i] != 0));
       assert(!(in_use[i] && tf_state[i] == NOTIFIED && !on_stack[i] && inflight[i] == 0));
       i++
    :: else -> break
    od;
    i = 0
  }
#else
  skip
#endif
}

/* A sealed page counts exactly the blocks of it that threads still hold (a
 * block being freed is held until its CAS); checkable at any time. */
inline check_sealed_counts() {
  atomic {
    i = 0;
    do
    :: i < NP ->
       if
       :: tf_state[i] == SEALED ->
          cnt = 0; last = i * NB + 1;
          do
          :: last <= i * NB + NB -> if :: holder[last] != 0 -> cnt++ :: else fi; last++
          :: else -> break
          od;
          assert(tf_rem[i] == cnt && cnt >= 1);
          cnt = 0; last = 0
       :: else -> skip
       fi;
       i++
    :: else -> break
    od;
    i = 0
  }
}

/* Locals every process that runs the inlines declares. */
#define PROTOCOL_LOCALS \
  byte rh, rs, rr, ok, cnt, last, list, pg, pq, i, got, fp, rp, hd, b, sd, fq; \
  bit nt, gu; \
  bit no_oom_collect  /* alloc: 1 = fail instead of the collect_all fallback */
