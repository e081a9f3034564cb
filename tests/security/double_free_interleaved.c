// Frees p, then another block of the same size, then p again (not in a row).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  char* q = alloc(SIZE);
  free(p);
  free(q);
  free(p);
  NOT_CAUGHT();
}
