// Clears a freed block (memset to zero).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  memset(p, 0, SIZE);
  churn(SIZE);
  NOT_CAUGHT();
}
