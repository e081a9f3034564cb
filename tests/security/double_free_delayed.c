// Frees a block, allocates and frees blocks of other sizes, frees it again.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  for (size_t n = 16; n < 300000; n = n * 3 + 8) free(alloc(n));
  free(p);
  NOT_CAUGHT();
}
