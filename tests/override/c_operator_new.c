/*
 * A C program under LD_PRELOAD=libshardalloc.so (override.c_program): the
 * library brings no C++ runtime along (libstdc++ is not loaded), yet its
 * operator new works from C:
 *   - operator new(100) and operator delete work;
 *   - the nothrow forms of an impossible size return NULL;
 *   - the throwing form of an impossible size cannot throw std::bad_alloc
 *     without a C++ runtime: the child stops with SIGABRT and one clear line
 *     on stderr (not a crash, not a hang).
 * The operators are looked up by their mangled names with dlsym, as nothing
 * declares them in C. Prints what is wrong and exits 1, or exits 0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void* (*new_fn)(size_t);
typedef void* (*new_nothrow_fn)(size_t, const void*);
typedef void* (*new_aligned_nothrow_fn)(size_t, size_t, const void*);
typedef void (*delete_fn)(void*);

static int failures = 0;

static void fail(const char* what) {
  fprintf(stderr, "c_operator_new: %s\n", what);
  ++failures;
}

static void* sym(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  if (f == NULL) {
    fprintf(stderr, "c_operator_new: %s not found (is libshardalloc.so preloaded?)\n", name);
    exit(1);
  }
  return f;
}

/* Runs operator new(size) in a child; returns its stderr (up to len bytes)
 * and how it ended. */
static int child_new(new_fn op_new, size_t size, char* err, size_t len) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    void* p = op_new(size);
    fprintf(stderr, "operator new(%zu) returned %p\n", size, p);
    _exit(0);
  }
  close(fds[1]);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < len && (n = read(fds[0], err + got, len - 1 - got)) > 0) got += (size_t)n;
  err[got] = '\0';
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

int main(void) {
  if (dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD) != NULL)
    fail("libstdc++.so.6 is loaded in a C program");

  new_fn op_new = (new_fn)sym("_Znwm");
  new_fn op_new_array = (new_fn)sym("_Znam");
  new_nothrow_fn op_new_nothrow = (new_nothrow_fn)sym("_ZnwmRKSt9nothrow_t");
  new_nothrow_fn op_new_array_nothrow = (new_nothrow_fn)sym("_ZnamRKSt9nothrow_t");
  new_aligned_nothrow_fn op_new_aligned_nothrow =
      (new_aligned_nothrow_fn)sym("_ZnwmSt11align_val_tRKSt9nothrow_t");
  delete_fn op_delete = (delete_fn)sym("_ZdlPv");
  delete_fn op_delete_array = (delete_fn)sym("_ZdaPv");
  const char nothrow_tag = 0; /* std::nothrow_t: an empty struct, passed by reference */

  char* p = op_new(100);
  char* q = op_new_array(1000);
  if (p == NULL || q == NULL) fail("operator new(100) / new[](1000) returned NULL");
  memset(p, 1, 100);
  memset(q, 2, 1000);
  op_delete(p);
  op_delete_array(q);

  const size_t impossible[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1};
  for (size_t i = 0; i < sizeof impossible / sizeof impossible[0]; ++i) {
    if (op_new_nothrow(impossible[i], &nothrow_tag) != NULL)
      fail("new(nothrow) of an impossible size is not NULL");
    if (op_new_array_nothrow(impossible[i], &nothrow_tag) != NULL)
      fail("new[](nothrow) of an impossible size is not NULL");
    if (op_new_aligned_nothrow(impossible[i], 64, &nothrow_tag) != NULL) {
      fail("new(align 64, nothrow) of an impossible size is not NULL");
    }
  }

  char err[512], want[256];
  const int status = child_new(op_new, SIZE_MAX, err, sizeof err);
  snprintf(want, sizeof want,
           "shardalloc: fatal: operator new(%zu) failed, and no C++ runtime is loaded to throw "
           "std::bad_alloc\n",
           (size_t)SIZE_MAX);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
    fprintf(stderr,
            "c_operator_new: operator new(SIZE_MAX) in a C program: status 0x%x, stderr: %s\n",
            status, err);
    ++failures;
  } else if (strcmp(err, want) != 0) {
    fprintf(stderr, "c_operator_new: stderr of the aborted child is\n  %s\nwant\n  %s", err, want);
    ++failures;
  }

  if (failures == 0) printf("c_operator_new: ok\n");
  return failures == 0 ? 0 : 1;
}
