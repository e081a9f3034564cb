// calloc of a huge block on memory that reads as zero (core/calloc_clear.h):
// up to calloc_populate_max (1 MiB by default) its pages are made resident in one call,
// so that a program reading the block before writing it takes no page fault
// per page (before: the shared zero page on the read, then a copy on write
// with a TLB flush on every CPU of the process, mstress); above it the block
// stays untouched (a sparse table costs only the pages it uses). Both through
// the process heap (calloc) and a first-class heap (shard_heap_calloc).
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "support/resident_pages.h"
#include "support/test_support.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;

constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE (older headers lack it)

// MADV_POPULATE_WRITE arrived in Linux 5.14 (and qemu-user accepts it and
// does nothing); without it calloc leaves the pages to fault in, as before,
// and the fault tests have nothing to check.
bool kernel_populates() {
  void* m = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  unsigned char resident = 0;
  const bool ok = madvise(m, kPage, kPopulateWrite) == 0 && mincore(m, kPage, &resident) == 0 &&
                  (resident & 1) != 0;
  munmap(m, kPage);
  return ok;
}

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

using shardtest::resident_pages;

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

// A 1 MiB block takes ~256 pages: lazily, 512 faults on this pattern.
constexpr size_t kPopulated = kMiB;
constexpr long kFewFaults = 16;
#ifdef SHARDTEST_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// p, a block calloc just returned: resident whole, and (outside sanitizers)
// read then written without a fault a page.
void expect_taken_at_once(unsigned char* p) {
  EXPECT_GE(resident_pages(p, kPopulated) * kPage, kPopulated - kPage);
  if (!kSanitized) {
    EXPECT_LT(faults_of_read_then_write(p, kPopulated), kFewFaults);
  }
}

TEST(CallocPopulate, ProcessHeapBlockUpTo1MiBTakesNoFaultPerPage) {
  if (!kernel_populates()) GTEST_SKIP() << "the kernel has no MADV_POPULATE_WRITE";
  // Fresh slots or reused ones (then calloc writes the zeros itself): either
  // way the pages are resident when calloc returns.
  auto* p = static_cast<unsigned char*>(shard_calloc(1, kPopulated));
  ASSERT_NE(p, nullptr);
  expect_taken_at_once(p);
  shard_free(p);
}

TEST(CallocPopulate, FirstClassHeapBlockUpTo1MiBTakesNoFaultPerPage) {
  if (!kernel_populates()) GTEST_SKIP() << "the kernel has no MADV_POPULATE_WRITE";
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  // A new heap's arena is fresh: this is the populate path, not a memset.
  auto* p = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kPopulated));
  ASSERT_NE(p, nullptr);
  expect_taken_at_once(p);
  shard_heap_destroy(h);
}

TEST(CallocPopulate, LargerBlockStaysUntouched) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  constexpr size_t kSparse = 64 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kSparse));
  ASSERT_NE(p, nullptr);
  // The header's page and no more (arenas are advised MADV_NOHUGEPAGE: no
  // 2 MiB page around a touch, also where THP is "always").
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
  auto* lazy = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kMiB + 1));
  ASSERT_NE(lazy, nullptr);
  EXPECT_LT(resident_pages(lazy, kMiB + 1) * kPage, kMiB / 2);
  shard_heap_free(h, lazy);
  shard_heap_destroy(h);
}

// Sparse tables above the threshold cost the pages their program touches:
// 32 live 4 MiB tables, one byte written in each. (Adversarial review: with
// the first threshold, 4 MiB, they cost 128 MiB.)
TEST(CallocPopulate, SparseTablesAboveTheThresholdCostOnlyTouchedPages) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  constexpr int kTables = 32;
  constexpr size_t kTable = 4 * kMiB;
  unsigned char* tables[kTables];
  size_t resident = 0;
  for (auto& t : tables) {
    t = static_cast<unsigned char*>(shard_heap_calloc(h, 1, kTable));
    ASSERT_NE(t, nullptr);
    t[kTable / 2] = 1;
  }
  for (auto* t : tables) resident += resident_pages(t, kTable) * kPage;
  EXPECT_LT(resident, 8 * kMiB);
  shard_heap_destroy(h);
}

// madvise(MADV_POPULATE_WRITE) fails with EINVAL from now on, as on a
// kernel before 5.14 or under a seccomp policy that allows only some advice.
bool refuse_populate_write() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[2])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kPopulateWrite, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// A calloc that succeeds leaves errno alone, also when the kernel refuses to
// populate (adversarial review: it left EINVAL). Child exit codes: 1 no
// seccomp here, 2 calloc failed, 3/4 errno changed (first-class / process heap).
TEST(CallocPopulate, SuccessfulCallocKeepsErrnoWhenPopulateIsRefused) {
  if (kSanitized) GTEST_SKIP() << "fork of a sanitized process";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!refuse_populate_write()) _exit(1);
    shard_heap* h = shard_heap_new();  // a fresh arena: the populate path
    if (h == nullptr) _exit(2);
    for (int i = 0; i < 2; ++i) {  // the second time populate is not asked
      errno = ENOENT;
      void* p = shard_heap_calloc(h, 1, kPopulated);
      if (p == nullptr) _exit(2);
      if (errno != ENOENT) _exit(3);
    }
    errno = ENOENT;
    void* q = shard_calloc(1, kPopulated);
    if (q == nullptr) _exit(2);
    if (errno != ENOENT) _exit(4);
    unsigned char* b = static_cast<unsigned char*>(q);
    for (size_t i = 0; i < kPopulated; ++i) {
      if (b[i] != 0) _exit(5);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 1) GTEST_SKIP() << "seccomp filters not available";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Every size around the page rounding and the threshold reads zero, fresh,
// reused dirty and reused after a purge, through both heaps (adversarial
// review's check).
TEST(CallocPopulate, EverySizeReadsZeroFreshAndReused) {
  constexpr size_t kKiB = 1024;
  const size_t sizes[] = {128 * kKiB + 1, 132 * kKiB,  512 * kKiB - 2048, 512 * kKiB - 2064,
                          512 * kKiB,     kMiB,        kMiB + 1,          kMiB + 4095,
                          4 * kMiB - 1,   4 * kMiB + 1};
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes) {
      auto* a = static_cast<unsigned char*>(shard_heap_calloc(h, 1, n));
      auto* b = static_cast<unsigned char*>(shard_calloc(n, 1));
      ASSERT_NE(a, nullptr);
      ASSERT_NE(b, nullptr);
      size_t nonzero = 0;
      for (size_t i = 0; i < n; ++i) nonzero += (a[i] != 0) + (b[i] != 0);
      EXPECT_EQ(nonzero, 0u) << n;
      memset(a, 0xa5, n);
      memset(b, 0x5a, n);
      shard_heap_free(h, a);
      shard_free(b);
    }
    // The third round after the purge delay (100 ms): the spans come back purged.
    if (round == 1) usleep(250 * 1000);
  }
  shard_heap_destroy(h);
}

}  // namespace
