// Writes the 1 MiB before the block, walking down from index -1, then frees it.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  for (size_t i = 1; i <= MIB; ++i) p[-(ptrdiff_t)i] = 'A';
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
