/* Protocol 3 of docs/protocols.md (heap abandon / adopt / sweep), on top of
 * protocols 1 and 2: blocks keep being freed into a heap while it changes
 * hands or has no owner at all.
 *
 *   Creator  owns the heap (a new heap starts owned), allocates A1 blocks,
 *            frees some itself, hands the others to Adopter and Remote, then
 *            exits: release_heap (collect_all, owned = 0).
 *   Adopter  frees the blocks it was given: free_remote while it does not own
 *            the heap, free_local while it does. It adopts the heap (try_own)
 *            when it can, allocates one block as its owner, frees it, and
 *            exits (release_heap). With -DBORROW it borrows the heap instead
 *            (Domain::alloc_borrowed): adopts it, allocates one block, gives
 *            the heap back at once (release_heap) and frees the block later,
 *            remotely.
 *   Sweeper  sweep_abandoned: claims the heap if unowned and releases it
 *            (collect_all), SWEEPS times at most.
 *   Remote   frees the blocks it was given (free_remote).
 *   init     waits for every thread to end, then claims the heap like the
 *            next thread would, collects it, and checks that nothing is lost.
 *
 * Sealed pages (protocol 3): release_heap seals every page with live blocks
 * (SEALED, remaining = its live blocks); remote frees count down, and the
 * free of a page's last live block makes it NOTIFIED and pushes it; a
 * notifier that finds the heap unowned claims it, frees the page and gives
 * the heap up again, re-checking the notified stack (give_up). The adopter
 * unseals every page before it allocates.
 *
 * Checked: the assertions of common.pml (no block handed out twice, a page is
 * never freed while a remote free or a notification is in flight or while it
 * is on the notified stack, well-formed lists, rest invariants of the owner);
 * at most one owner at any time (owners == 1 after each successful claim,
 * every owner-only step runs on the owner); a sealed page's count is exactly
 * its blocks still held; a heap that allocates has no sealed page; and at
 * the end, with no thread left and before anyone claims the heap again:
 * every page has been given back (in_use 0: memory freed into the abandoned
 * heap came back without a new owner or a sweep), the heap is unowned and
 * its notified stack empty; then, after a last claim and collection, no
 * lost free (every block back in the allocator) and no process stuck.
 */
#include "common.pml"

#ifndef A1
#define A1 4
#endif
#ifndef SWEEPS
#define SWEEPS 1
#endif

byte adopter_pid, remote_pid;
bit creator_done;
byte finished;

inline pick_held() {
  atomic {
    b = 1;
    do
    :: b <= NBLK && holder[b] == _pid + 1 -> break
    :: b <= NBLK -> b++
    :: b > NBLK -> b = 0; break
    od
  }
}

inline held_count(n) {
  atomic {
    n = 0; i = 1;
    do
    :: i <= NBLK -> if :: holder[i] == _pid + 1 -> n++ :: else fi; i++
    :: else -> break
    od;
    i = 0
  }
}

proctype Creator() {
  PROTOCOL_LOCALS;
  byte ops, n;
  do
  :: ops < A1 -> alloc(); ops++; got = 0; check_rest_invariants()
  :: pick_held();
     if
     :: b != 0 ->
        if
        :: atomic { holder[b] = adopter_pid + 1; b = 0 }
        :: atomic { holder[b] = remote_pid + 1; b = 0 }
        :: free_local(b); check_rest_invariants()
        fi
     :: else -> skip
     fi;
     b = 0
  :: ops >= A1 ->
     held_count(n);
     if
     :: n == 0 -> break
     :: else -> n = 0
     fi
  od;
  /* thread exit: abandon the heap */
  release_heap();
  creator_done = 1;
  finished++
}

proctype Adopter() {
  PROTOCOL_LOCALS;
  byte n;
  bit adopted;
  do
  :: pick_held();  /* free a block we were given: local if we own the heap now */
     if
     :: b != 0 && owner_pid == _pid -> free_local(b); check_rest_invariants()
     :: b != 0 && owner_pid != _pid -> free_remote(b)
     :: else -> skip
     fi;
     b = 0
  :: !adopted ->  /* Domain::acquire_heap: adopt the heap if nobody owns it */
     try_own();
     if
#ifdef BORROW
     :: ok ->  /* Domain::alloc_borrowed: adopt, allocate one block, give the heap back */
        adopted = 1; ok = 0;
        unseal_all();
        alloc();  /* the block (if any) stays ours: we free it later, remotely */
        got = 0;
#ifdef MUTANT_BORROW_PLAIN_GIVE_BACK
        atomic { OWNER_ONLY; owners--; owner_pid = NOBODY; owned = 0 }  /* owned = 0, release */
#else
        release_heap()  /* abandon_pages (seal again), give_up */
#endif
#else
     :: ok ->
        adopted = 1; ok = 0;
#ifndef MUTANT_ADOPT_SEALED
        unseal_all();  /* we allocate from it: no page may stay sealed */
#endif
        alloc();  /* the adopted pages (and their notifications) serve us */
        check_rest_invariants();
        if
        :: got != 0 -> b = got; got = 0; free_local(b); b = 0; check_rest_invariants()
        :: else -> skip
        fi
#endif
     :: else -> skip
     fi
  :: owner_pid == _pid && creator_done ->
     held_count(n);
     if
     :: n == 0 -> release_heap(); break  /* thread exit */
     :: else -> n = 0
     fi
  :: owner_pid != _pid && creator_done ->
     held_count(n);
     if
     :: n == 0 -> break
     :: else -> n = 0
     fi
  od;
  finished++
}

proctype Sweeper() {
  PROTOCOL_LOCALS;
  byte tries;
  do
  :: tries < SWEEPS ->  /* Domain::sweep_abandoned */
     tries++;
     try_own();
     if
     :: ok -> ok = 0; release_heap()
     :: else -> skip
     fi
  :: tries >= SWEEPS -> break
  od;
  finished++
}

proctype Remote() {
  PROTOCOL_LOCALS;
  byte n;
  do
  :: pick_held();
     if
     :: b != 0 -> free_remote(b); check_sealed_counts()
     :: else -> skip
     fi;
     b = 0
  :: creator_done ->
     held_count(n);
     if
     :: n == 0 -> break
     :: else -> n = 0
     fi
  od;
  finished++
}

init {
  PROTOCOL_LOCALS;
  atomic {
    /* Domain::acquire_heap making a new heap: owned by its creator before it is published */
    owner_pid = run Creator(); owned = 1; owners = 1;
    adopter_pid = run Adopter();
    remote_pid = run Remote();
    run Sweeper()
  }
  finished == 4;
  /* Memory comes back without a new owner: every block has been freed, so
   * every page has been given back by now (the frees that completed a sealed
   * page gave it back), with nobody owning the heap and nothing waiting. */
  atomic {
    assert(owned == 0 && owners == 0);
    assert(notified == 0);
    i = 0;
    do
    :: i < NP -> assert(!in_use[i]); i++
    :: else -> break
    od;
    i = 0
  }
  /* The next thread (or sweeper) claims the heap: nobody may own it now. */
  try_own();
  assert(ok);
  collect_all();
  atomic {
    i = 1;
    do
    :: i <= NBLK -> assert(holder[i] == 0); i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < NP -> assert(!in_use[i] && inflight[i] == 0 && tf_head[i] == 0); i++
    :: else -> break
    od;
    assert(notified == 0)
  }
}
