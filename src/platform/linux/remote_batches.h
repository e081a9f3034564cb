// Each thread's remote-free batch (core/remote_batch.h) lives in one of a
// fixed set of records, not in TLS: 800 bytes in the static TLS block would
// crowd out other libraries' initial-exec TLS when the library is dlopen'ed.
// A thread claims a record at its first remote free and gives it back,
// pushed and empty, at its exit. The records are zero-initialised static
// storage: a record no thread ever claimed costs no resident memory.
#pragma once
#include "core/remote_batch.h"

namespace shardalloc::platform {

// Claims a free record for the calling thread; null when every record is
// taken (the thread's remote frees are then pushed one at a time).
core::RemoteBatch* claim_remote_batch();
// Gives back a record whose batch was pushed.
void release_remote_batch(core::RemoteBatch* batch);
// In a fork child: gives back every record but `keep` (the forking thread's,
// or null), emptied unpushed: their threads are gone, and a chain may have
// been cut half linked (appends are no fork step). Their blocks stay counted
// as live, as the rest of those threads' heaps do.
void remote_batches_after_fork_in_child(const core::RemoteBatch* keep);

}  // namespace shardalloc::platform
