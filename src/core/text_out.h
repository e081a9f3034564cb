// Text written without allocating, into one of two destinations:
//   - a caller's buffer, with snprintf semantics: the whole text is counted,
//     what fits is stored, finish() NUL-terminates;
//   - a stream: a buffer of the writer's that a drain function empties each
//     time it fills and at finish() (a file descriptor, a console).
// Records are lines of "type key=value ..." (the heap snapshot's format).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/print_number.h"

namespace shardalloc::core {

class TextOut {
 public:
  // Takes n bytes of text; false when the destination failed (it gets no more).
  using Drain = bool (*)(void* context, const char* text, size_t n);

  // snprintf semantics: at most len bytes into buf, NUL included (buf may be null when len is 0).
  TextOut(char* buf, size_t len) : buf_(buf), len_(len) {}
  // A stream through buf[0 .. len), len > 0, into drain.
  TextOut(char* buf, size_t len, Drain drain, void* context)
      : buf_(buf), len_(len), drain_(drain), context_(context) {}

  TextOut& ch(char c) {
    if (drain_ != nullptr) {
      if (pending_ == len_) drain_pending();
      buf_[pending_++] = c;
    } else if (buf_ != nullptr && total_ + 1 < len_) {
      buf_[total_] = c;
    }
    ++total_;
    return *this;
  }
  TextOut& text(const char* s) {
    while (*s != '\0') ch(*s++);
    return *this;
  }
  TextOut& num(uint64_t v) {
    put_decimal(*this, v);
    return *this;
  }
  TextOut& signed_num(int64_t v) {
    if (v >= 0) return num(uint64_t(v));
    ch('-');
    return num(uint64_t(-(v + 1)) + 1);  // no overflow at INT64_MIN
  }
  TextOut& hex(uint64_t v) {
    put_hex(*this, v);
    return *this;
  }

  // " key=value" fields of a record, and its end.
  TextOut& field(const char* key, uint64_t v) { return ch(' ').text(key).ch('=').num(v); }
  TextOut& signed_field(const char* key, int64_t v) {
    return ch(' ').text(key).ch('=').signed_num(v);
  }
  TextOut& hex_field(const char* key, uint64_t v) { return ch(' ').text(key).ch('=').hex(v); }
  TextOut& text_field(const char* key, const char* v) { return ch(' ').text(key).ch('=').text(v); }
  TextOut& end_line() { return ch('\n'); }

  // The length of the whole text, without a NUL. A buffer is NUL-terminated
  // (when len > 0); a stream drains what is pending.
  size_t finish() {
    if (drain_ != nullptr) {
      drain_pending();
    } else if (buf_ != nullptr && len_ > 0) {
      buf_[total_ < len_ ? total_ : len_ - 1] = '\0';
    }
    return total_;
  }
  // A stream's drain failed.
  bool failed() const { return failed_; }

 private:
  void drain_pending() {
    if (!failed_ && pending_ > 0) failed_ = !drain_(context_, buf_, pending_);
    pending_ = 0;
  }

  char* buf_;
  size_t len_;
  Drain drain_ = nullptr;
  void* context_ = nullptr;
  size_t total_ = 0;
  size_t pending_ = 0;  // stream: bytes in buf_ not drained yet
  bool failed_ = false;
};

}  // namespace shardalloc::core
