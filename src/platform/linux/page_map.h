// Which pages of our own memory were never populated, from the kernel's
// page map (/proc/self/pagemap): realloc's copy of a sparse block skips
// them without reading them (PageSource::unpopulated).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardalloc::platform {

// PageSource::unpopulated: bit i of bits[i / 64] set when page i of the
// `pages` from p (page aligned) is neither present nor swapped out. False
// when the page map cannot be read (no /proc, a sandbox): nothing written.
bool os_unpopulated(const void* p, size_t pages, uint64_t* bits);

}  // namespace shardalloc::platform
