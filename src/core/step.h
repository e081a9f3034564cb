// A fork-atomic step of a protocol (core/hooks.h, platform::enter_step): for
// the scope of a Step, no fork() copies the process. See docs/protocols.md, "fork".
#pragma once
#include "core/hooks.h"

namespace shardalloc::core {

struct Step {
  Step() : token_(platform::enter_step()) {}
  ~Step() { platform::leave_step(token_); }
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;

 private:
  const uint32_t token_;  // which count the step took: per step, not per thread (handlers nest)
};

}  // namespace shardalloc::core
