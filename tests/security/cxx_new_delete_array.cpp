// new of one object freed by delete[].
#include "common.h"
int main() {
  long* p = static_cast<long*>(opaque(new long(7)));
  delete[] static_cast<long*>(opaque(p));
  NOT_CAUGHT();
}
