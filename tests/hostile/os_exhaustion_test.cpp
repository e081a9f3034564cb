// OS page source exhaustion (row O01 of docs/hostile-input.md): in a child
// process with a low RLIMIT_AS, mmap fails; shard_malloc of big sizes must
// return NULL with errno = ENOMEM (no crash, no abort), small allocations from
// the arena already reserved must keep working, and allocating until the
// arena is full must end in NULL + ENOMEM, after which frees make room again.
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "hostile/hostile.h"
#include "shardalloc/shardalloc.h"

using namespace hostile;

namespace {

size_t vm_size_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0;
  if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
  std::fclose(f);
  return size_t(pages) * 4096;
}

bool fill_check(void* p, size_t n, unsigned char v) {
  std::memset(p, v, n);
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i += 61)
    if (b[i] != v) return false;
  return true;
}

void exhaust_os() {
  Checker c;
  // Reserve the first OS arena (64 MiB) while there is no limit.
  shard_free(shard_malloc(64));
  const size_t vm = vm_size_bytes();
  if (!CHECK_IN_CHILD(c, vm > 0)) child_exit(1);
  // 32 MiB of head room: enough for a thread stack, not for a new arena
  // (64 MiB, mapped with 64 MiB of slack to align it).
  rlimit lim{};
  lim.rlim_cur = lim.rlim_max = vm + 32 * MiB;
  if (!CHECK_IN_CHILD(c, setrlimit(RLIMIT_AS, &lim) == 0)) child_exit(1);

  for (size_t n : {size_t{1} << 30, size_t{100} * MiB, size_t{70} * MiB}) {
    errno = 0;
    void* p = shard_malloc(launder(n));
    CHECK_IN_CHILD(c, p == nullptr);
    CHECK_IN_CHILD(c, errno == ENOMEM);
  }
  errno = 0;
  CHECK_IN_CHILD(c, shard_malloc_aligned(MiB, 128 * MiB) == nullptr && errno == ENOMEM);
  errno = 0;
  CHECK_IN_CHILD(c, shard_calloc(1024, MiB) == nullptr && errno == ENOMEM);
  void* keep = shard_malloc(100);
  errno = 0;
  CHECK_IN_CHILD(c, shard_realloc(keep, 512 * MiB) == nullptr && errno == ENOMEM);
  CHECK_IN_CHILD(c, shard_usable_size(keep) >= 100);

  // Small allocations from the arena we have still work.
  std::vector<void*> small;
  for (int i = 0; i < 2000; ++i) {
    void* p = shard_malloc(size_t(16 + i % 1000));
    if (!CHECK_IN_CHILD(c, p != nullptr)) break;
    CHECK_IN_CHILD(c, fill_check(p, size_t(16 + i % 1000), static_cast<unsigned char>(i)));
    small.push_back(p);
  }

  // Fill the arena with 64 KiB blocks: the end is NULL + ENOMEM, not a crash.
  std::vector<void*> big;
  void* p = nullptr;
  errno = 0;
  while (big.size() < 4096 && (p = shard_malloc(64 * KiB)) != nullptr) big.push_back(p);
  CHECK_IN_CHILD(c, p == nullptr && errno == ENOMEM);
  CHECK_IN_CHILD(c, big.size() > 100);  // most of the 64 MiB arena was usable
  // Small blocks from pages already in use still come; at worst NULL.
  for (int i = 0; i < 100; ++i) {
    errno = 0;
    void* q = shard_malloc(32);
    if (q == nullptr) {
      CHECK_IN_CHILD(c, errno == ENOMEM);
      break;
    }
    small.push_back(q);
  }
  for (void* b : big) shard_free(b);
  // Room again.
  void* again = shard_malloc(64 * KiB);
  CHECK_IN_CHILD(c, again != nullptr);
  if (again != nullptr) CHECK_IN_CHILD(c, fill_check(again, 64 * KiB, 0x77));
  shard_free(again);

  // A new thread (new heap record) allocates under the limit too.
  try {
    std::thread t([&c] {
      void* q = shard_malloc(200);
      CHECK_IN_CHILD(c, q != nullptr);
      shard_free(q);
      errno = 0;
      CHECK_IN_CHILD(c, shard_malloc(size_t{1} << 30) == nullptr && errno == ENOMEM);
    });
    t.join();
  } catch (const std::exception&) {
    // no room for a thread stack: not what this test is about
  }
  for (void* b : small) shard_free(b);
  shard_free(keep);
  child_exit(c.failures);
}

TEST(OsExhaustion, O01_LowAddressSpaceLimitGivesEnomem) {
  if (sanitized())
    GTEST_SKIP() << "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot be lowered";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_CHILD_OK(exhaust_os());
}

}  // namespace
