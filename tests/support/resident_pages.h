// Pages of a range that are resident (mincore): what tests of purging,
// populating and sparse use measure. Tests only (gtest).
#pragma once
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shardtest {

inline constexpr size_t kOsPage = 4096;

// Resident 4 KiB pages of the pages [p, p + bytes) touches.
inline size_t resident_pages(const void* p, size_t bytes) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kOsPage - 1};
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(p) + bytes + kOsPage - 1) & ~uintptr_t{kOsPage - 1};
  std::vector<unsigned char> vec((end - start) / kOsPage);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(start), end - start, vec.data()), 0);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

}  // namespace shardtest
