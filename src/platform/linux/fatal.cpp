// Fatal errors: one line on stderr, then abort. Uses no allocation.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

#include "core/hooks.h"

namespace shardalloc::platform {
namespace {

size_t append(char* buf, size_t at, size_t cap, const char* s) {
  while (*s != '\0' && at < cap) buf[at++] = *s++;
  return at;
}

}  // namespace

void fatal(const char* what, const void* p) {
  char line[160];
  size_t n = append(line, 0, sizeof line, "shardalloc: fatal: ");
  n = append(line, n, sizeof line, what);
  n = append(line, n, sizeof line, " (pointer 0x");
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  char hex[16];
  int digits = 0;
  do {
    hex[digits++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  while (digits > 0 && n < sizeof line) line[n++] = hex[--digits];
  n = append(line, n, sizeof line - 1, ")\n");
  ssize_t ignored = write(STDERR_FILENO, line, n);
  (void)ignored;
  abort();
}

}  // namespace shardalloc::platform
