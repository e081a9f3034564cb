// calloc of a huge block on memory that reads as zero (core/calloc_clear.h):
// up to kCallocPopulateMax (4 MiB) its pages are made resident in one call,
// so that a program reading the block before writing it takes no page fault
// per page (before: the shared zero page on the read, then a copy on write
// with a TLB flush on every CPU of the process, mstress); above it the block
// stays untouched (a sparse table costs only the pages it uses). Both through
// the process heap (calloc) and a first-class heap (shard_heap_calloc).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;

// MADV_POPULATE_WRITE arrived in Linux 5.14 (and qemu-user accepts it and
// does nothing); without it calloc leaves the pages to fault in, as before,
// and the fault tests have nothing to check.
bool kernel_populates() {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  void* m = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  unsigned char resident = 0;
  const bool ok = madvise(m, kPage, MADV_POPULATE_WRITE) == 0 &&
                  mincore(m, kPage, &resident) == 0 && (resident & 1) != 0;
  munmap(m, kPage);
  return ok;
}

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

size_t resident_pages(const void* p, size_t bytes) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kPage - 1};
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(p) + bytes + kPage - 1) & ~uintptr_t{kPage - 1};
  std::vector<unsigned char> vec((end - start) / kPage);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(start), end - start, vec.data()), 0);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// Reads every page of p (checking zero), then writes every page; returns
// the minor faults taken while doing so. (Under ASan and TSan the first
// access to each part of the block's shadow memory faults too: there the
// tests check residency only.)
long faults_of_read_then_write(unsigned char* p, size_t bytes) {
  const long before = minor_faults();
  unsigned nonzero = 0;
  for (size_t i = 0; i < bytes; i += kPage) nonzero += p[i] != 0;
  nonzero += p[bytes - 1] != 0;
  EXPECT_EQ(nonzero, 0u);
  for (size_t i = 0; i < bytes; i += kPage) p[i] = 0x5a;
  p[bytes - 1] = 0x5a;
  return minor_faults() - before;
}

// A 2 MiB block takes ~512 pages: lazily, 1024 faults on this pattern.
constexpr size_t kPopulated = 2 * kMiB;
constexpr long kFewFaults = 16;
#ifdef SHARDTEST_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

TEST(CallocPopulate, ProcessHeapBlockUpTo4MiBTakesNoFaultPerPage) {
  if (!kernel_populates()) GTEST_SKIP() << "the kernel has no MADV_POPULATE_WRITE";
  // Fresh slots or reused ones (then calloc writes the zeros itself): either
  // way the pages are resident when calloc returns.
  auto* p = static_cast<unsigned char*>(shard_calloc(1, kPopulated));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(resident_pages(p, kPopulated) * kPage, kPopulated - kPage);
  if (!kSanitized) {
    EXPECT_LT(faults_of_read_then_write(p, kPopulated), kFewFaults);
  }
  shard_free(p);
}

TEST(CallocPopulate, FirstClassHeapBlockUpTo4MiBTakesNoFaultPerPage) {
  if (!kernel_populates()) GTEST_SKIP() << "the kernel has no MADV_POPULATE_WRITE";
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  // A new heap's arena is fresh: this is the populate path, not a memset.
  auto* p = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kPopulated));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(resident_pages(p, kPopulated) * kPage, kPopulated - kPage);
  if (!kSanitized) {
    EXPECT_LT(faults_of_read_then_write(p, kPopulated), kFewFaults);
  }
  shard_heap_destroy(h);
}

TEST(CallocPopulate, LargerBlockStaysUntouched) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  constexpr size_t kSparse = 64 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kSparse));
  ASSERT_NE(p, nullptr);
  // The header's page (a 2 MiB transparent huge page at most) and no more.
  EXPECT_LT(resident_pages(p, kSparse) * kPage, 4 * kMiB);
  // It still reads as zero, and a sparse touch makes only those pages resident.
  for (size_t i = 0; i < kSparse; i += 8 * kMiB) {
    EXPECT_EQ(p[i], 0);
    p[i] = 1;
  }
  EXPECT_LT(resident_pages(p, kSparse) * kPage, 8 * 2 * kMiB + 4 * kMiB);
  shard_heap_destroy(h);
}

// The populate threshold counts the block: one byte past it stays lazy.
TEST(CallocPopulate, ThresholdIsTheBlockSize) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  auto* lazy = static_cast<unsigned char*>(shard_heap_calloc(h, 1, 4 * kMiB + 1));
  ASSERT_NE(lazy, nullptr);
  EXPECT_LT(resident_pages(lazy, 4 * kMiB + 1) * kPage, 2 * kMiB + kPage);
  shard_heap_free(h, lazy);
  shard_heap_destroy(h);
}

}  // namespace
