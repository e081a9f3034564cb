/* A program built against an installed shardalloc and linked with
 * libshardalloc.so (find_package: shardalloc::shardalloc or
 * shardalloc::override; pkg-config: shardalloc). Checks that it really runs
 * on shardalloc: shard_* works, plain malloc is shardalloc's (the override),
 * and libshardalloc.so was loaded from the expected directory (argv[1]).
 * Prints "consumer: OK" and exits 0, or names what is wrong and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardalloc/region.h>
#include <shardalloc/shardalloc.h>
#include <shardalloc/stats.h>

#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      fprintf(stderr, "consumer: FAIL: " __VA_ARGS__); \
      fputc('\n', stderr);                             \
      return 1;                                        \
    }                                                  \
  } while (0)

int main(int argc, char** argv) {
  const unsigned kClass100 = shard_size_class(100); /* the 112-byte class */
  /* The shard_* API. */
  void* p = shard_malloc(100);
  CHECK(p != NULL, "shard_malloc(100) returned NULL");
  CHECK(shard_usable_size(p) == 112, "shard_usable_size(shard_malloc(100)) = %zu, want 112",
        shard_usable_size(p));

  /* malloc goes through shardalloc: the live-block count of its class moves. */
  shard_stats before, after;
  shard_stats_get(&before);
  void* volatile m = malloc(100);
  shard_stats_get(&after);
  CHECK(m != NULL, "malloc(100) returned NULL");
  CHECK(after.classes[kClass100].live_blocks == before.classes[kClass100].live_blocks + 1,
        "malloc(100) did not allocate from shardalloc (live blocks %llu -> %llu): no override",
        (unsigned long long)before.classes[kClass100].live_blocks,
        (unsigned long long)after.classes[kClass100].live_blocks);
  CHECK(shard_usable_size(m) == 112, "shard_usable_size(malloc(100)) = %zu", shard_usable_size(m));
  free(m);
  shard_free(p);

  char json[8192];
  const size_t n = shard_stats_json(json, sizeof json);
  CHECK(n > 0 && n < sizeof json && json[0] == '{' && json[n - 1] == '}', "shard_stats_json: %s",
        json);

  /* The library that defines shard_malloc, and where it was loaded from. */
  void* sym = dlsym(RTLD_DEFAULT, "shard_malloc");
  Dl_info info;
  CHECK(sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL,
        "shard_malloc: no shared object");
  char lib[PATH_MAX], want[PATH_MAX];
  CHECK(realpath(info.dli_fname, lib) != NULL, "realpath(%s)", info.dli_fname);
  printf("consumer: shard_malloc from %s\n", lib);
  CHECK(strstr(lib, "libshardalloc.so") != NULL, "shard_malloc is not from libshardalloc.so");
  if (argc > 1) {
    CHECK(realpath(argv[1], want) != NULL, "realpath(%s)", argv[1]);
    CHECK(strncmp(lib, want, strlen(want)) == 0 && lib[strlen(want)] == '/',
          "libshardalloc.so was loaded from %s, not from %s", lib, want);
  }
  printf("consumer: OK\n");
  return 0;
}
