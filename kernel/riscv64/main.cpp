// The riscv64 test kernel: boots under OpenSBI, starts every hart, hands the
// allocator the RAM after the image, runs the tests of tests.cpp on all harts
// at once, prints the results on the SBI console and powers off.
#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "ktest.h"
#include "sbi.h"
#include "shardalloc/region.h"

extern "C" char __kernel_end[];
extern "C" char _secondary_start[];
extern "C" void (*__init_array_start[])();
extern "C" void (*__init_array_end[])();

namespace ktest {

shard_region* g_region = nullptr;
unsigned g_cpus = 1;
std::atomic<unsigned> g_grows{0};
Barrier g_test_barrier;

namespace {

// The console: one line at a time. A ticket lock keeps lines whole.
std::atomic<unsigned> g_console_next{0};
std::atomic<unsigned> g_console_serving{0};

void console_write(const char* s, size_t n) {
  // acq_rel / acquire: lines are printed in ticket order, each whole.
  const unsigned ticket = g_console_next.fetch_add(1, std::memory_order_relaxed);
  while (g_console_serving.load(std::memory_order_acquire) != ticket) asm volatile("nop");
  for (size_t i = 0; i < n; ++i) sbi::console_putchar(s[i]);
  sbi::console_putchar('\n');
  g_console_serving.store(ticket + 1, std::memory_order_release);
}

// RAM the region may still grow into: [g_ram_next, g_ram_end).
std::atomic<uintptr_t> g_ram_next{0};
uintptr_t g_ram_end = 0;
constexpr size_t kInitialRegion = 8 * MiB;  // ArceOS starts with 4 MiB; we need >= 1 MiB
constexpr size_t kGrowStep = 16 * MiB;

// Takes the next piece of RAM (at least `need` bytes) and adds it to the
// region. Lock-free: harts that run short at once each add a piece.
bool grow(size_t need) {
  size_t want = need + 2 * MiB;  // room for alignment and the arena's headers
  if (want < kGrowStep) want = kGrowStep;
  want = (want + MiB - 1) & ~(MiB - 1);
  uintptr_t start = g_ram_next.load(std::memory_order_relaxed);
  size_t take;
  do {
    if (start >= g_ram_end || g_ram_end - start < need + MiB) return false;
    take = g_ram_end - start < want ? g_ram_end - start : want;
    // relaxed: the CAS only splits RAM into disjoint pieces; add_memory publishes.
  } while (!g_ram_next.compare_exchange_weak(start, start + take, std::memory_order_relaxed));
  if (shard_region_add_memory(g_region, reinterpret_cast<void*>(start), take) != SHARD_OK)
    return false;
  g_grows.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::atomic<bool> g_failed{false};

void on_fatal(const char* what, const void* p) {
  Line()
      .s("shardalloc fatal error on cpu ")
      .u(current_cpu())
      .s(": ")
      .s(what)
      .s(" (")
      .x(uintptr_t(p))
      .s(")")
      .end();
  Line().s("TESTS FAILED").end();
  sbi::power_off(true);
}

}  // namespace

Line& Line::s(const char* text) {
  while (*text) put(*text++);
  return *this;
}

Line& Line::u(uint64_t v) {
  char d[20];
  int n = 0;
  do {
    d[n++] = char('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) put(d[--n]);
  return *this;
}

Line& Line::x(uint64_t v) {
  s("0x");
  for (int shift = 60; shift >= 0; shift -= 4) put("0123456789abcdef"[(v >> shift) & 15]);
  return *this;
}

void Line::end() { console_write(buf_, n_); }

namespace {

uint64_t pattern_base(const void* p, size_t n, uint64_t seed) {
  return mix64(uint64_t(uintptr_t(p)) ^ mix64(n) ^ (seed * 0x9e3779b97f4a7c15ull));
}
uint64_t word_at(uint64_t base, size_t i) { return base ^ (uint64_t(i) * 0x100000001b3ull); }

uint64_t load_word(const unsigned char* b) {
  uint64_t v;
  __builtin_memcpy(&v, b, 8);
  return v;
}
void store_word(unsigned char* b, uint64_t v) { __builtin_memcpy(b, &v, 8); }
unsigned char byte_at(uint64_t base, size_t i) {
  return (unsigned char)((base >> ((i & 7) * 8)) ^ i);
}

}  // namespace

// Blocks up to kDenseLimit: every byte. Larger: a word every 4 KiB and the last word.
void fill(void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  const uint64_t base = pattern_base(p, n, seed);
  if (n <= kDenseLimit) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) store_word(b + i, word_at(base, i));
    for (; i < n; ++i) b[i] = byte_at(base, i);
    return;
  }
  for (size_t i = 0; i + 16 <= n; i += 4096) store_word(b + i, word_at(base, i));
  store_word(b + n - 8, word_at(base, n - 8));
}

bool check(const void* p, size_t n, uint64_t seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  const uint64_t base = pattern_base(p, n, seed);
  if (n <= kDenseLimit) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      if (load_word(b + i) != word_at(base, i)) return false;
    }
    for (; i < n; ++i) {
      if (b[i] != byte_at(base, i)) return false;
    }
    return true;
  }
  for (size_t i = 0; i + 16 <= n; i += 4096) {
    if (load_word(b + i) != word_at(base, i)) return false;
  }
  return load_word(b + n - 8) == word_at(base, n - 8);
}

void* alloc(size_t size, size_t align) {
  for (;;) {
    void* p = nullptr;
    const shard_status s = shard_region_alloc(g_region, size, align, &p);
    if (s == SHARD_OK) return p;
    if (s != SHARD_NO_MEMORY || !grow(size + align)) return nullptr;
  }
}

bool dealloc(void* p, size_t size, size_t align) {
  return shard_region_dealloc(g_region, p, size, align) == SHARD_OK;
}

}  // namespace ktest

using namespace ktest;

namespace {

std::atomic<unsigned> g_online{1};  // CPUs that reached their main
std::atomic<bool> g_go{false};      // the boot CPU set everything up
std::atomic<unsigned> g_done{0};    // CPUs that finished every test
Result g_results[kMaxCpus][16];
uint64_t g_test_ms[16];

void run_tests(unsigned cpu) {
  for (unsigned t = 0; t < kTestCount; ++t) {
    g_test_barrier.wait();
    const uint64_t t0 = now_ticks();
    Result& r = g_results[cpu][t];
    kTests[t].run(cpu, r);
    g_test_barrier.wait();
    if (cpu == 0) {
      g_test_ms[t] = (now_ticks() - t0) / kTicksPerMs;
      // Every block of the test is freed by now, on whichever CPU.
      const size_t used = shard_region_used_bytes(g_region);
      if (used != 0) r.fail("used_bytes != 0 after the test", used);
    }
    Line l;
    l.s("  cpu ")
        .u(cpu)
        .s(" ")
        .s(kTests[t].name)
        .s(r.ok ? ": ok (" : ": FAIL (")
        .u(r.count)
        .s(" ops)");
    if (!r.ok) l.s(": ").s(r.why).s(" at ").u(r.where);
    l.end();
  }
  g_done.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace

extern "C" void trap_handler(uint64_t cause, uint64_t epc, uint64_t tval) {
  Line()
      .s("unexpected trap on cpu ")
      .u(current_cpu())
      .s(": scause ")
      .x(cause)
      .s(" sepc ")
      .x(epc)
      .s(" stval ")
      .x(tval)
      .end();
  Line().s("TESTS FAILED").end();
  sbi::power_off(true);
}

extern "C" void secondary_main(unsigned long hartid, unsigned long cpu) {
  Line().s("hart ").u(hartid).s(" online as cpu ").u(cpu).end();
  g_online.fetch_add(1, std::memory_order_acq_rel);
  // acquire: the region and the CPU hook are set up before g_go.
  while (!g_go.load(std::memory_order_acquire)) asm volatile("nop");
  run_tests(unsigned(cpu));
  for (;;) asm volatile("wfi");
}

extern "C" void kernel_main(unsigned long boot_hart, unsigned long dtb) {
  const uint64_t boot_ticks = now_ticks();
  for (auto* f = __init_array_start; f != __init_array_end; ++f) (*f)();
  Line().s("shardalloc riscv64 test kernel: boot hart ").u(boot_hart).s(" is cpu 0").end();

  // Start every other hart (ids 0..kMaxCpus-1 that exist and are stopped).
  unsigned started = 1;
  for (unsigned long h = 0; h < kMaxCpus && started < kMaxCpus; ++h) {
    if (h == boot_hart) continue;
    const sbi::Ret st = sbi::hart_get_status(h);
    if (st.error != sbi::kSuccess || st.value != sbi::kStopped) continue;
    const sbi::Ret r = sbi::hart_start(h, uintptr_t(_secondary_start), started);
    if (r.error != sbi::kSuccess) {
      Line().s("hart_start(").u(h).s(") failed: ").u(uint64_t(-r.error)).end();
      continue;
    }
    ++started;
  }
  while (g_online.load(std::memory_order_acquire) != started) asm volatile("nop");
  g_cpus = started;

  // The allocator: CPU ids from tp, RAM from the end of the image to the device tree.
  shard_set_fatal_hook(on_fatal);
  if (shard_set_cpu_hook(current_cpu, g_cpus) != SHARD_OK)
    on_fatal("shard_set_cpu_hook failed", nullptr);
  const uintptr_t ram_start = (uintptr_t(__kernel_end) + MiB - 1) & ~(MiB - 1);
  const uintptr_t ram_end = dtb > ram_start ? dtb & ~(MiB - 1) : ram_start + 64 * MiB;
  g_ram_end = ram_end;
  g_ram_next.store(ram_start + kInitialRegion, std::memory_order_relaxed);
  if (shard_region_init(&g_region, reinterpret_cast<void*>(ram_start), kInitialRegion) !=
      SHARD_OK) {
    on_fatal("shard_region_init failed", reinterpret_cast<void*>(ram_start));
  }
  Line()
      .s("region: ")
      .u(kInitialRegion / MiB)
      .s(" MiB at ")
      .x(ram_start)
      .s(", may grow to ")
      .x(ram_end)
      .s(" (")
      .u((ram_end - ram_start) / MiB)
      .s(" MiB); ")
      .u(g_cpus)
      .s(" cpus; ")
      .u(kTestCount)
      .s(" tests")
      .end();
  g_test_barrier.set_count(g_cpus);
  g_go.store(true, std::memory_order_release);

  run_tests(0);
  while (g_done.load(std::memory_order_acquire) != g_cpus) asm volatile("nop");

  unsigned passed = 0, total = 0;
  for (unsigned t = 0; t < kTestCount; ++t) {
    unsigned ok = 0;
    uint64_t ops = 0;
    for (unsigned c = 0; c < g_cpus; ++c) {
      ok += g_results[c][t].ok;
      ops += g_results[c][t].count;
    }
    passed += ok;
    total += g_cpus;
    Line()
        .s(ok == g_cpus ? "PASS " : "FAIL ")
        .s(kTests[t].name)
        .s(": ")
        .u(ok)
        .s("/")
        .u(g_cpus)
        .s(" cpus, ")
        .u(ops)
        .s(" ops, ")
        .u(g_test_ms[t])
        .s(" ms")
        .end();
  }
  Line()
      .s("region at the end: total ")
      .u(shard_region_total_bytes(g_region))
      .s(" used ")
      .u(shard_region_used_bytes(g_region))
      .s(" available ")
      .u(shard_region_available_bytes(g_region))
      .s(" bytes; add_memory calls ")
      .u(g_grows.load())
      .end();
  Line()
      .s("shardalloc kernel tests: ")
      .u(passed)
      .s(" passed, ")
      .u(total - passed)
      .s(" failed (")
      .u(kTestCount)
      .s(" tests x ")
      .u(g_cpus)
      .s(" harts) in ")
      .u((now_ticks() - boot_ticks) / kTicksPerMs)
      .s(" ms")
      .end();
  if (passed == total)
    Line().s("ALL TESTS PASSED on ").u(g_cpus).s(" harts").end();
  else
    Line().s("TESTS FAILED").end();
  sbi::power_off(passed != total);
}
