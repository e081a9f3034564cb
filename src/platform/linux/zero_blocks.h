// Checked mode: malloc(0) hands out addresses in a reserved region that is
// never accessible, so any read or write of a zero-size block faults. Each
// address is handed out once (16 bytes apart); a bitmap tells live ones, so
// a double free of one is caught too. When the region is used up, malloc(0)
// falls back to an ordinary minimal block.
#pragma once
#include <cstddef>

namespace shardalloc::platform {

// A fresh zero-size block, or null (region used up, or no memory for it).
void* zero_block_alloc();
// True when p lies in the region (whether or not it is a live block).
bool zero_block_owns(const void* p);
// Frees zero-size block p (zero_block_owns(p)); fatal on a double free or a
// pointer never handed out.
void zero_block_free(void* p);

}  // namespace shardalloc::platform
