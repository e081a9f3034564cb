// The few SBI calls the test kernel makes (SBI spec v1.0+; OpenSBI 1.2 in Debian 12).
#pragma once
#include <stdint.h>

namespace sbi {

struct Ret {
  long error;
  long value;
};

inline Ret call(long eid, long fid, long a0 = 0, long a1 = 0, long a2 = 0) {
  register long r0 asm("a0") = a0;
  register long r1 asm("a1") = a1;
  register long r2 asm("a2") = a2;
  register long r6 asm("a6") = fid;
  register long r7 asm("a7") = eid;
  asm volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r6), "r"(r7) : "memory");
  return {r0, r1};
}

constexpr long kSuccess = 0;

// Legacy console (extension 0x01): one byte, blocking. Every SBI 1.x firmware we target has it.
inline void console_putchar(char c) { call(0x01, 0, (unsigned char)c); }

// Hart state management (HSM, "HSM").
constexpr long kHsm = 0x48534D;
enum HartStatus : long { kStarted = 0, kStopped = 1, kStartPending = 2, kStopPending = 3 };
inline Ret hart_start(unsigned long hartid, unsigned long start_addr, unsigned long opaque) {
  return call(kHsm, 0, long(hartid), long(start_addr), long(opaque));
}
inline Ret hart_get_status(unsigned long hartid) { return call(kHsm, 2, long(hartid)); }

// System reset (SRST, "SRST"), then the legacy shutdown (0x08) should SRST be missing.
[[noreturn]] inline void power_off(bool failure) {
  call(0x53525354, 0, /*type: shutdown*/ 0, /*reason*/ failure ? 1 : 0);
  call(0x08, 0);
  for (;;) asm volatile("wfi");
}

}  // namespace sbi
