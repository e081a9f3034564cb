// memcpy of 1 MiB to the bytes before the block, then free.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memcpy(p - MIB, source(), MIB);
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
