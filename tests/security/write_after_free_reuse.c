// Allocates a new block after a free, then writes through the stale pointer
// (into the new owner's block when the memory was reused at once).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  char* q = alloc(SIZE);
  p[SIZE / 2] = 'A';
  free(q);
  churn(SIZE);
  NOT_CAUGHT();
}
