// Writes one byte into the middle of a freed block.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  p[SIZE / 2] = 'A';
  churn(SIZE);
  NOT_CAUGHT();
}
