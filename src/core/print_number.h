// Writes an unsigned number in decimal or hexadecimal through any sink with
// ch(char): the one digit loop behind every allocation-free printer (stderr
// lines, JSON statistics, heap snapshots).
#pragma once
#include <cstdint>

namespace shardalloc::core {

template <class Sink>
void put_number(Sink& sink, uint64_t v, unsigned base) {
  char digits[64];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  while (n > 0) sink.ch(digits[--n]);
}

template <class Sink>
void put_decimal(Sink& sink, uint64_t v) {
  put_number(sink, v, 10);
}

// With a 0x prefix.
template <class Sink>
void put_hex(Sink& sink, uint64_t v) {
  sink.ch('0');
  sink.ch('x');
  put_number(sink, v, 16);
}

}  // namespace shardalloc::core
