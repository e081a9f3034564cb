// Frees a block, frees a neighbour (so the block is not on top of any list),
// then another thread frees the block again.
#include <pthread.h>

#include "common.h"
static void* free_it(void* p) {
  free(p);
  return NULL;
}
int main(void) {
  char* p = alloc(SIZE);
  char* q = alloc(SIZE);
  free(p);
  free(q);
  pthread_t t;
  if (pthread_create(&t, NULL, free_it, p) != 0) return 3;
  pthread_join(t, NULL);
  NOT_CAUGHT();
}
