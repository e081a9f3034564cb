// Allocates a new block after a free, then clears the freed one through the
// stale pointer.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  char* q = alloc(SIZE);
  memset(p, 0, SIZE);
  free(q);
  churn(SIZE);
  NOT_CAUGHT();
}
