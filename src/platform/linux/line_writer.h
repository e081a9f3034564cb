// Builds one line of text on the stack and writes it to stderr: printing
// that never allocates (safe inside malloc and at exit).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/print_number.h"

namespace shardalloc::platform {

class LineWriter {
 public:
  LineWriter& text(const char* s) {
    while (*s != '\0' && len_ < sizeof buf_ - 1) buf_[len_++] = *s++;
    return *this;
  }
  LineWriter& ch(char c) {
    if (len_ < sizeof buf_ - 1) buf_[len_++] = c;
    return *this;
  }
  LineWriter& num(uint64_t v) {
    core::put_decimal(*this, v);
    return *this;
  }
  LineWriter& hex(uint64_t v) {
    core::put_hex(*this, v);
    return *this;
  }
  // Right-aligns the next number in `width` columns.
  LineWriter& num(uint64_t v, int width) {
    int digits = 1;
    for (uint64_t x = v; x >= 10; x /= 10) ++digits;
    for (; digits < width; ++digits) text(" ");
    return num(v);
  }
  void flush();  // appends '\n' and writes the line to stderr

 private:
  char buf_[256];
  size_t len_ = 0;
};

}  // namespace shardalloc::platform
