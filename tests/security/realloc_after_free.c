// Grows a block that was already freed.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  char* q = (char*)opaque(realloc(p, 2 * SIZE));
  opaque(q);
  NOT_CAUGHT();
}
