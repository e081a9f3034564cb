// delete through a base class without a virtual destructor: sized delete
// passes the base's size, not the size allocated.
#include "common.h"
struct Base {
  long a = 1;
};
struct Derived : Base {
  long more[31] = {};
};
int main() {
  Base* b = static_cast<Base*>(opaque(static_cast<Base*>(new Derived)));
  delete b;
  NOT_CAUGHT();
}
