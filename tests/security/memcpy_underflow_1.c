// memcpy to one byte before the block (one byte too low a destination), then free.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memcpy(p - 1, source(), SIZE);
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
