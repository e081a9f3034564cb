// Reads the first byte of malloc(0) (a block of SIZE bytes allocated first
// sets the heap up; the bug does not depend on SIZE).
#include "common.h"
int main(void) {
  opaque(alloc(SIZE));
  volatile char* p = (volatile char*)alloc(0);
  if (p == NULL) SANITIZED();
  char c = p[0];
  opaque(&c);
  NOT_CAUGHT();
}
