/* Says whether malloc in this process is shardalloc's: a plain program,
 * neither linked against shardalloc nor told about it, run with and without
 * shardalloc-run (tests/packaging/launcher_test.sh, deb_test.sh). It looks
 * the stats API up at run time (dlsym), so it only finds it when a shardalloc
 * library is preloaded, and checks that malloc(100) adds a live block to the
 * 112-byte class.
 *   exit 0, "preload_check: malloc is shardalloc's, from <library> (checked: yes|no)"
 *   exit 3, "preload_check: malloc is not shardalloc's (<library>)"
 *   exit 1 on anything inconsistent. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <shardalloc/stats.h>

int main(void) {
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info;
  const char* from =
      (m != NULL && dladdr(m, &info) != 0 && info.dli_fname != NULL) ? info.dli_fname : "?";
  void (*get)(shard_stats*) = (void (*)(shard_stats*))dlsym(RTLD_DEFAULT, "shard_stats_get");
  unsigned (*size_class)(size_t) = (unsigned (*)(size_t))dlsym(RTLD_DEFAULT, "shard_size_class");
  int (*is_checked)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "shard_is_checked");
  if (get == NULL || size_class == NULL || is_checked == NULL) {
    printf("preload_check: malloc is not shardalloc's (%s)\n", from);
    return 3;
  }
  static shard_stats before, after; /* large: not on the stack */
  const unsigned cls = size_class(100);
  get(&before);
  void* volatile p = malloc(100);
  get(&after);
  if (p == NULL || after.classes[cls].live_blocks != before.classes[cls].live_blocks + 1) {
    fprintf(stderr,
            "preload_check: FAIL: shard_stats_get is there, but malloc(100) is not counted (%llu "
            "-> %llu)\n",
            (unsigned long long)before.classes[cls].live_blocks,
            (unsigned long long)after.classes[cls].live_blocks);
    return 1;
  }
  free(p);
  printf("preload_check: malloc is shardalloc's, from %s (checked: %s)\n", from,
         is_checked() ? "yes" : "no");
  return 0;
}
