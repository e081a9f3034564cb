// Reads a freed block after a new block of its size was allocated and
// written: NOT_CAUGHT when the stale pointer shows the new owner's data.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  free(p);
  char* q = alloc(SIZE);
  memset(q, 0xB3, SIZE);
  if (holds_word_of(p, SIZE, 0xB3)) NOT_CAUGHT();
  SANITIZED();
}
