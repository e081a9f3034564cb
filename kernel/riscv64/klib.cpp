// The C library functions the allocator and the compiler may call (memcpy,
// memset, memmove, memcmp). Built with -fno-tree-loop-distribute-patterns so
// the loops below are not turned back into calls to themselves.
#include <stddef.h>
#include <stdint.h>

namespace {

constexpr uintptr_t kWord = sizeof(uint64_t);

bool both_aligned(const void* a, const void* b) {
  return ((uintptr_t(a) | uintptr_t(b)) & (kWord - 1)) == 0;
}

}  // namespace

extern "C" void* memset(void* dst, int c, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  while (n > 0 && (uintptr_t(d) & (kWord - 1)) != 0) {
    *d++ = (unsigned char)c;
    --n;
  }
  const uint64_t w = 0x0101010101010101ull * (unsigned char)c;
  for (; n >= 4 * kWord; n -= 4 * kWord, d += 4 * kWord) {
    auto* q = reinterpret_cast<uint64_t*>(d);
    q[0] = w;
    q[1] = w;
    q[2] = w;
    q[3] = w;
  }
  for (; n >= kWord; n -= kWord, d += kWord) *reinterpret_cast<uint64_t*>(d) = w;
  while (n-- > 0) *d++ = (unsigned char)c;
  return dst;
}

extern "C" void* memcpy(void* __restrict dst, const void* __restrict src, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (both_aligned(d, s)) {
    for (; n >= kWord; n -= kWord, d += kWord, s += kWord) {
      *reinterpret_cast<uint64_t*>(d) = *reinterpret_cast<const uint64_t*>(s);
    }
  }
  while (n-- > 0) *d++ = *s++;
  return dst;
}

extern "C" void* memmove(void* dst, const void* src, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (d == s || n == 0) return dst;
  if (d < s || d >= s + n) return memcpy(dst, src, n);
  while (n-- > 0) d[n] = s[n];
  return dst;
}

extern "C" int memcmp(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
