// memcpy to 32 bytes before the block, then free.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memcpy(p - 32, source(), SIZE);
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
