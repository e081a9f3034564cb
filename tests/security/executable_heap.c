// Copies a return instruction into a block and calls it.
#include "common.h"
int main(void) {
  unsigned char* p = (unsigned char*)alloc(SIZE);
#if defined(__x86_64__) || defined(__i386__)
  p[0] = 0xC3;  // ret
#elif defined(__aarch64__)
  const uint32_t ret = 0xd65f03c0;
  memcpy(p, &ret, 4);
#elif defined(__riscv)
  const uint32_t ret = 0x00008067;  // jalr x0, 0(ra)
  memcpy(p, &ret, 4);
#else
  SANITIZED();
#endif
  __builtin___clear_cache((char*)p, (char*)p + 16);
  void (*fn)(void);
  memcpy(&fn, &p, sizeof fn);
  fn();
  NOT_CAUGHT();
}
