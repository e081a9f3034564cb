// Overwrites the first word of a freed block with the address of a global
// (free-list poisoning), then allocates blocks of its size.
#include "common.h"
static char g_target[SIZE + 64] __attribute__((aligned(64)));
int main(void) {
  char* p = alloc(SIZE);
  char* keep = alloc(SIZE);
  free(p);
  *(void**)p = opaque(g_target);
  for (int i = 0; i < 4; ++i) {
    if (alloc(SIZE) == g_target) NOT_CAUGHT();
  }
  churn(SIZE);
  opaque(keep);
  NOT_CAUGHT();
}
