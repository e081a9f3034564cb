// Frees the block's pointer plus 8 (word-aligned, not a block start).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p + 8);
  NOT_CAUGHT();
}
