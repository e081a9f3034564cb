// The heap snapshot of a domain: every heap record, arena, slot and page as
// line-based text (format: docs/introspection.md, "Snapshot format"), from
// the checked walk of core/heap_walk.h. Safe on any thread while others
// allocate and free (approximate then, never malformed), exact when the
// domain is quiescent. Allocates nothing.
#pragma once
#include <cstdint>

#include "core/text_out.h"

namespace shardalloc::core {

struct Domain;

// domain_name: "process" or "region"; pid: the header's pid (0 where there are no processes).
void write_snapshot(TextOut& out, const Domain& d, const char* domain_name, uint64_t pid);

}  // namespace shardalloc::core
