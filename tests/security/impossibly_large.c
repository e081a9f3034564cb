// Asks for SIZE_MAX - SIZE + 1 bytes: must get NULL.
#include "common.h"
int main(void) {
  size_t n = (size_t)0 - SIZE;
  if (opaque(malloc(*(volatile size_t*)&n)) != NULL) NOT_CAUGHT();
  SANITIZED();
}
