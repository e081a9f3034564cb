/*
 * bench-launch: runs one benchmark process and reports its wall time and
 * peak RSS.
 *
 *   bench-launch [--preload LIB] [--timeout SEC] [--report FILE] -- PROG ARGS...
 *
 * Why a launcher: Linux keeps the peak RSS of a process across exec(), and a
 * child forked from the Python runner starts with a copy of the runner's
 * resident memory (10+ MiB), which would become the floor of every
 * measurement. This small C program forks the benchmark from a tiny address
 * space, waits for it with wait4() and reports the child's ru_maxrss, so the
 * figure is the benchmark's own. It also sets LD_PRELOAD for the benchmark
 * only (never for itself), so a broken allocator cannot take the launcher
 * down, and it enforces a timeout (SIGKILL).
 *
 * The report is one line of key=value pairs:
 *   status=exit code=0 signal=0 timeout=0 wall_s=1.234567 maxrss_kib=1234
 *   utime_s=1.2 stime_s=0.1
 * written to FILE (or to stderr). The launcher exits with the child's exit
 * code, 128+signal if it was killed, 124 on timeout, 125 on launcher errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench-launch [--preload LIB] [--timeout SEC] [--report FILE] -- PROG ARGS...\n");
  exit(125);
}

int main(int argc, char** argv) {
  const char* preload = NULL;
  const char* report = NULL;
  double timeout = 0.0;
  int i = 1;
  for (; i < argc; ++i) {
    if (strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    } else if (strcmp(argv[i], "--preload") == 0 && i + 1 < argc) {
      preload = argv[++i];
    } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      timeout = strtod(argv[++i], NULL);
    } else if (strcmp(argv[i], "--report") == 0 && i + 1 < argc) {
      report = argv[++i];
    } else {
      usage();
    }
  }
  if (i >= argc) usage();

  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);

  const double start = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    perror("bench-launch: fork");
    return 125;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (preload != NULL && preload[0] != '\0')
      setenv("LD_PRELOAD", preload, 1);
    else
      unsetenv("LD_PRELOAD");
    execvp(argv[i], argv + i);
    fprintf(stderr, "bench-launch: cannot execute %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }

  int status = 0, timed_out = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  for (;;) {
    pid_t r = wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      perror("bench-launch: wait4");
      return 125;
    }
    if (timeout > 0.0) {
      double left = start + timeout - now_s();
      if (left <= 0.0) {
        timed_out = 1;
        kill(pid, SIGKILL);
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
        }
        break;
      }
      struct timespec ts;
      ts.tv_sec = (time_t)left;
      ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
      sigtimedwait(&chld, NULL, &ts);
    } else {
      int sig;
      sigwait(&chld, &sig);
    }
  }
  const double wall = now_s() - start;

  int code = 0, sig = 0;
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) sig = WTERMSIG(status);

  FILE* out = stderr;
  if (report != NULL) {
    out = fopen(report, "w");
    if (out == NULL) {
      perror("bench-launch: report file");
      out = stderr;
    }
  }
  fprintf(out,
          "status=%s code=%d signal=%d timeout=%d wall_s=%.6f maxrss_kib=%ld utime_s=%.6f "
          "stime_s=%.6f\n",
          timed_out ? "timeout" : (sig ? "signal" : "exit"), code, sig, timed_out, wall,
          ru.ru_maxrss, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
  if (out != stderr) fclose(out);

  if (timed_out) return 124;
  if (sig) return 128 + sig;
  return code;
}
