// A fork-atomic step of a protocol (core/hooks.h, platform::enter_step): for
// the scope of a Step, no fork() copies the process. See docs/protocols.md, "fork".
#pragma once
#include "core/hooks.h"

namespace shardalloc::core {

struct Step {
  Step() { platform::enter_step(); }
  ~Step() { platform::leave_step(); }
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;
};

}  // namespace shardalloc::core
