// Heap snapshots as text for tests (shard_heap_snapshot and the region's),
// and what the abandon/reclaim tests read off them.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "shardalloc/region.h"
#include "shardalloc/stats.h"

namespace shardtest {

inline std::string process_snapshot() {
  std::string s(shard_heap_snapshot(nullptr, 0) + 1, '\0');
  s.resize(shard_heap_snapshot(s.data(), s.size()));
  return s;
}

inline std::string region_snapshot(const shard_region* r) {
  std::string s(shard_region_heap_snapshot(r, nullptr, 0) + 1, '\0');
  s.resize(shard_region_heap_snapshot(r, s.data(), s.size()));
  return s;
}

// Segments held by abandoned heaps ("heap ... abandoned=1 segments=N" lines).
inline uint64_t abandoned_segments(const std::string& snapshot) {
  uint64_t total = 0;
  size_t at = 0;
  while ((at = snapshot.find("\nheap ", at)) != std::string::npos) {
    const size_t end = snapshot.find('\n', at + 1);
    const std::string line = snapshot.substr(at + 1, end - at - 1);
    at = end;
    if (line.find(" abandoned=1 ") == std::string::npos) continue;
    const size_t k = line.find(" segments=");
    if (k != std::string::npos) total += std::strtoull(line.c_str() + k + 10, nullptr, 10);
  }
  return total;
}

}  // namespace shardtest
