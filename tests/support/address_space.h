// Address-space checks shared by tests: the bytes a process has mapped, and
// whether blocks overlap. Hosted tests only (reads /proc).
#pragma once
#include <sys/mman.h>
#include <sys/resource.h>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
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

// Each mapping of /proc/self/smaps: its range, its name ("" when
// anonymous) and its VmFlags, each flag between spaces (" rd wr mr nh ").
struct Mapping {
  uintptr_t lo = 0, hi = 0;
  std::string name, flags;
};
inline std::vector<Mapping> mappings() {
  const auto trimmed = [](std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  };
  std::vector<Mapping> out;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long lo = 0, hi = 0;
    int name_at = 0;
    if (std::strncmp(line, "VmFlags:", 8) == 0) {
      if (out.empty()) continue;
      out.back().flags = trimmed(line + 8) + ' ';
    } else if (std::sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &lo, &hi, &name_at) == 2 &&
               name_at > 0) {
      out.push_back({uintptr_t(lo), uintptr_t(hi), trimmed(line + name_at), ""});
    }
  }
  std::fclose(f);
  return out;
}

// The VmFlags of the mapping holding p; "" when none holds it.
inline std::string vm_flags_at(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (const Mapping& m : mappings()) {
    if (m.lo <= a && a < m.hi) return m.flags;
  }
  return "";
}

inline bool has_flag(const std::string& flags, const char* flag) {
  return flags.find(std::string(" ") + flag + " ") != std::string::npos;
}

// Whether this kernel shows transparent-huge-page advice in smaps: a
// mapping of our own, advised MADV_NOHUGEPAGE, reads "nh" (not without THP,
// nor under qemu-user, which takes the advice without passing it on).
inline bool advice_shows() {
  void* p =
      mmap(nullptr, (size_t{4} << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool shows =
      madvise(p, (size_t{4} << 20), MADV_NOHUGEPAGE) == 0 && has_flag(vm_flags_at(p), "nh");
  munmap(p, (size_t{4} << 20));
  return shows;
}

}  // namespace shardtest
