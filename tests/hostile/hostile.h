// Helpers of the hostile-input tests (docs/hostile-input.md).
//
// Every bad input is fed in a child process: EXPECT_EXIT with the threadsafe
// death-test style (the child re-executes the test binary, so no thread of the
// parent is cloned in a half-done state). A child that must survive reports
// what it found through its exit code (0 = as documented, 1 = a check failed,
// after printing it on stderr).
#pragma once

#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "shardalloc/shardalloc.h"
#include "support/test_support.h"

namespace hostile {

using shardtest::KiB;
using shardtest::MiB;

// The whole of stderr of an aborting child: exactly the one fatal line.
#define HOSTILE_FATAL(what) "^shardalloc: fatal: " what " \\(pointer 0x[0-9a-f]+\\)\n$"
inline constexpr const char* kNotAllocated =
    HOSTILE_FATAL("free of a pointer that is not allocated");
inline constexpr const char* kDoubleFree = HOSTILE_FATAL("double free detected");
inline constexpr const char* kUsableNotAllocated =
    HOSTILE_FATAL("usable size of a pointer that is not allocated");
inline constexpr const char* kReallocFreed =
    HOSTILE_FATAL("realloc of a freed block \\(use after free\\)");
inline constexpr const char* kReallocNotAllocated =
    HOSTILE_FATAL("realloc of a pointer that is not allocated");
inline constexpr const char* kUnderflow = HOSTILE_FATAL(
    "heap corruption: the bytes before the block were overwritten \\(buffer underflow\\), block");

#define EXPECT_SHARD_ABORT(stmt, regex) EXPECT_EXIT(stmt, ::testing::KilledBySignal(SIGABRT), regex)
// The child runs `stmt`, which ends with child_exit(failures): exit code 0 or 1.
#define EXPECT_CHILD_OK(stmt) EXPECT_EXIT(stmt, ::testing::ExitedWithCode(0), "")

// Checked builds (docs/reliability.md, "Checked mode") catch what some
// limitation rows pin, and keep the last 8 bytes of each block for a canary.
inline bool checked() { return shard_is_checked() != 0; }
inline size_t canary_bytes() { return checked() ? 16 : 0; }  // the trailer: size record, canary

[[noreturn]] inline void child_exit(int failures) {
  std::fflush(stderr);
  std::_Exit(failures == 0 ? 0 : 1);
}

// Checks inside a child: print and count, never abort.
struct Checker {
  int failures = 0;
  bool operator()(bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "hostile: check failed: %s\n", what);
      ++failures;
    }
    return ok;
  }
};
#define CHECK_IN_CHILD(c, cond) (c)((cond), #cond)

// Hides a pointer or size from the optimizer.
template <class T>
T launder(T v) {
  volatile T x = v;
  return x;
}

class DeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

inline bool sanitized() {
#if defined(SHARDTEST_ASAN) || defined(SHARDTEST_TSAN)
  return true;
#else
  return false;
#endif
}

}  // namespace hostile
