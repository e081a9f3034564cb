// Writes the first byte of malloc(0), then frees it (a block of SIZE bytes
// allocated first sets the heap up; the bug does not depend on SIZE).
#include "common.h"
int main(void) {
  opaque(alloc(SIZE));
  char* p = alloc(0);
  if (p == NULL) SANITIZED();
  p[0] = 'A';
  free(p);
  churn(0);
  NOT_CAUGHT();
}
