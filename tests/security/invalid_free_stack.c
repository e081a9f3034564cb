// Frees a stack array.
#include "common.h"
int main(void) {
  char buf[SIZE];
  memset(buf, 0, sizeof buf);
  free(opaque(buf));
  NOT_CAUGHT();
}
