// Frees a block full of a secret, then allocates 64 blocks of its size:
// NOT_CAUGHT when one of them hands the secret out again (malloc does not clear).
#include "common.h"
int main(void) {
  char* p = alloc(SIZE);
  memset(p, 0xC5, SIZE);
  free(p);
  for (int i = 0; i < 64; ++i) {
    char* q = alloc(SIZE);
    if (holds_word_of(q, SIZE, 0xC5)) NOT_CAUGHT();
  }
  SANITIZED();
}
