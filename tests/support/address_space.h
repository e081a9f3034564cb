// Address-space checks shared by tests: the bytes a process has mapped, and
// whether blocks overlap. Hosted tests only (reads /proc).
#pragma once
#include <sys/resource.h>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace shardtest {

// Limits the process's address space (RLIMIT_AS) to what it maps now plus
// `room` bytes: for children that must run out of memory. False on failure.
inline bool limit_address_space_to_now_plus(size_t room) {
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) != 0) return false;
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  const bool read = f != nullptr && std::fscanf(f, "%lu", &pages) == 1;
  if (f != nullptr) std::fclose(f);
  if (!read) return false;
  lim.rlim_cur = rlim_t(pages) * 4096 + room;
  return setrlimit(RLIMIT_AS, &lim) == 0;
}

// Bytes of every mapping of the process (/proc/self/maps). Under qemu-user
// this lists the guest's mappings, while statm counts qemu's own memory too
// (which grows with every fresh guest address range it has seen).
inline size_t mapped_bytes() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return 0;
  size_t total = 0;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long start = 0, end = 0;
    if (std::sscanf(line, "%llx-%llx", &start, &end) == 2) total += size_t(end - start);
  }
  std::fclose(f);
  return total;
}

// [p, p + n) of each block (a zero-size block counts one byte), sorted:
// true when no two overlap.
inline bool disjoint(std::vector<std::pair<uintptr_t, size_t>> blocks) {
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; i < blocks.size(); ++i)
    if (blocks[i - 1].first + std::max<size_t>(blocks[i - 1].second, 1) > blocks[i].first)
      return false;
  return true;
}

// The permissions /proc/self/maps lists for the mapping holding p ("rw-p",
// "---p"; "" if none).
inline std::string perms_at(const void* p) {
  std::string out;
  if (FILE* f = std::fopen("/proc/self/maps", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long long lo = 0, hi = 0;
      char perms[8] = {};
      if (std::sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3) continue;
      const auto a = reinterpret_cast<uintptr_t>(p);
      if (lo <= a && a < hi) out = perms;
    }
    std::fclose(f);
  }
  return out;
}

}  // namespace shardtest
