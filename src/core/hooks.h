// What the core needs from its platform, declared here and defined once per
// platform: src/platform/linux/ (hosted) or src/platform/bare/ (kernel).
#pragma once
#include <cstddef>

namespace shardalloc::core {
struct Domain;
struct Heap;
}  // namespace shardalloc::core

namespace shardalloc::platform {

// Prints one line naming `what` and `p`, then stops the program (or the kernel).
[[noreturn]] void fatal(const char* what, const void* p);

// The calling thread's (or CPU's) heap in domain d, acquired on first use.
// Returns null when no heap can be had (out of metadata memory).
core::Heap* current_heap(core::Domain* d);

// A random-ish 64-bit value for secrets (no allocation, no libc needed on bare).
unsigned long long entropy();

}  // namespace shardalloc::platform
