// Frees p, allocates a block of the same size (often p again), frees p again:
// with immediate reuse that frees the new owner's block under it.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  char* q = alloc(SIZE);
  free(p);
  churn(SIZE);
  opaque(q);
  NOT_CAUGHT();
}
