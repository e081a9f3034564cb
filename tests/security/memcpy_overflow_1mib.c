// memcpy of 1 MiB more than the block holds, then free.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memcpy(p, source(), SIZE + MIB);
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
