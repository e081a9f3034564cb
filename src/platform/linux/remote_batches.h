// Each thread's remote-free batch (core/remote_batch.h) lives in one of a
// fixed set of records, not in TLS: 800 bytes in the static TLS block would
// crowd out other libraries' initial-exec TLS when the library is dlopen'ed.
// A thread claims a record at its first remote free and gives it back,
// pushed and empty, at its exit. The records are zero-initialised static
// storage: a record no thread ever claimed costs no resident memory.
#pragma once
#include <cstdint>

#include "core/remote_batch.h"

namespace shardalloc::platform {

// Claims a free record for the calling thread, tagged with `owner` (the
// thread's ThreadState address: nonzero, one per live thread); null when
// every record is taken (the thread's remote frees are then pushed one at
// a time).
core::RemoteBatch* claim_remote_batch(uintptr_t owner);
// Gives back a record whose batch was pushed.
void release_remote_batch(core::RemoteBatch* batch);
// In a fork child: gives back every record not tagged `owner` (the forking
// thread's), emptied unpushed: their threads are gone, and a chain may have
// been cut half linked (appends are no fork step). Their blocks stay counted
// as live, as the rest of those threads' heaps do. By its tag, not by the
// thread's TLS pointer: a fork from a signal handler may land after the
// claim and before the pointer is stored, or in the exit hook after the
// pointer is cleared and before the flush (a review: two threads of the
// child then shared one record; a child lost an exiting thread's chains).
void remote_batches_after_fork_in_child(uintptr_t owner);

}  // namespace shardalloc::platform
