// A stress program for the stack cache and the profiler (ctest
// profile.stress: five runs, each must finish within its timeout).
// By hand:
//   gcc -O2 -fno-builtin tests/profile/stack_walk_stress.c -o /tmp/stress -lpthread -ldl
//   SHARDALLOC_GUARDED_RATE=4096 SHARDALLOC_PROFILE_RATE=64
//   LD_PRELOAD=build/libshardalloc.so timeout 100 /tmp/stress
// (one command line).
// Four threads of varying stack sizes recurse through alloca'd frames and
// allocate; a SIGALRM handler on an alternate stack allocates every 200 us;
// coroutines run on stacks of changing size at one address; the main thread
// loads and unloads a library and forks (the child allocates). What it found:
// with bde7dc5's cache about 1 run in 8 died of SIGSEGV (the cache read above
// a shorter coroutine stack); about 1 run in 10 hung, with bde7dc5 and after
// its fixes alike: all threads waiting for the loader's lock in dladdr
// (guarded sampling's caller_site, now an address range found at start), or
// the fork child spinning on the profiler's table lock (a TableLock step that
// began after the fork gate's last read and was cut by the fork; the child
// now gives the table up). 20 of 20 runs finished after both fixes.
#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile long sink;
__attribute__((noinline)) void leaf(size_t a) {
  char* p = alloca(a);
  p[0] = 1;
  void* m = malloc(16 + a % 200);
  sink += (long)m;
  free(m);
}
__attribute__((noinline)) void rec(int d, size_t a) {
  if (d == 0) {
    leaf(a);
    return;
  }
  char* p = alloca((d * 48) % 512 + a % 64);
  p[0] = 0;
  rec(d - 1, a);
  __asm__ volatile("" ::: "memory");
}
static void on_alarm(int s) {
  (void)s;
  void* m = malloc(100);  // allocating in a handler on an alternate stack
  sink += (long)m;
  free(m);
}
static void* worker(void* arg) {
  long id = (long)arg;
  for (int i = 0; i < 20000; ++i) rec((i + id) % 70, (size_t)(i * 16 + id * 32) % 700);
  return NULL;
}
static ucontext_t main_ctx, co_ctx;
static void co_fn(void) {
  for (int i = 0; i < 5000; ++i) rec(i % 20, (size_t)i % 300);
}
int main(void) {
  stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
  sigaltstack(&ss, NULL);
  struct sigaction sa = {0};
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_ONSTACK | SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  for (int round = 0; round < 6; ++round) {
    pthread_t t[4];
    for (long i = 0; i < 4; ++i) {
      pthread_attr_t at;
      pthread_attr_init(&at);
      pthread_attr_setstacksize(&at, (size_t)(64 << 10) << ((i + round) % 5));
      pthread_create(&t[i], &at, worker, (void*)(i + round));
      pthread_attr_destroy(&at);
    }
    for (int k = 0; k < 3; ++k) {  // coroutines on stacks of changing size at one address
      size_t sz = (size_t)(64 << 10) << ((k + round) % 4);
      char* st = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      getcontext(&co_ctx);
      co_ctx.uc_stack.ss_sp = st;
      co_ctx.uc_stack.ss_size = sz;
      co_ctx.uc_link = &main_ctx;
      makecontext(&co_ctx, co_fn, 0);
      swapcontext(&main_ctx, &co_ctx);
      munmap(st, sz);
    }
    void* lib = dlopen("libm.so.6", RTLD_NOW);
    if (lib) dlclose(lib);
    pid_t pid = fork();
    if (pid == 0) {
      worker((void*)99);
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "child failed %d\n", status);
      return 1;
    }
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  }
  puts("ok");
  return 0;
}
