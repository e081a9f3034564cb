// Writes one byte past the end of the block (off by one), then frees it.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  p[SIZE] = 'A';
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
