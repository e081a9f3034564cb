// Helpers shared by the core, API, bare, hostile and stress tests: work
// scaling, a fast PRNG, content patterns, leak-free-on-purpose memory for
// regions, the process's memory (/proc/self/statm).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shardalloc/region.h"
#include "support/rng.h"

namespace shardtest {

inline constexpr size_t KiB = size_t{1} << 10;
inline constexpr size_t MiB = size_t{1} << 20;

// ---- work scaling ---------------------------------------------------------

#if defined(__SANITIZE_THREAD__)
#define SHARDTEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHARDTEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHARDTEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHARDTEST_ASAN 1
#endif
#endif
// Either sanitizer: RSS includes shadow memory that is not given back.
#if defined(SHARDTEST_TSAN) || defined(SHARDTEST_ASAN)
#define SHARDTEST_SANITIZED 1
#endif

#ifndef SHARDALLOC_STRESS_SCALE_DEFAULT
#define SHARDALLOC_STRESS_SCALE_DEFAULT 1
#endif

// Fixed shrink factor of sanitizer builds (TSan is ~10x slower, ASan ~2x).
inline double sanitizer_factor() {
#if defined(SHARDTEST_TSAN)
  return 0.1;
#elif defined(SHARDTEST_ASAN)
  return 0.5;
#else
  return 1.0;
#endif
}

// SHARDALLOC_STRESS_SCALE from the environment, else the configured default,
// times the sanitizer factor.
inline double stress_scale() {
  double s = SHARDALLOC_STRESS_SCALE_DEFAULT;
  if (const char* e = std::getenv("SHARDALLOC_STRESS_SCALE")) {
    char* end = nullptr;
    double v = std::strtod(e, &end);
    if (end != e && v > 0) s = v;
  }
  return s * sanitizer_factor();
}

inline size_t scaled(size_t n, double factor, size_t min_n = 1) {
  double v = double(n) * factor;
  size_t r = v < 1 ? 0 : size_t(v);
  return r < min_n ? min_n : r;
}

// ---- content patterns ------------------------------------------------------

// Fills [p, p+n) with bytes derived from the block address, its size and a
// seed, so a block that was handed out twice, overlaps another live block or
// was scribbled over by the allocator is caught when it is checked.
inline uint64_t pattern_base(const void* p, size_t n, uint64_t seed) {
  return mix64(uint64_t(reinterpret_cast<uintptr_t>(p)) ^ mix64(n) ^
               (seed * 0x9e3779b97f4a7c15ull));
}

// Word i (at byte offset i) is base ^ (i * K); trailing bytes of a size that
// is not a multiple of 8 get a byte formula. Any prefix of whole words of a
// filled block checks against the same base (used across realloc).
inline uint64_t pattern_word(uint64_t base, size_t i) {
  return base ^ (uint64_t(i) * 0x100000001b3ull);
}
inline unsigned char pattern_tail(uint64_t base, size_t i) {
  return static_cast<unsigned char>(base >> ((i & 7) * 8)) ^ static_cast<unsigned char>(i);
}

inline void fill_with_base(void* p, size_t n, uint64_t base) {
  unsigned char* b = static_cast<unsigned char*>(p);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = pattern_word(base, i);
    std::memcpy(b + i, &v, 8);
  }
  for (; i < n; ++i) b[i] = pattern_tail(base, i);
}

// Offset of the first byte that differs, or SIZE_MAX when all match.
inline size_t check_with_base(const void* p, size_t n, uint64_t base) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, b + i, 8);
    const uint64_t want = pattern_word(base, i);
    if (v != want) {
      for (size_t k = 0; k < 8; ++k)
        if (b[i + k] != static_cast<unsigned char>(want >> (k * 8))) return i + k;
    }
  }
  for (; i < n; ++i)
    if (b[i] != pattern_tail(base, i)) return i;
  return SIZE_MAX;
}

inline void fill_pattern(void* p, size_t n, uint64_t seed) {
  fill_with_base(p, n, pattern_base(p, n, seed));
}

// Offset of the first byte that differs from fill_pattern(p, n, seed), or
// SIZE_MAX when all match.
inline size_t check_pattern(const void* p, size_t n, uint64_t seed) {
  return check_with_base(p, n, pattern_base(p, n, seed));
}

// Sparse variant for big blocks: one word every `stride` bytes plus the last
// byte (when no word covers it), so multi-MiB blocks are checked without
// touching every page twice.
inline bool sparse_last_byte_free(size_t n, size_t stride) {
  if (n == 0) return false;
  if (n < 8) return true;
  size_t last_word = ((n - 8) / stride) * stride;
  return n - 1 >= last_word + 8;
}

inline void fill_sparse(void* p, size_t n, uint64_t seed, size_t stride = 4096) {
  const uint64_t base = pattern_base(p, n, seed);
  unsigned char* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i + 8 <= n; i += stride) {
    uint64_t v = base ^ i;
    std::memcpy(b + i, &v, 8);
  }
  if (sparse_last_byte_free(n, stride)) b[n - 1] = static_cast<unsigned char>(base ^ 0xa5);
}

inline bool check_sparse(const void* p, size_t n, uint64_t seed, size_t stride = 4096) {
  const uint64_t base = pattern_base(p, n, seed);
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i + 8 <= n; i += stride) {
    uint64_t v;
    std::memcpy(&v, b + i, 8);
    if (v != (base ^ i)) return false;
  }
  return !sparse_last_byte_free(n, stride) || b[n - 1] == static_cast<unsigned char>(base ^ 0xa5);
}

inline bool is_aligned(const void* p, size_t align) {
  return align == 0 || (reinterpret_cast<uintptr_t>(p) & (align - 1)) == 0;
}

// ---- the process's memory ------------------------------------------------------

// Virtual size and resident size of the process in bytes (/proc/self/statm);
// {0, 0} when it cannot be read.
struct ProcMemory {
  size_t vm, rss;
};
inline ProcMemory proc_memory() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return {0, 0};
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) pages = resident = 0;
  std::fclose(f);
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return {size_t(pages) * page, size_t(resident) * page};
}

// ---- memory for regions ----------------------------------------------------

// Anonymous memory for a region. Never unmapped: a region has no destroy call
// and threads that used it keep a heap inside it, so its memory has to stay
// valid for the life of the process. Untouched pages cost no RSS.
inline void* map_memory(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "mmap of %zu bytes failed\n", bytes);
    std::abort();
  }
  return p;
}

// `bytes` of memory for a region that holds no multiple of `align` (a power
// of two, at least twice `bytes`): of a mapping twice the size, which holds at
// most one such boundary, the half without it. For tests that expect an
// allocation at that alignment to fail: at a random mmap address an 8 MiB
// region holds a 1 GiB boundary 1 time in 128 (and a 1 TiB one 1 time in
// 131072), and an aligned block there is a right answer.
inline void* map_memory_without_boundary(size_t bytes, size_t align) {
  const uintptr_t m = reinterpret_cast<uintptr_t>(map_memory(2 * bytes));
  const uintptr_t boundary = (m + align - 1) & ~(align - 1);
  return reinterpret_cast<void*>(boundary >= m + bytes ? m : m + bytes);
}

// Ends a death-test child that filled `bytes` at `filler` with `fill` and
// then allocated `block` elsewhere: exit 0 when every filler byte still reads
// `fill` and `block` is non-null and outside the filler; else a message
// (`whose` names the block) and exit 2 (filler changed) or 3 (bad block).
[[noreturn]] inline void exit_checking_filler(const void* filler, size_t bytes, unsigned char fill,
                                              const void* block, const char* whose) {
  const auto* c = static_cast<const unsigned char*>(filler);
  for (size_t i = 0; i < bytes; ++i) {
    if (c[i] != fill) {
      std::fprintf(stderr, "byte %zu of a live region block changed\n", i);
      std::_Exit(2);
    }
  }
  const uintptr_t f = reinterpret_cast<uintptr_t>(filler), b = reinterpret_cast<uintptr_t>(block);
  if (block == nullptr || (b >= f && b < f + bytes)) {
    std::fprintf(stderr, "%s block %p (region block at %p)\n", whose, block, filler);
    std::_Exit(3);
  }
  std::_Exit(0);
}

struct RegionStats {
  size_t total, used, available;
  bool operator==(const RegionStats&) const = default;
};

inline RegionStats stats(const shard_region* r) {
  return {shard_region_total_bytes(r), shard_region_used_bytes(r), shard_region_available_bytes(r)};
}

inline const char* status_name(shard_status s) {
  switch (s) {
    case SHARD_OK:
      return "SHARD_OK";
    case SHARD_INVALID_PARAM:
      return "SHARD_INVALID_PARAM";
    case SHARD_MEMORY_OVERLAP:
      return "SHARD_MEMORY_OVERLAP";
    case SHARD_NO_MEMORY:
      return "SHARD_NO_MEMORY";
    case SHARD_NOT_ALLOCATED:
      return "SHARD_NOT_ALLOCATED";
  }
  return "shard_status(?)";
}

}  // namespace shardtest

// gtest prints statuses by name.
#include <ostream>
inline std::ostream& operator<<(std::ostream& os, shard_status s) {
  return os << shardtest::status_name(s);
}
namespace shardtest {
inline std::ostream& operator<<(std::ostream& os, const RegionStats& s) {
  return os << "{total=" << s.total << " used=" << s.used << " available=" << s.available << "}";
}
}  // namespace shardtest
