// Frees the block's pointer plus 1.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p + 1);
  NOT_CAUGHT();
}
