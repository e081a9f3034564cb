// new[] of a trivial type freed by delete (not delete[]).
#include "common.h"
int main() {
  char* p = static_cast<char*>(opaque(new char[64]));
  delete static_cast<char*>(opaque(p));
  NOT_CAUGHT();
}
