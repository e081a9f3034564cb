// Writes the 32 bytes past the end of the block, byte by byte, then frees it.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  for (size_t i = 0; i < 32; ++i) p[SIZE + i] = 'A';
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
