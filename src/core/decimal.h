// Writes an unsigned number in decimal through any sink with ch(char):
// the one digit loop behind every allocation-free printer (stderr lines,
// JSON statistics, heap snapshots).
#pragma once
#include <cstdint>

namespace shardalloc::core {

template <class Sink>
void put_decimal(Sink& sink, uint64_t v) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = char('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) sink.ch(digits[--n]);
}

}  // namespace shardalloc::core
