// Shared by the programs of tests/security (README.md there): each program
// commits one heap bug on a block of SIZE bytes (a compile definition: 8,
// 4096 or 262144) and reports how far it got:
//   NOT_CAUGHT  the bug went through unnoticed (the program reached its end);
//   SANITIZED   the bug had no effect to observe (the read found no stale
//               data, the block was not handed out again at once, the
//               impossible request got NULL): counted as caught;
//   nothing     the allocator stopped the program (abort, SIGSEGV): caught.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SIZE
#error "build with -DSIZE=<block size>"
#endif

#define MIB ((size_t)1 << 20)

// Hides a pointer from the compiler: no folding of the bug away, no warning
// about the bug the program commits on purpose.
static inline void* opaque(void* p) {
  __asm__ volatile("" : "+r"(p)::"memory");
  return p;
}
static inline char* alloc(size_t n) { return (char*)opaque(malloc(n)); }

static inline void report(const char* word) {
  if (write(1, word, strlen(word)) < 0 || write(1, "\n", 1) < 0) _exit(2);
  _exit(0);
}
#define NOT_CAUGHT() report("NOT_CAUGHT")
#define SANITIZED() report("SANITIZED")

// What a program does after its bug: goes on allocating and freeing blocks
// of the same size, so that checks made when a block is reused, or leaves a
// quarantine, get their chance.
static inline void churn(size_t size) {
  for (int i = 0; i < 20000; ++i) {
    volatile char* q = (volatile char*)opaque(malloc(size));
    if (q == NULL) _exit(3);
    q[0] = 1;
    free((void*)q);
  }
}

// True when some aligned word of [p, p + n) still holds `byte` in all its bytes.
static inline int holds_word_of(const volatile char* p, size_t n, unsigned char byte) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    int all = 1;
    for (size_t j = 0; j < 8; ++j) all &= (unsigned char)p[i + j] == byte;
    if (all) return 1;
  }
  return 0;
}

// A source for the memcpy programs: SIZE + 1 MiB bytes of 'A'.
static char g_source[SIZE + (1 << 20)];
static inline const char* source(void) {
  memset(g_source, 'A', sizeof g_source);
  return (const char*)opaque(g_source);
}
