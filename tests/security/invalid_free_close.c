// Frees the block's pointer plus 16 (aligned, but not the pointer malloc returned).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p + 16);
  NOT_CAUGHT();
}
