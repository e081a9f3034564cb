// SHARD_ASSERT(cond): an invariant the code relies on, checked in checked
// builds only (SHARDALLOC_CHECKED; core/checked.h). A failed one stops the
// program through platform::fatal with the condition's text and file:line.
// Unchecked builds compile the condition away (it must have no side effect);
// it is still parsed, so it cannot rot.
#pragma once
#include "core/bits.h"
#include "core/checked.h"
#include "core/hooks.h"
#include "core/text_out.h"

namespace shardalloc::core {

[[noreturn]] SHARD_NOINLINE inline void assert_failed(const char* cond, const char* file,
                                                      unsigned line) {
  // The path from src/ on (the compiler may give it absolute).
  for (const char* q = file; *q != '\0'; ++q) {
    if (q[0] == 's' && q[1] == 'r' && q[2] == 'c' && q[3] == '/') file = q;
  }
  char buf[256];
  TextOut out(buf, sizeof buf);
  out.text("invariant broken: ").text(cond).text(" at ").text(file).ch(':').num(line);
  out.finish();
  platform::fatal(buf, nullptr);
}

}  // namespace shardalloc::core

#define SHARD_ASSERT(cond)                                                      \
  do {                                                                          \
    if constexpr (::shardalloc::core::kChecked) {                               \
      if (SHARD_UNLIKELY(!(cond)))                                              \
        ::shardalloc::core::assert_failed(#cond, __FILE__, unsigned(__LINE__)); \
    }                                                                           \
  } while (0)
