// Frees a block and allocates one of its size: NOT_CAUGHT when the freed
// block comes straight back (what makes use after free easy to exploit).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  if (alloc(SIZE) == p) NOT_CAUGHT();
  SANITIZED();
}
