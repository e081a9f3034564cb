// Conformance of the malloc / operator new override (issue 3).
//
// Built twice from this one source (see CMakeLists.txt):
//   override_api_linked   linked against libshardalloc.so;
//   override_api_preload  a plain executable, run with LD_PRELOAD=libshardalloc.so.
// In both, every allocation of the process (gtest's included) goes through
// shardalloc. OverrideIsActive.* fails when it does not, so a broken preload
// cannot pass silently as a glibc run.
//
// The shard_* and __libc_* entry points are looked up with dlsym so that the
// same source builds without linking the library.
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "support/opaque.h"

using shardtest::hide;
using shardtest::is_aligned;
using shardtest::opaque;

namespace {

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;
constexpr size_t kPtrdiffMax = size_t(PTRDIFF_MAX);
constexpr size_t kPage = 4096;

unsigned char pat(size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131 + (i >> 8) * 7 + seed * 29) ^ (seed >> 2));
}
void fill(void* p, size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = pat(i, seed);
}
// First differing offset, or SIZE_MAX.
size_t check(const void* p, size_t n, unsigned seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != pat(i, seed)) return i;
  return SIZE_MAX;
}
bool all_zero(const void* p, size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

template <class F>
F sym(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

// The file that defines the symbol the process resolves `name` to ("" if none).
std::string defining_object(const char* name) {
  void* s = dlsym(RTLD_DEFAULT, name);
  if (s == nullptr) return "";
  Dl_info info{};
  if (dladdr(s, &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

size_t usable(void* p) { return malloc_usable_size(p); }

// Checked builds (SHARDALLOC_CHECKED) keep the last 16 bytes of every block
// for its trailer, and malloc_usable_size is the size asked for.
bool library_is_checked() {
  static const bool checked = [] {
    auto* is_checked = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "shard_is_checked"));
    return is_checked != nullptr && is_checked() != 0;
  }();
  return checked;
}

// shardalloc's block size for a request of n bytes (size_class.h): 16-byte
// steps up to 64 (every block keeps the fundamental alignment), then four
// classes per power of two.
size_t block_size_for(size_t n) {
  if (n <= 64) return n == 0 ? 16 : (n + 15) & ~size_t{15};
  const unsigned k = unsigned(std::bit_width(n - 1)) - 1;
  const size_t step = size_t{1} << (k - 2);
  return (size_t{1} << k) + (n - (size_t{1} << k) + step - 1) / step * step;
}

// The usable size malloc(n) gives.
size_t shard_class_size(size_t n) {
  if (!library_is_checked()) return block_size_for(n);
  return n;
}

// ---------------------------------------------------------------------------
// The override is really in place.

// Every function libshardalloc.so exports in place of glibc / libstdc++.
const char* const kOverridden[] = {
    "malloc", "free", "calloc", "realloc", "cfree", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size", "__libc_malloc",
    "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
    "__libc_pvalloc", "__posix_memalign",
    // operator new / new[]: plain, nothrow, aligned, aligned nothrow
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    // operator delete / delete[]: plain, sized, nothrow, aligned, sized aligned, aligned nothrow
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t", "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    // shardalloc's own C API
    "shard_malloc", "shard_free", "shard_calloc", "shard_realloc", "shard_malloc_aligned",
    "shard_usable_size"};

TEST(OverrideIsActive, EveryExportedSymbolResolvesToShardalloc) {
  const char* preload = std::getenv("LD_PRELOAD");
  std::printf("mode: %s, LD_PRELOAD=%s\n", preload ? "preload" : "linked", preload ? preload : "");
  for (const char* name : kOverridden) {
    const std::string obj = defining_object(name);
    EXPECT_NE(obj.find("libshardalloc.so"), std::string::npos)
        << name << " resolves to '" << obj << "'";
  }
}

TEST(OverrideIsActive, UsableSizeShowsShardallocSizeClasses) {
  // glibc: 104 (a 112-byte chunk less its header); shardalloc: the 112-byte class.
  void* p = opaque(std::malloc(100));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(usable(p), shard_class_size(100)) << "malloc is not shardalloc's";
  auto shard_usable_size = sym<size_t (*)(const void*)>("shard_usable_size");
  ASSERT_NE(shard_usable_size, nullptr);
  void* q = opaque(std::malloc(1));
  EXPECT_EQ(shard_usable_size(q), shard_class_size(1));  // would abort for a glibc pointer
  std::free(q);
  std::free(p);
  // operator new too.
  auto* n = opaque(new char[100]);
  EXPECT_EQ(usable(n), shard_class_size(100)) << "operator new[] is not shardalloc's";
  delete[] n;
  std::string s(500, 'x');  // libstdc++'s own call to operator new
  EXPECT_EQ(usable(s.data()), shard_class_size(501));
}

TEST(OverrideIsActive, ShardApiSharesTheHeapWithMalloc) {
  auto shard_malloc = sym<void* (*)(size_t)>("shard_malloc");
  auto shard_free = sym<void (*)(void*)>("shard_free");
  ASSERT_NE(shard_malloc, nullptr);
  ASSERT_NE(shard_free, nullptr);
  void* a = shard_malloc(300);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(usable(a), shard_class_size(300));
  std::free(a);  // one heap: either free works on either pointer
  void* b = opaque(std::malloc(300));
  shard_free(b);
}

// ---------------------------------------------------------------------------
// malloc / free

TEST(Malloc, ZeroIsUniqueAndNonNull) {
  std::vector<void*> ps;
  for (int i = 0; i < 1000; ++i) {
    void* p = opaque(std::malloc(0));
    ASSERT_NE(p, nullptr);
    // Checked builds: the usable size is the size asked for, 0 (the block
    // faults on any access).
    EXPECT_GE(usable(p), library_is_checked() ? 0u : 1u);
    ps.push_back(p);
  }
  std::vector<void*> sorted = ps;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "malloc(0) returned a pointer twice";
  for (void* p : ps) std::free(p);
}

TEST(Malloc, FreeNullIsNoop) {
  std::free(nullptr);
  EXPECT_EQ(usable(nullptr), 0u);
}

// C17 7.22.3 asks only for an alignment suitable for any object with a
// fundamental alignment requirement that fits in the requested size
// (min(16, bit_floor(n))); glibc gives every block 16 bytes on 64-bit
// systems, whatever n, and so do we.
TEST(Malloc, FundamentalAlignment) {
  std::vector<std::string> bad;
  for (size_t n = 1; n <= 2048; ++n) {
    std::vector<void*> ps;
    for (int i = 0; i < 4; ++i) {  // several blocks: odd and even slots of a page
      void* p = opaque(std::malloc(n));
      ASSERT_NE(p, nullptr);
      const size_t need = alignof(std::max_align_t);
      if (!is_aligned(p, need) &&
          (bad.empty() || bad.back().rfind("malloc(" + std::to_string(n) + ")", 0) != 0)) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "malloc(%zu) = %p, not %zu-aligned", n, p, need);
        bad.push_back(buf);
      }
      ps.push_back(p);
    }
    for (void* p : ps) std::free(p);
  }
  std::string list;
  for (size_t i = 0; i < bad.size() && i < 12; ++i) list += "  " + bad[i] + "\n";
  EXPECT_TRUE(bad.empty()) << bad.size() << " request sizes get under-aligned blocks, e.g.\n"
                           << list;
}

// glibc gives every block alignof(max_align_t) (16 on x86-64, aarch64 and
// riscv64, its MALLOC_ALIGNMENT), however small the request, and programs
// rely on it: they keep tags in the low 4 bits of a pointer from malloc(1)
// (glibc's own tst-mallocalign1 checks it). So every small request, many
// blocks of each size (odd and even slots of a page), from every entry point
// that has no alignment argument.
TEST(Malloc, EverySmallBlockHasTheFundamentalAlignment) {
  constexpr size_t kAlign = alignof(std::max_align_t);
  static_assert(kAlign >= 16);
  std::vector<std::string> bad;  // one entry per entry point and size
  auto note = [&](const char* fn, size_t n, void* p) {
    if (p != nullptr && is_aligned(p, kAlign)) return;
    std::string what = std::string(fn) + " of " + std::to_string(n);
    if (std::find(bad.begin(), bad.end(), what) == bad.end()) bad.push_back(what);
  };
  std::vector<void*> ps;
  for (size_t n = 0; n <= 64; ++n) {
    for (int i = 0; i < 64; ++i) {
      void* p = opaque(std::malloc(n));
      note("malloc", n, p);
      ps.push_back(p);
      p = opaque(std::calloc(1, n));
      note("calloc", n, p);
      ps.push_back(p);
      p = opaque(std::realloc(nullptr, n));
      note("realloc(NULL)", n, p);
      ps.push_back(p);
    }
    std::vector<char*> news;
    for (int i = 0; i < 64; ++i) {
      char* c = opaque(new char[n == 0 ? 1 : n]);
      note("new[]", n, c);
      news.push_back(c);
    }
    for (char* c : news) delete[] c;
  }
  for (void* p : ps) std::free(p);
  std::string list;
  for (size_t i = 0; i < bad.size() && i < 12; ++i) list += (i == 0 ? " " : ", ") + bad[i];
  EXPECT_TRUE(bad.empty()) << bad.size() << " kinds of request get blocks not " << kAlign
                           << "-aligned, e.g." << list;
}

TEST(Malloc, EveryBlockHasTheFundamentalAlignment) {
  for (size_t n = 0; n <= 300 * KiB; n += (n < 4096 ? 1 : n < 140 * KiB ? 997 : 33333)) {
    void* p = opaque(std::malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(is_aligned(p, alignof(std::max_align_t))) << "malloc(" << n << ") = " << p;
    std::free(p);
  }
}

TEST(Malloc, TooLargeFailsWithENOMEM) {
  for (size_t n : {kPtrdiffMax + 1, kPtrdiffMax + 4096, SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - 4096,
                   kPtrdiffMax, size_t{1} << 62}) {
    errno = 0;
    EXPECT_EQ(opaque(std::malloc(n)), nullptr) << "malloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "malloc(" << n << ")";
  }
  void* p = opaque(std::malloc(100));  // the heap still works
  ASSERT_NE(p, nullptr);
  std::free(p);
}

// usable size >= request, equal to shardalloc's block size, and every usable
// byte can be written without touching a neighbour.
TEST(MallocUsableSize, AtLeastRequestAndExact) {
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 1100; ++n) sizes.push_back(n);
  for (size_t n = 1100; n <= 128 * KiB + 8; n = n * 9 / 8 + 3) sizes.push_back(n);
  sizes.push_back(128 * KiB);
  sizes.push_back(128 * KiB + 1);
  for (size_t n : sizes) {
    void* p = opaque(std::malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t u = usable(p);
    EXPECT_GE(u, n) << "malloc(" << n << ")";
    if (n + (library_is_checked() ? 16 : 0) <= 128 * KiB) {
      EXPECT_EQ(u, shard_class_size(n)) << "malloc(" << n << ")";
    }
    // exact: asking for the usable size gives the same block size...
    void* q = opaque(std::malloc(u));
    EXPECT_EQ(usable(q), u) << "malloc(" << u << ")";
    std::free(q);
    // ...and realloc to it keeps the block in place (checked builds: realloc
    // always moves the block, the old one goes to the quarantine; realloc
    // to 0 frees it).
    void* r = std::realloc(p, u);
    if (!library_is_checked()) {
      EXPECT_EQ(r, p) << "realloc(p, malloc_usable_size(p)) moved, n=" << n;
    }
    if (r != nullptr) {
      EXPECT_EQ(usable(r), u) << "realloc(p, malloc_usable_size(p)), n=" << n;
    }
    std::free(r);
  }
}

TEST(MallocUsableSize, WritingAllUsableBytesIsSafe) {
  const size_t sizes[] = {1,    7,    8,    9,     24,    100,    250,    1000,      1025,
                          3000, 8192, 8193, 20000, 65536, 131072, 131073, 600 * KiB, 3 * MiB + 5};
  for (size_t n : sizes) {
    SCOPED_TRACE("size " + std::to_string(n));
    const int count = n >= 128 * KiB ? 3 : n > 8192 ? 16 : 200;
    std::vector<void*> ps;
    for (int i = 0; i < count; ++i) {
      void* p = opaque(std::malloc(n));
      ASSERT_NE(p, nullptr);
      fill(p, usable(p), unsigned(i));
      ps.push_back(p);
    }
    // Blocks of one size do not overlap, usable bytes included.
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    for (void* p : ps)
      ranges.push_back(
          {reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + usable(p)});
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    for (int i = 0; i < count; ++i)
      EXPECT_EQ(check(ps[i], usable(ps[i]), unsigned(i)), SIZE_MAX) << "block " << i;
    for (void* p : ps) std::free(p);
  }
}

// ---------------------------------------------------------------------------
// calloc

TEST(Calloc, ZeroSizesGiveUniqueBlocks) {
  void* a = opaque(std::calloc(0, 0));
  void* b = opaque(std::calloc(0, 16));
  void* c = opaque(std::calloc(16, 0));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  std::free(a);
  std::free(b);
  std::free(c);
}

TEST(Calloc, ZeroesFreshAndReusedMemory) {
  for (size_t n : {size_t{1}, size_t{24}, size_t{100}, size_t{1000}, size_t{8000}, size_t{20000},
                   size_t{130000}, 2 * MiB + 3}) {
    SCOPED_TRACE("size " + std::to_string(n));
    const int count = n >= MiB ? 3 : 50;
    for (int round = 0; round < 2; ++round) {
      std::vector<void*> ps;
      for (int i = 0; i < count; ++i) {
        void* p = opaque(std::malloc(n));
        ASSERT_NE(p, nullptr);
        std::memset(p, 0xab, usable(p));
        ps.push_back(p);
      }
      for (void* p : ps) std::free(p);
      for (int i = 0; i < count; ++i) {
        void* p = opaque(std::calloc(1, n));
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(all_zero(p, n));
        ps[size_t(i)] = p;
      }
      for (void* p : ps) std::free(p);
    }
  }
}

TEST(Calloc, OverflowFailsWithENOMEM) {
  struct Case {
    size_t n, size;
  };
  const Case cases[] = {
      {SIZE_MAX, 2},
      {2, SIZE_MAX},
      {SIZE_MAX / 2 + 1, 2},               // wraps to 0
      {size_t{1} << 32, size_t{1} << 32},  // wraps to 0
      {(size_t{1} << 32) + 1, size_t{1} << 32},
      {3, SIZE_MAX / 3 + 1},
      {kPtrdiffMax / 2 + 1, 2},  // no wrap, but > PTRDIFF_MAX
      {1, kPtrdiffMax + 1},
  };
  for (const Case& c : cases) {
    errno = 0;
    EXPECT_EQ(opaque(std::calloc(c.n, c.size)), nullptr)
        << "calloc(" << c.n << ", " << c.size << ")";
    EXPECT_EQ(errno, ENOMEM) << "calloc(" << c.n << ", " << c.size << ")";
  }
}

// ---------------------------------------------------------------------------
// realloc / reallocarray

TEST(Realloc, NullActsAsMalloc) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{300000}, 3 * MiB}) {
    void* p = std::realloc(nullptr, n);
    ASSERT_NE(p, nullptr) << "realloc(NULL, " << n << ")";
    EXPECT_GE(usable(p), n);
    fill(p, n, 3);
    EXPECT_EQ(check(p, n, 3), SIZE_MAX);
    std::free(p);
  }
  errno = 0;
  EXPECT_EQ(std::realloc(nullptr, hide(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// glibc: realloc(p, 0) frees p and returns NULL. That p is really freed is
// checked by DeathTest.FreeAfterReallocZeroIsDoubleFree.
TEST(Realloc, ZeroFreesAndReturnsNull) {
  for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, size_t{300000}}) {
    void* p = opaque(std::malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(std::realloc(p, 0), nullptr) << "realloc(p, 0) with a " << n << "-byte block";
  }
}

TEST(Realloc, PreservesContentsAcrossSizeClasses) {
  const size_t steps[] = {1,      8,      24,     100,     1000,        1024,   1025, 8192, 8193,
                          100000, 131072, 131073, 2 * MiB, 5 * MiB + 7, 700000, 9000, 64,   3};
  size_t have = 0;
  void* p = nullptr;
  for (size_t n : steps) {
    void* q = std::realloc(p, n);
    ASSERT_NE(q, nullptr) << "realloc to " << n;
    const size_t keep = std::min(have, n);
    EXPECT_EQ(check(q, keep, 11), SIZE_MAX) << "realloc " << have << " -> " << n;
    EXPECT_GE(usable(q), n);
    fill(q, n, 11);
    p = q;
    have = n;
  }
  std::free(p);
}

TEST(Realloc, OfAlignedBlockPreservesContents) {
  void* p = nullptr;
  ASSERT_EQ(posix_memalign(&p, 256, 200), 0);
  fill(p, 200, 5);
  void* q = std::realloc(p, 50000);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(check(q, 200, 5), SIZE_MAX);
  void* r = std::realloc(q, 10);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(check(r, 10, 5), SIZE_MAX);
  std::free(r);
}

TEST(Realloc, FailureKeepsTheBlock) {
  void* p = opaque(std::malloc(500));
  ASSERT_NE(p, nullptr);
  fill(p, 500, 9);
  for (size_t n : {kPtrdiffMax + 1, SIZE_MAX, SIZE_MAX - 15}) {
    errno = 0;
    EXPECT_EQ(std::realloc(opaque(p), n), nullptr) << "realloc(p, " << n << ")";
    EXPECT_EQ(errno, ENOMEM);
  }
  EXPECT_EQ(check(p, 500, 9), SIZE_MAX);
  std::free(p);
}

TEST(Reallocarray, BehavesAsReallocOfTheProduct) {
  int* a = static_cast<int*>(reallocarray(nullptr, 10, sizeof(int)));
  ASSERT_NE(a, nullptr);
  EXPECT_GE(usable(a), 10 * sizeof(int));
  for (int i = 0; i < 10; ++i) a[i] = i * i;
  a = static_cast<int*>(reallocarray(a, 50000, sizeof(int)));
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a[i], i * i);
  EXPECT_GE(usable(a), 50000 * sizeof(int));
  std::free(a);
}

TEST(Reallocarray, OverflowFailsWithENOMEMAndKeepsTheBlock) {
  void* p = opaque(std::malloc(64));
  ASSERT_NE(p, nullptr);
  fill(p, 64, 4);
  struct Case {
    size_t n, size;
  };
  for (Case c : {Case{SIZE_MAX, 2}, Case{size_t{1} << 32, size_t{1} << 32},
                 Case{SIZE_MAX / 2 + 1, 2}, Case{kPtrdiffMax / 4 + 1, 4}}) {
    errno = 0;
    EXPECT_EQ(reallocarray(opaque(p), c.n, c.size), nullptr)
        << "reallocarray(p, " << c.n << ", " << c.size << ")";
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(reallocarray(nullptr, c.n, c.size), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  EXPECT_EQ(check(p, 64, 4), SIZE_MAX);
  std::free(p);
}

// ---------------------------------------------------------------------------
// Aligned allocation

std::vector<size_t> pow2_alignments(size_t from, size_t to) {
  std::vector<size_t> v;
  for (size_t a = from; a <= to; a <<= 1) v.push_back(a);
  return v;
}

// Size 0 has tests of its own (AlignedZeroSize below).
const size_t kAlignedSizes[] = {1, 8, 100, 4096, 20000, 200000};

TEST(PosixMemalign, EveryPowerOfTwoAlignment) {
  for (size_t align : pow2_alignments(sizeof(void*), 4 * MiB)) {
    for (size_t n : kAlignedSizes) {
      void* p = reinterpret_cast<void*>(uintptr_t{0x1234});
      ASSERT_EQ(posix_memalign(&p, align, n), 0) << "align " << align << " size " << n;
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(is_aligned(p, align)) << "align " << align << " size " << n << " -> " << p;
      EXPECT_GE(usable(p), n);
      fill(p, usable(p), 2);  // all usable bytes are ours
      EXPECT_EQ(check(p, usable(p), 2), SIZE_MAX);
      std::free(p);
    }
  }
  void* p = nullptr;  // the 64 MiB alignment shard_malloc_aligned guarantees
  ASSERT_EQ(posix_memalign(&p, 64 * MiB, 100), 0);
  EXPECT_TRUE(is_aligned(p, 64 * MiB));
  std::free(p);
}

TEST(PosixMemalign, BadAlignmentIsEINVALAndLeavesOutputUntouched) {
  for (size_t align :
       {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{3}, size_t{12}, size_t{24}, size_t{48},
        size_t{100}, size_t{4097}, (size_t{1} << 20) + 8, SIZE_MAX}) {
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdeadbeef});
    void* p = sentinel;
    errno = 12345;
    EXPECT_EQ(posix_memalign(&p, align, 64), EINVAL) << "align " << align;
    EXPECT_EQ(p, sentinel) << "align " << align;
    EXPECT_EQ(errno, 12345) << "posix_memalign must not set errno (align " << align << ")";
  }
}

TEST(PosixMemalign, TooLargeIsENOMEMAndLeavesOutputUntouched) {
  for (size_t n : {SIZE_MAX, kPtrdiffMax + 1, SIZE_MAX - 4095}) {
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdeadbeef});
    void* p = sentinel;
    EXPECT_EQ(posix_memalign(&p, 64, n), ENOMEM) << "size " << n;
    EXPECT_EQ(p, sentinel);
  }
}

TEST(AlignedAlloc, PowerOfTwoAlignments) {
  for (size_t align : pow2_alignments(1, 2 * MiB)) {
    for (size_t n : kAlignedSizes) {
      void* p = aligned_alloc(align, n);  // C17: size need not be a multiple of align
      ASSERT_NE(p, nullptr) << "align " << align << " size " << n;
      EXPECT_TRUE(is_aligned(p, align)) << "align " << align << " size " << n << " -> " << p;
      EXPECT_GE(usable(p), n);
      fill(p, usable(p), 1);
      std::free(p);
    }
  }
}

TEST(AlignedAlloc, NonPowerOfTwoIsEINVAL) {
  for (size_t align : {size_t{3}, size_t{24}, size_t{48}, size_t{100}, size_t{4097}}) {
    errno = 0;
    EXPECT_EQ(aligned_alloc(align, 64), nullptr) << "align " << align;
    EXPECT_EQ(errno, EINVAL) << "align " << align;
  }
  errno = 0;
  EXPECT_EQ(aligned_alloc(64, hide(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Memalign, PowerOfTwoAlignments) {
  for (size_t align : pow2_alignments(1, 2 * MiB)) {
    for (size_t n : kAlignedSizes) {
      void* p = memalign(align, n);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(is_aligned(p, align)) << "align " << align << " size " << n << " -> " << p;
      EXPECT_GE(usable(p), n);
      fill(p, usable(p), 1);
      std::free(p);
    }
  }
}

// glibc rounds other alignments up to the next power of two.
TEST(Memalign, OtherAlignmentsRoundUp) {
  struct Case {
    size_t align, expect;
  };
  for (Case c : {Case{0, 1}, Case{3, 4}, Case{24, 32}, Case{100, 128}, Case{1000, 1024},
                 Case{4097, 8192}, Case{(size_t{1} << 20) + 1, size_t{1} << 21}}) {
    void* p = memalign(c.align, 100);
    ASSERT_NE(p, nullptr) << "memalign(" << c.align << ")";
    EXPECT_TRUE(is_aligned(p, c.expect)) << "memalign(" << c.align << ") = " << p;
    std::free(p);
  }
  errno = 0;
  EXPECT_EQ(memalign(64, hide(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// Huge alignments, errno as glibc 2.36 sets it (checked against the system
// glibc; its tst-memalign, tst-posix_memalign and tst-malloc-too-large):
// an alignment above SIZE_MAX / 2 + 1 = 2^63 can never be a power of two:
// EINVAL from every entry point (memalign(-1, pagesize) is glibc's BZ #16038
// test). 2^63 itself, and 2^62 + 1 (memalign rounds it up to 2^63), are
// valid alignments that cannot be served: ENOMEM, as a size that cannot be.
constexpr size_t kHalf = SIZE_MAX / 2 + 1;  // 2^63
const size_t kImpossibleAlignments[] = {SIZE_MAX, kHalf + 1, kHalf + kPage, SIZE_MAX - kPage + 1};
const size_t kUnservableAlignments[] = {kHalf, (size_t{1} << 62) + 1, kHalf - 1};

TEST(HugeAlignment, MemalignAboveTwoToThe63IsEINVAL) {
  auto libc_memalign = sym<void* (*)(size_t, size_t)>("__libc_memalign");
  ASSERT_NE(libc_memalign, nullptr);
  for (size_t a : kImpossibleAlignments) {
    for (size_t n : {size_t{0}, size_t{16}, kPage}) {
      errno = 0;
      EXPECT_EQ(memalign(hide(a), hide(n)), nullptr) << "memalign(" << a << ", " << n << ")";
      EXPECT_EQ(errno, EINVAL) << "memalign(" << a << ", " << n << ")";
      errno = 0;
      EXPECT_EQ(libc_memalign(hide(a), hide(n)), nullptr)
          << "__libc_memalign(" << a << ", " << n << ")";
      EXPECT_EQ(errno, EINVAL) << "__libc_memalign(" << a << ", " << n << ")";
    }
  }
  for (size_t a : kUnservableAlignments) {
    errno = 0;
    EXPECT_EQ(memalign(hide(a), 16), nullptr) << "memalign(" << a << ", 16)";
    EXPECT_EQ(errno, ENOMEM) << "memalign(" << a << ", 16)";
  }
  // Huge sizes stay ENOMEM whatever the alignment (BZ #15857).
  for (size_t a : {size_t{8}, size_t{16}, kPage}) {
    errno = 0;
    EXPECT_EQ(memalign(hide(a), hide(SIZE_MAX - kPage + 1)), nullptr);
    EXPECT_EQ(errno, ENOMEM) << "memalign(" << a << ", -pagesize)";
  }
}

TEST(HugeAlignment, AlignedAllocAboveTwoToThe63IsEINVAL) {
  for (size_t a : kImpossibleAlignments) {
    errno = 0;
    EXPECT_EQ(aligned_alloc(hide(a), 16), nullptr) << "aligned_alloc(" << a << ", 16)";
    EXPECT_EQ(errno, EINVAL) << "aligned_alloc(" << a << ", 16)";
  }
  errno = 0;
  EXPECT_EQ(aligned_alloc(hide(kHalf), 16), nullptr);
  EXPECT_EQ(errno, ENOMEM) << "aligned_alloc(2^63, 16)";
}

TEST(HugeAlignment, PosixMemalignAboveTwoToThe63IsEINVAL) {
  void* const sentinel = reinterpret_cast<void*>(uintptr_t{0x5678});
  for (size_t a : kImpossibleAlignments) {
    void* p = sentinel;
    errno = 4321;
    EXPECT_EQ(posix_memalign(&p, hide(a), 16), EINVAL) << "posix_memalign(" << a << ", 16)";
    EXPECT_EQ(p, sentinel);
    EXPECT_EQ(errno, 4321) << "EINVAL leaves errno alone (glibc)";
  }
  void* p = sentinel;
  EXPECT_EQ(posix_memalign(&p, hide(kHalf), 16), ENOMEM) << "posix_memalign(2^63, 16)";
  EXPECT_EQ(p, sentinel);
  EXPECT_EQ(posix_memalign(&p, kPage, hide(SIZE_MAX - kPage + 1)), ENOMEM)
      << "posix_memalign(pagesize, -pagesize)";
  EXPECT_EQ(p, sentinel);
}

TEST(HugeAlignment, VallocAndPvallocOfMinusPagesizeAreENOMEM) {
  for (size_t n : {SIZE_MAX, SIZE_MAX - kPage + 1, kPtrdiffMax}) {
    errno = 0;
    EXPECT_EQ(valloc(hide(n)), nullptr) << "valloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "valloc(" << n << ")";
    errno = 0;
    EXPECT_EQ(pvalloc(hide(n)), nullptr) << "pvalloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "pvalloc(" << n << ")";
  }
}

TEST(Valloc, PageAligned) {
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, size_t{4097}, size_t{100000}, 3 * MiB}) {
    void* p = valloc(n);
    ASSERT_NE(p, nullptr) << "valloc(" << n << ")";
    EXPECT_TRUE(is_aligned(p, kPage)) << "valloc(" << n << ") = " << p;
    EXPECT_GE(usable(p), n);
    fill(p, usable(p), 7);
    std::free(p);
  }
  errno = 0;
  EXPECT_EQ(valloc(hide(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Pvalloc, PageAlignedWholePages) {
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, size_t{4097}, size_t{100000}, 3 * MiB}) {
    void* p = pvalloc(n);
    ASSERT_NE(p, nullptr) << "pvalloc(" << n << ")";
    EXPECT_TRUE(is_aligned(p, kPage)) << "pvalloc(" << n << ") = " << p;
    const size_t pages = n == 0 ? kPage : (n + kPage - 1) / kPage * kPage;
    EXPECT_GE(usable(p), pages) << "pvalloc(" << n << ")";
    fill(p, usable(p), 8);
    std::free(p);
  }
  for (size_t n : {SIZE_MAX, SIZE_MAX - 4094, kPtrdiffMax + 1}) {
    errno = 0;
    EXPECT_EQ(pvalloc(n), nullptr) << "pvalloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM);
  }
}

// Interior pointers handed out by aligned allocation: free and usable size work on them.
TEST(Aligned, ManySmallAlignedBlocksMixedWithPlainOnes) {
  std::vector<void*> ps;
  for (int i = 0; i < 2000; ++i) {
    const size_t align = size_t{16} << (i % 6);  // 16..512
    const size_t n = size_t(1 + (i * 37) % 300);
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, align, n), 0);
    ASSERT_TRUE(is_aligned(p, align));
    fill(p, n, unsigned(i));
    ps.push_back(p);
    ps.push_back(opaque(std::malloc(n)));
    fill(ps.back(), n, unsigned(i) + 1);
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    const size_t n = size_t(1 + (int(i / 2) * 37) % 300);
    EXPECT_EQ(check(ps[i], n, unsigned(i / 2) + unsigned(i % 2)), SIZE_MAX) << "block " << i;
  }
  for (void* p : ps) std::free(p);
}

// ---------------------------------------------------------------------------
// Aligned allocation of size 0: a unique, aligned block that is ours, from
// every aligned entry point and every alignment. Run in a child process (a
// crash or a corrupted heap there is reported, not fatal to the test binary);
// the child prints what is wrong and exits 1, or exits 0.

[[noreturn]] void child_exit(int bad) {
  std::fflush(stderr);
  std::_Exit(bad == 0 ? 0 : 1);
}

void zero_size_every_entry_point() {
  int bad = 0;
  std::vector<void*> live;
  auto note = [&](const char* fn, size_t align, void* p) {
    if (p == nullptr || !is_aligned(p, align) ||
        std::find(live.begin(), live.end(), p) != live.end()) {
      std::fprintf(stderr, "%s(align %zu, size 0) = %p: %s\n", fn, align, p,
                   p == nullptr            ? "NULL"
                   : !is_aligned(p, align) ? "misaligned"
                                           : "same as a live block");
      ++bad;
      return;
    }
    live.push_back(p);
    live.push_back(opaque(std::malloc(8)));  // neighbours, so that aliasing shows
  };
  for (size_t align = 8; align <= 4 * MiB; align <<= 1) {
    for (int rep = 0; rep < 3; ++rep) {
      void* p = nullptr;
      if (posix_memalign(&p, align, 0) != 0) p = nullptr;
      note("posix_memalign", align, p);
      note("aligned_alloc", align, aligned_alloc(align, 0));
      note("memalign", align, memalign(align, 0));
      note("operator new", align, ::operator new(0, std::align_val_t(align), std::nothrow));
      note("operator new[]", align, ::operator new[](0, std::align_val_t(align), std::nothrow));
    }
  }
  for (void* p : live) std::free(p);
  child_exit(bad);
}

// Every other small block is free: posix_memalign(16, 0) must take a free
// one, never the address of a live neighbour. (This was a trap while an
// 8-byte class made every other block only 8-aligned.)
void zero_size_with_every_other_block_free() {
  constexpr int kN = 4000;
  std::vector<char*> live, freed;
  live.reserve(3 * kN);
  freed.reserve(kN);
  for (int i = 0; i < kN; ++i) {
    char* q = static_cast<char*>(opaque(std::malloc(8)));
    (i % 2 == 0 ? live : freed).push_back(q);
  }
  for (char* q : freed) std::free(q);
  for (;;) {  // use up the never-used blocks: from then on, allocation reuses the freed ones
    char* q = static_cast<char*>(opaque(std::malloc(8)));
    if (std::find(freed.begin(), freed.end(), q) != freed.end()) {
      std::free(q);
      break;
    }
    live.push_back(q);
  }
  void* p = nullptr;
  int bad = 0;
  if (posix_memalign(&p, 16, 0) != 0 || p == nullptr) {
    std::fprintf(stderr, "posix_memalign(16, 0) failed\n");
    ++bad;
  } else if (std::find(live.begin(), live.end(), static_cast<char*>(p)) != live.end()) {
    std::fprintf(stderr, "posix_memalign(&p, 16, 0) = %p: the address of a live malloc(8) block\n",
                 p);
    ++bad;
  }
  child_exit(bad);
}

// The alignment of a segment (512 KiB) with size 0. Prints each call first,
// so that a crash names it; expects a clean exit 0.
void zero_size_at_segment_alignment() {
  int bad = 0;
  for (size_t align : {size_t{256} * KiB, size_t{512} * KiB, size_t{1} * MiB}) {
    std::fprintf(stderr, "posix_memalign(align %zu, size 0) and free...\n",
                 align);  // names a crash
    void* p = nullptr;
    if (posix_memalign(&p, align, 0) != 0 || p == nullptr || !is_aligned(p, align)) {
      std::fprintf(stderr, "posix_memalign(align %zu, 0) = %p\n", align, p);
      ++bad;
      continue;
    }
    (void)usable(p);
    std::free(p);
  }
  child_exit(bad);
}

class AlignedZeroSize : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(AlignedZeroSize, EveryEntryPointAndAlignment) {
  EXPECT_EXIT(zero_size_every_entry_point(), ::testing::ExitedWithCode(0), "");
}
TEST_F(AlignedZeroSize, DoesNotAliasALiveBlock) {
  EXPECT_EXIT(zero_size_with_every_other_block_free(), ::testing::ExitedWithCode(0), "");
}
TEST_F(AlignedZeroSize, SegmentAlignment) {
  EXPECT_EXIT(zero_size_at_segment_alignment(), ::testing::ExitedWithCode(0), "");
}

// ---------------------------------------------------------------------------
// glibc-internal names and libc functions that allocate

TEST(LibcAliases, InternalNamesAreShardalloc) {
  auto libc_malloc = sym<void* (*)(size_t)>("__libc_malloc");
  auto libc_free = sym<void (*)(void*)>("__libc_free");
  auto libc_calloc = sym<void* (*)(size_t, size_t)>("__libc_calloc");
  auto libc_realloc = sym<void* (*)(void*, size_t)>("__libc_realloc");
  auto libc_memalign = sym<void* (*)(size_t, size_t)>("__libc_memalign");
  auto libc_valloc = sym<void* (*)(size_t)>("__libc_valloc");
  auto libc_pvalloc = sym<void* (*)(size_t)>("__libc_pvalloc");
  auto posix_memalign2 = sym<int (*)(void**, size_t, size_t)>("__posix_memalign");
  auto cfree = sym<void (*)(void*)>("cfree");
  ASSERT_TRUE(libc_malloc && libc_free && libc_calloc && libc_realloc && libc_memalign &&
              libc_valloc && libc_pvalloc && posix_memalign2 && cfree);

  void* a = libc_malloc(100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(usable(a), shard_class_size(100));
  a = libc_realloc(a, 5000);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(usable(a), shard_class_size(5000));
  libc_free(a);

  auto* c = static_cast<unsigned char*>(libc_calloc(10, 30));
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(all_zero(c, 300));
  EXPECT_EQ(usable(c), shard_class_size(300));
  cfree(c);

  void* m = libc_memalign(512, 100);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(is_aligned(m, 512));
  std::free(m);
  void* v = libc_valloc(10);
  ASSERT_NE(v, nullptr);
  EXPECT_TRUE(is_aligned(v, kPage));
  std::free(v);
  void* pv = libc_pvalloc(10);
  ASSERT_NE(pv, nullptr);
  EXPECT_TRUE(is_aligned(pv, kPage));
  EXPECT_GE(usable(pv), kPage);
  std::free(pv);
  void* pm = reinterpret_cast<void*>(uintptr_t{1});
  EXPECT_EQ(posix_memalign2(&pm, 3, 10), EINVAL);
  EXPECT_EQ(pm, reinterpret_cast<void*>(uintptr_t{1}));
  ASSERT_EQ(posix_memalign2(&pm, 1024, 10), 0);
  EXPECT_TRUE(is_aligned(pm, 1024));
  std::free(pm);
  // And shardalloc frees what they hand out, in either direction.
  void* x = opaque(std::malloc(40));
  libc_free(x);
}

// Memory glibc allocates on the program's behalf comes from our heap: free of
// it works (a foreign pointer would abort) and its usable size is our class.
TEST(LibcAllocations, StrdupStrndupAndFriends) {
  const char* text = "the quick brown fox jumps over the lazy dog";
  char* d = strdup(text);
  ASSERT_NE(d, nullptr);
  EXPECT_STREQ(d, text);
  EXPECT_EQ(usable(d), shard_class_size(std::strlen(text) + 1));
  std::free(d);

  char* nd = strndup(text, 9);
  ASSERT_NE(nd, nullptr);
  EXPECT_STREQ(nd, "the quick");
  EXPECT_EQ(usable(nd), shard_class_size(10));
  std::free(nd);

  std::string big(100000, 'z');
  char* bd = strdup(big.c_str());
  ASSERT_NE(bd, nullptr);
  EXPECT_EQ(std::strlen(bd), big.size());
  EXPECT_GE(usable(bd), big.size() + 1);
  std::free(bd);

  char* as = nullptr;
  ASSERT_GT(asprintf(&as, "%s-%d-%s", "abc", 12345, text), 0);
  EXPECT_EQ(std::string(as), std::string("abc-12345-") + text);
  EXPECT_GE(usable(as), std::strlen(as) + 1);
  std::free(as);

  char* buf = nullptr;
  size_t len = 0;
  FILE* ms = open_memstream(&buf, &len);
  ASSERT_NE(ms, nullptr);
  for (int i = 0; i < 5000; ++i) std::fprintf(ms, "line %d\n", i);
  std::fclose(ms);
  ASSERT_NE(buf, nullptr);
  EXPECT_GE(len, 5000u * 6);
  EXPECT_GE(usable(buf), len + 1);
  std::free(buf);

  char* cwd = getcwd(nullptr, 0);
  ASSERT_NE(cwd, nullptr);
  EXPECT_GE(usable(cwd), std::strlen(cwd) + 1);
  std::free(cwd);

  char* rp = realpath("/", nullptr);
  ASSERT_NE(rp, nullptr);
  EXPECT_STREQ(rp, "/");
  EXPECT_EQ(usable(rp), shard_class_size(2));
  std::free(rp);

  // stdio's own buffers: fopen / fclose allocate and free inside glibc.
  for (int i = 0; i < 50; ++i) {
    FILE* f = std::fopen("/proc/self/status", "r");
    ASSERT_NE(f, nullptr);
    char line[256];
    EXPECT_NE(std::fgets(line, sizeof line, f), nullptr);
    std::fclose(f);
  }
}

// ---------------------------------------------------------------------------
// operator new / delete

struct alignas(64) Over64 {
  unsigned char b[64];
};
struct alignas(4096) OverPage {
  unsigned char b[100];
};

TEST(OperatorNew, EveryFormAllocatesFromShardalloc) {
  const std::nothrow_t& nt = std::nothrow;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{200000}}) {
    SCOPED_TRACE("size " + std::to_string(n));
    void* p;
    p = ::operator new(n);
    EXPECT_GE(usable(p), n);
    fill(p, n, 1);
    ::operator delete(p);
    p = ::operator new[](n);
    EXPECT_GE(usable(p), n);
    ::operator delete[](p);
    p = ::operator new(n);
    ::operator delete(p, n);  // sized
    p = ::operator new[](n);
    ::operator delete[](p, n);
    p = ::operator new(n, nt);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(usable(p), n);
    ::operator delete(p, nt);
    p = ::operator new[](n, nt);
    ASSERT_NE(p, nullptr);
    ::operator delete[](p, nt);
    for (size_t a : {size_t{8}, size_t{16}, size_t{32}, size_t{64}, size_t{256}, size_t{4096},
                     size_t{65536}, size_t{1} << 20}) {
      if (n == 0) continue;  // aligned size 0: AlignedZeroSize.*
      SCOPED_TRACE("align " + std::to_string(a));
      const auto al = std::align_val_t(a);
      p = ::operator new(n, al);
      EXPECT_TRUE(is_aligned(p, a)) << p;
      EXPECT_GE(usable(p), n);
      fill(p, n, 2);
      ::operator delete(p, al);
      p = ::operator new[](n, al);
      EXPECT_TRUE(is_aligned(p, a)) << p;
      ::operator delete[](p, al);
      p = ::operator new(n, al);
      ::operator delete(p, n, al);  // sized aligned
      p = ::operator new[](n, al);
      ::operator delete[](p, n, al);
      p = ::operator new(n, al, nt);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(is_aligned(p, a)) << p;
      ::operator delete(p, al, nt);
      p = ::operator new[](n, al, nt);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(is_aligned(p, a)) << p;
      ::operator delete[](p, al, nt);
    }
  }
}

TEST(OperatorNew, NewExpressions) {
  auto* i = opaque(new int(42));
  EXPECT_EQ(*i, 42);
  EXPECT_EQ(usable(i), shard_class_size(sizeof(int)));
  delete i;  // sized delete (-fsized-deallocation is on in C++14 and later)
  auto* arr = opaque(new long[1000]());
  EXPECT_GE(usable(arr), 1000 * sizeof(long));
  EXPECT_TRUE(all_zero(arr, 1000 * sizeof(long)));
  delete[] arr;
  auto* o = opaque(new Over64);  // operator new(size_t, align_val_t)
  EXPECT_TRUE(is_aligned(o, 64));
  delete o;
  auto* oa = opaque(new Over64[33]);
  EXPECT_TRUE(is_aligned(oa, 64));
  delete[] oa;
  auto* pg = opaque(new OverPage[3]);
  EXPECT_TRUE(is_aligned(pg, 4096));
  delete[] pg;
  auto* np = opaque(new (std::nothrow) Over64[4]);
  ASSERT_NE(np, nullptr);
  EXPECT_TRUE(is_aligned(np, 64));
  delete[] np;
  auto* ni = opaque(new (std::nothrow) double[7]);
  ASSERT_NE(ni, nullptr);
  delete[] ni;
  // Containers allocate through the replaced operator new.
  std::map<std::string, std::vector<int>> m;
  for (int k = 0; k < 2000; ++k)
    m["key-" + std::to_string(k) + std::string(size_t(k % 50), '#')].assign(size_t(k % 17), k);
  long total = 0;
  for (auto& [key, v] : m) {
    for (int x : v) total += x;
    EXPECT_GE(usable(const_cast<char*>(key.data())), key.size() + 1)
        << "std::string not in our heap?";
  }
  long expect = 0;
  for (int k = 0; k < 2000; ++k) expect += long(k % 17) * k;
  EXPECT_EQ(total, expect);
}

int g_handler_calls = 0;
void handler_gives_up_after_three() {
  if (++g_handler_calls == 3) std::set_new_handler(nullptr);
}
struct MyBadAlloc : std::bad_alloc {};
void handler_throws() {
  ++g_handler_calls;
  throw MyBadAlloc();
}

const size_t kImpossible[] = {SIZE_MAX, kPtrdiffMax + 1, SIZE_MAX - 4096};

TEST(OperatorNew, ImpossibleSizeThrowsBadAlloc) {
  std::set_new_handler(nullptr);
  for (size_t n : kImpossible) {
    EXPECT_THROW(::operator delete(::operator new(n)), std::bad_alloc) << n;
    EXPECT_THROW(::operator delete[](::operator new[](n)), std::bad_alloc) << n;
    EXPECT_THROW(::operator delete(::operator new(n, std::align_val_t(64)), std::align_val_t(64)),
                 std::bad_alloc);
    EXPECT_THROW(
        ::operator delete[](::operator new[](n, std::align_val_t(4096)), std::align_val_t(4096)),
        std::bad_alloc);
  }
  // An impossible alignment too.
  EXPECT_THROW(::operator delete(::operator new(64, std::align_val_t(size_t{1} << 63)),
                                 std::align_val_t(size_t{1} << 63)),
               std::bad_alloc);
}

TEST(OperatorNew, NewHandlerIsCalledUntilItGivesUp) {
  for (int form = 0; form < 4; ++form) {
    SCOPED_TRACE("form " + std::to_string(form));
    g_handler_calls = 0;
    std::set_new_handler(handler_gives_up_after_three);
    try {
      void* p = nullptr;
      switch (form) {
        case 0:
          p = ::operator new(SIZE_MAX);
          break;
        case 1:
          p = ::operator new[](SIZE_MAX);
          break;
        case 2:
          p = ::operator new(SIZE_MAX, std::align_val_t(128));
          break;
        default:
          p = ::operator new[](SIZE_MAX, std::align_val_t(128));
          break;
      }
      ADD_FAILURE() << "no exception, got " << p;
    } catch (const std::bad_alloc&) {
    }
    EXPECT_EQ(g_handler_calls, 3);
    EXPECT_EQ(std::get_new_handler(), nullptr);
  }
}

TEST(OperatorNew, ExceptionFromNewHandlerPropagates) {
  g_handler_calls = 0;
  std::set_new_handler(handler_throws);
  EXPECT_THROW(::operator delete(::operator new(SIZE_MAX)), MyBadAlloc);
  EXPECT_THROW(
      ::operator delete[](::operator new[](SIZE_MAX, std::align_val_t(64)), std::align_val_t(64)),
      MyBadAlloc);
  EXPECT_EQ(g_handler_calls, 2);
  std::set_new_handler(nullptr);
}

TEST(OperatorNew, NothrowReturnsNullptr) {
  for (int with_handler = 0; with_handler < 3; ++with_handler) {
    SCOPED_TRACE("handler " + std::to_string(with_handler));
    for (size_t n : kImpossible) {
      for (int form = 0; form < 4; ++form) {
        g_handler_calls = 0;
        std::set_new_handler(with_handler == 0   ? nullptr
                             : with_handler == 1 ? handler_gives_up_after_three
                                                 : handler_throws);
        void* p = reinterpret_cast<void*>(1);
        switch (form) {
          case 0:
            p = ::operator new(n, std::nothrow);
            break;
          case 1:
            p = ::operator new[](n, std::nothrow);
            break;
          case 2:
            p = ::operator new(n, std::align_val_t(64), std::nothrow);
            break;
          default:
            p = ::operator new[](n, std::align_val_t(64), std::nothrow);
            break;
        }
        EXPECT_EQ(p, nullptr) << "form " << form << " size " << n;
        EXPECT_EQ(g_handler_calls, with_handler == 0   ? 0
                                   : with_handler == 1 ? 3
                                                       : 1)
            << "form " << form;
      }
    }
  }
  std::set_new_handler(nullptr);
  // new (std::nothrow) T[n] of an impossible size.
  volatile size_t huge = kPtrdiffMax / 2;
  char* arr = new (std::nothrow) char[huge];
  EXPECT_EQ(arr, nullptr);
}

// ---------------------------------------------------------------------------
// Threads: blocks freed by a thread other than the one that allocated them.

TEST(Threads, CrossThreadFreeOfEveryKind) {
  constexpr int kBlocks = 3000;
  std::vector<void*> ps(kBlocks);
  std::vector<size_t> sizes(kBlocks);
  std::thread producer([&] {
    for (int i = 0; i < kBlocks; ++i) {
      const size_t n = size_t(i % 3 == 0   ? 1 + i % 900
                              : i % 3 == 1 ? 1000 + i * 7 % 120000
                                           : 140000 + i % 5000);
      sizes[size_t(i)] = n;
      if (i % 5 == 0) {
        void* p = nullptr;
        ASSERT_EQ(posix_memalign(&p, size_t{32} << (i % 4), n), 0);
        ps[size_t(i)] = p;
      } else if (i % 5 == 1) {
        ps[size_t(i)] = ::operator new(n);
      } else {
        ps[size_t(i)] = std::malloc(n);
      }
      fill(ps[size_t(i)], std::min<size_t>(n, 64), unsigned(i));
    }
  });
  producer.join();
  std::thread consumer([&] {
    for (int i = 0; i < kBlocks; ++i) {
      EXPECT_EQ(check(ps[size_t(i)], std::min<size_t>(sizes[size_t(i)], 64), unsigned(i)),
                SIZE_MAX);
      if (i % 5 == 1)
        ::operator delete(ps[size_t(i)]);
      else
        std::free(ps[size_t(i)]);
    }
  });
  consumer.join();
  // The abandoned heap's pages are reused by later threads.
  std::thread again([] {
    for (int i = 0; i < 10000; ++i) std::free(opaque(std::malloc(size_t(1 + i % 2000))));
  });
  again.join();
}

// ---------------------------------------------------------------------------
// Invalid frees: one line on stderr containing "shardalloc:", then SIGABRT.

class DeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// The whole of stderr: exactly one line, the fatal one.
constexpr const char* kOneFatalLine = "^shardalloc: [^\n]*\n$";

#define EXPECT_SHARD_ABORT(stmt) \
  EXPECT_EXIT(stmt, ::testing::KilledBySignal(SIGABRT), kOneFatalLine)

void* launder(void* p) {
  void* volatile v = p;
  return v;
}

void free_stack_pointer() {
  uint64_t on_stack[4] = {1, 2, 3, 4};
  std::free(launder(on_stack));
}
void free_global_pointer() {
  static char global[64];
  std::free(launder(global));
}
void free_mmap_pointer() {
  void* m = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::free(launder(static_cast<char*>(m) + 4096));
}
void free_interior(size_t n, size_t offset) {
  char* p = static_cast<char*>(launder(std::malloc(n)));
  std::free(launder(p + offset));
}
void double_free(size_t n) {
  void* p = launder(std::malloc(n));
  std::free(p);
  std::free(p);
}
void double_free_aligned(size_t align, size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, align, n) != 0) return;
  std::free(p);
  std::free(launder(p));
}
void double_free_in_other_thread() {
  void* p = launder(std::malloc(64));
  std::thread t([p] {
    std::free(p);
    std::free(p);
  });
  t.join();
}
// Both frees sequenced one after the other, in different threads.
void double_free_remote_then_local() {
  void* p = launder(std::malloc(64));
  std::thread t([p] { std::free(p); });
  t.join();
  std::free(p);
}
void double_free_local_then_remote() {
  void* p = launder(std::malloc(64));
  std::free(p);
  std::thread t([p] { std::free(p); });
  t.join();
}
struct Pod {
  long a[3];
};
void double_delete() {
  Pod* s = new Pod{};
  delete static_cast<Pod*>(launder(s));
  delete static_cast<Pod*>(launder(s));
}
void delete_stack_object() {
  int on_stack = 5;
  ::operator delete(launder(&on_stack));
}
void free_after_realloc_zero() {
  void* p = launder(std::malloc(100));
  launder(std::realloc(p, 0));
  std::free(launder(p));
}
void realloc_stack_pointer() {
  char on_stack[32] = {};
  launder(std::realloc(launder(on_stack), 64));
}

TEST_F(DeathTest, FreeOfStackPointer) { EXPECT_SHARD_ABORT(free_stack_pointer()); }
TEST_F(DeathTest, FreeOfGlobalPointer) { EXPECT_SHARD_ABORT(free_global_pointer()); }
TEST_F(DeathTest, FreeOfForeignMmapPointer) { EXPECT_SHARD_ABORT(free_mmap_pointer()); }
TEST_F(DeathTest, FreeOfInteriorPointerSmall) { EXPECT_SHARD_ABORT(free_interior(100, 16)); }
TEST_F(DeathTest, FreeOfInteriorPointerSmallOddOffset) {
  EXPECT_SHARD_ABORT(free_interior(100, 1));
}
TEST_F(DeathTest, FreeOfInteriorPointerMedium) { EXPECT_SHARD_ABORT(free_interior(20000, 8)); }
TEST_F(DeathTest, FreeOfInteriorPointerHuge) { EXPECT_SHARD_ABORT(free_interior(2 * MiB, 4096)); }
TEST_F(DeathTest, DoubleFreeSmall) { EXPECT_SHARD_ABORT(double_free(64)); }
TEST_F(DeathTest, DoubleFreeSmallOnlyBlockOfItsPage) { EXPECT_SHARD_ABORT(double_free(6000)); }
TEST_F(DeathTest, DoubleFreeMedium) { EXPECT_SHARD_ABORT(double_free(50000)); }
TEST_F(DeathTest, DoubleFreeHuge) { EXPECT_SHARD_ABORT(double_free(3 * MiB)); }
TEST_F(DeathTest, DoubleFreeAligned) { EXPECT_SHARD_ABORT(double_free_aligned(256, 100)); }
TEST_F(DeathTest, DoubleFreeAlignedHuge) { EXPECT_SHARD_ABORT(double_free_aligned(4 * MiB, 100)); }
TEST_F(DeathTest, DoubleFreeInOtherThread) { EXPECT_SHARD_ABORT(double_free_in_other_thread()); }
TEST_F(DeathTest, DoubleFreeRemoteThenLocal) {
  EXPECT_SHARD_ABORT(double_free_remote_then_local());
}
TEST_F(DeathTest, DoubleFreeLocalThenRemote) {
  EXPECT_SHARD_ABORT(double_free_local_then_remote());
}
TEST_F(DeathTest, DoubleDelete) { EXPECT_SHARD_ABORT(double_delete()); }
TEST_F(DeathTest, DeleteOfStackObject) { EXPECT_SHARD_ABORT(delete_stack_object()); }
TEST_F(DeathTest, FreeAfterReallocZeroIsDoubleFree) {
  EXPECT_SHARD_ABORT(free_after_realloc_zero());
}
TEST_F(DeathTest, ReallocOfStackPointer) { EXPECT_SHARD_ABORT(realloc_stack_pointer()); }

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
