// Frees memory from alloca.
#include <alloca.h>

#include "common.h"
int main(void) {
  char* p = (char*)opaque(alloca(SIZE));
  memset(p, 0, SIZE);
  free(p);
  NOT_CAUGHT();
}
