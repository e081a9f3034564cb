// cache-scratch: passive false sharing (after Hoard's cache-scratch).
//
// The main thread allocates one small (8-byte) object per worker, back to
// back, so they likely share a cache line, and hands object i to worker i.
// Each worker frees the object it was given (a remote free), then
// repeatedly allocates an object of the same size, writes each of its bytes
// many times, verifies it and frees it. An allocator that gives a worker the
// block another thread just freed, next to blocks that other threads keep
// writing, makes the workers fight over one cache line.
//
// Full size: 1000 allocate/write/free iterations in total (split over the
// workers), 500000 write passes over the 8-byte object per iteration.
#include "common.hpp"

int main(int argc, char** argv) {
  auto a =
      bench::parse_args(argc, argv, "cache-scratch: passive false sharing after a remote free");
  constexpr std::size_t kObjSize = 8;
  const std::uint64_t iterations = bench::scaled(1000, a.scale);
  const std::uint64_t reps = 500000;

  bench::Timer timer;
  std::vector<char*> initial(static_cast<std::size_t>(a.threads));
  for (auto& p : initial) {
    p = static_cast<char*>(bench::checked_malloc(kObjSize));
    std::memset(p, 0x5a, kObjSize);
  }
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    char* given = initial[static_cast<std::size_t>(t)];
    for (std::size_t k = 0; k < kObjSize; ++k)
      if (given[k] != 0x5a) bench::corrupt("handed-over object corrupt", given, kObjSize);
    gate.arrive_and_wait();
    std::free(given);
    const std::uint64_t mine = bench::share(iterations, a.threads, t);
    for (std::uint64_t i = 0; i < mine; ++i) {
      auto* obj = static_cast<volatile unsigned char*>(bench::checked_malloc(kObjSize));
      for (std::size_t k = 0; k < kObjSize; ++k) obj[k] = static_cast<unsigned char>(t + k);
      for (std::uint64_t r = 0; r < reps; ++r)
        for (std::size_t k = 0; k < kObjSize; ++k) obj[k] = static_cast<unsigned char>(obj[k] + 1);
      for (std::size_t k = 0; k < kObjSize; ++k)
        if (obj[k] != static_cast<unsigned char>(t + k + reps))
          bench::corrupt("object changed under the writer", const_cast<unsigned char*>(obj),
                         kObjSize);
      std::free(const_cast<unsigned char*>(obj));
    }
  });
  bench::report("cache-scratch", a, iterations * reps * kObjSize, timer.seconds());
  return 0;
}
