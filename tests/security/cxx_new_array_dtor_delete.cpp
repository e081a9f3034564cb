// new[] of a type with a destructor (the array carries a count before its
// first element) freed by delete.
#include "common.h"
struct Counted {
  long v = 1;
  ~Counted() { opaque(&v); }
};
int main() {
  Counted* p = static_cast<Counted*>(opaque(new Counted[4]));
  delete static_cast<Counted*>(opaque(p));
  NOT_CAUGHT();
}
