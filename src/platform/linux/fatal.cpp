// Fatal errors: one line on stderr, then abort. Uses no allocation.
#include <cstdint>
#include <cstdlib>

#include "core/hooks.h"
#include "platform/linux/line_writer.h"

namespace shardalloc::platform {

void fatal(const char* what, const void* p) {
  LineWriter()
      .text("shardalloc: fatal: ")
      .text(what)
      .text(" (pointer ")
      .hex(reinterpret_cast<uintptr_t>(p))
      .text(")")
      .flush();
  abort();
}

}  // namespace shardalloc::platform
