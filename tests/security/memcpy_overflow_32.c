// memcpy of 32 bytes more than the block holds, then free.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memcpy(p, source(), SIZE + 32);
  free(p);
  churn(SIZE);
  NOT_CAUGHT();
}
