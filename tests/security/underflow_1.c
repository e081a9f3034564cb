// Writes the byte before the block (index -1), then frees it.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  p[-1] = 'A';
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
