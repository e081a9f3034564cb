/* Protocols 1 and 2 of docs/protocols.md: thread-free push / collect and the
 * full-page notification (delayed free), with one living owner.
 *
 * The owner allocates ALLOCS times (pages fill up and move to the full
 * queue), frees some blocks itself and hands the others to NREMOTE remote
 * threads, which free them with free_remote (pushing on thread_free and, the
 * first into a FULL page, notifying the heap). Pages empty out and are freed
 * and made fresh again. Checked (assertions in common.pml and here):
 *   - a block is never handed out twice; thread_free lists stay well formed;
 *   - a page is freed only when no remote free still touches it (neither a
 *     block push nor a notification on the way), it is not on the notified
 *     stack, and no block waits in its thread_free; a page is pushed on the
 *     stack at most once;
 *   - at every rest point of the owner: no page in the full queue is NORMAL,
 *     no FULL page has blocks waiting, every NOTIFIED page is on the stack or
 *     about to be (no lost wake-up);
 *   - no lost free: once every remote free is done, the owner allocates all
 *     NBLK blocks again (a block whose free went unnoticed could not be found:
 *     find_page looks at the class queue only, and no fresh page is left);
 *   - no deadlock (invalid end states).
 */
#include "common.pml"

#ifndef ALLOCS
#define ALLOCS 6
#endif
#ifndef NREMOTE
#define NREMOTE 2
#endif

byte remote_pid[NREMOTE];
byte remotes_done;
bit handing_done;

/* b = a block the calling thread holds, chosen nondeterministically; 0 if none chosen. */
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

proctype Owner() {
  PROTOCOL_LOCALS;
  byte ops, n, k;
  do
  :: ops < ALLOCS -> alloc(); ops++; check_rest_invariants()
  :: pick_held();
     if
     :: b != 0 ->
        if
        :: atomic {  /* hand it to one of the remote threads */
             k = 0;
             do
             :: k < NREMOTE - 1 -> k++
             :: true -> break
             od;
             holder[b] = remote_pid[k] + 1; b = 0; k = 0
           }
        :: free_local(b); check_rest_invariants()
        fi
     :: else -> skip
     fi;
     b = 0
  :: ops >= ALLOCS ->
     held_count(n);
     if
     :: n == 0 -> break
     :: else -> n = 0
     fi
  od;
  handing_done = 1;
  remotes_done == NREMOTE;
  check_rest_invariants();
  /* No lost free: every block can be allocated again, by the normal path
   * (find_page and fresh pages; not the collect_all of an exhausted heap,
   * which would find a block whose notification was lost). */
  no_oom_collect = 1;
  k = 0;
  do
  :: k < NBLK ->
     alloc();
     assert(got != 0);
     check_rest_invariants();
     k++
  :: else -> break
  od
}

proctype Remote() {
  PROTOCOL_LOCALS;
  byte n;
  do
  :: pick_held();
     if
     :: b != 0 -> free_remote(b)
     :: else -> skip
     fi;
     b = 0
  :: handing_done ->
     held_count(n);
     if
     :: n == 0 -> break
     :: else -> n = 0
     fi
  od;
  remotes_done++
}

init {
  byte r;
  atomic {
    /* Domain::acquire_heap making a new heap: owned by its creator before it is published */
    owner_pid = run Owner(); owned = 1; owners = 1;
    do
    :: r < NREMOTE -> remote_pid[r] = run Remote(); r++
    :: else -> break
    od
  }
}
