// Frees a block twice in a row.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  free(p);
  NOT_CAUGHT();
}
