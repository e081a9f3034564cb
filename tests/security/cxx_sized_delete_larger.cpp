// operator delete(p, n) with n far larger than the size allocated.
#include <new>

#include "common.h"
int main() {
  void* p = opaque(::operator new(32));
  ::operator delete(p, *static_cast<volatile size_t*>(opaque(new size_t(4096))));
  NOT_CAUGHT();
}
