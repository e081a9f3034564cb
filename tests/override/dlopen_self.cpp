// A plain program, neither linked against libshardalloc.so nor preloaded,
// that dlopens it (argv[1]) and uses shard_malloc & co. The process's own
// malloc stays glibc's (the library is loaded RTLD_LOCAL, after libc): both
// allocators must coexist, each freeing only its own blocks.
#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "override_check.h"

namespace {

int g_failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "dlopen_self: FAIL: %s\n", what);
    ++g_failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dlopen_self libshardalloc.so\n");
    return 2;
  }
  expect(dlsym(RTLD_DEFAULT, "shard_malloc") == nullptr, "shardalloc already loaded before dlopen");
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    std::fprintf(stderr, "dlopen_self: FAIL: dlopen(%s): %s\n", argv[1], dlerror());
    return 1;
  }
  auto shard_malloc = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "shard_malloc"));
  auto shard_calloc = reinterpret_cast<void* (*)(size_t, size_t)>(dlsym(h, "shard_calloc"));
  auto shard_realloc = reinterpret_cast<void* (*)(void*, size_t)>(dlsym(h, "shard_realloc"));
  auto shard_free = reinterpret_cast<void (*)(void*)>(dlsym(h, "shard_free"));
  auto shard_malloc_aligned =
      reinterpret_cast<void* (*)(size_t, size_t)>(dlsym(h, "shard_malloc_aligned"));
  auto shard_usable_size = reinterpret_cast<size_t (*)(const void*)>(dlsym(h, "shard_usable_size"));
  if (!shard_malloc || !shard_calloc || !shard_realloc || !shard_free || !shard_malloc_aligned ||
      !shard_usable_size) {
    std::fprintf(stderr, "dlopen_self: FAIL: missing shard_* symbols\n");
    return 1;
  }

  // The process's malloc is still glibc's.
  const size_t probe = shardtest::probe_usable(shardtest::library_is_checked(h));
  void* g = std::malloc(shardtest::kProbeRequest);
  expect(malloc_usable_size(g) != probe,
         "the process malloc became shardalloc's after an RTLD_LOCAL dlopen");
  std::free(g);

  void* p = shard_malloc(shardtest::kProbeRequest);
  expect(p != nullptr && shard_usable_size(p) == probe, "shard_malloc(200)");
  std::memset(p, 0x5a, probe);
  p = shard_realloc(p, 100000);
  expect(p != nullptr && static_cast<unsigned char*>(p)[probe - 1] == 0x5a,
         "shard_realloc keeps contents");
  shard_free(p);
  auto* z = static_cast<unsigned char*>(shard_calloc(1000, 3));
  bool zero = z != nullptr;
  for (int i = 0; zero && i < 3000; ++i) zero = z[i] == 0;
  expect(zero, "shard_calloc zeroes");
  shard_free(z);
  void* al = shard_malloc_aligned(100, 4096);
  expect(al != nullptr && (reinterpret_cast<uintptr_t>(al) & 4095) == 0, "shard_malloc_aligned");
  shard_free(al);
  errno = 0;
  expect(shard_malloc(SIZE_MAX) == nullptr && errno == ENOMEM, "shard_malloc(SIZE_MAX)");

  // Threads (the library's initial-exec TLS in a dlopened object) and cross-thread frees.
  std::atomic<int> bad{0};
  std::vector<void*> blocks(4 * 5000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        const size_t n = size_t(1 + (i * 31 + t) % 20000);
        void* q = shard_malloc(n);
        if (q == nullptr || shard_usable_size(q) < n) bad.fetch_add(1);
        std::memset(q, t, n);
        blocks[size_t(t * 5000 + i)] = q;
        void* gl = std::malloc(n);  // glibc, interleaved
        std::free(gl);
      }
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const int from = (t + 1) % 4;
      for (int i = 0; i < 5000; ++i) {
        auto* q = static_cast<unsigned char*>(blocks[size_t(from * 5000 + i)]);
        if (q[0] != from) bad.fetch_add(1);
        shard_free(q);
      }
    });
  }
  for (auto& t : threads) t.join();
  expect(bad.load() == 0, "threads");

  std::printf("dlopen_self: %s\n", g_failures == 0 ? "OK" : "FAILED");
  // The library stays loaded: threads that used it have exited, but its
  // thread-exit key stays registered with pthread for the process's life.
  return g_failures == 0 ? 0 : 1;
}
