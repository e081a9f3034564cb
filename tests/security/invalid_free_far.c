// Frees a pointer 16 MiB past a live block (a wild pointer near the heap).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p + 16 * MIB);
  NOT_CAUGHT();
}
