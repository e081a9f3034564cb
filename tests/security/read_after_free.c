// Reads a freed block: NOT_CAUGHT when its former contents are still there.
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memset(p, 0xA7, SIZE);
  free(p);
  if (holds_word_of(p, SIZE, 0xA7)) NOT_CAUGHT();
  SANITIZED();
}
