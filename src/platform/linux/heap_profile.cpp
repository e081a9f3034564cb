// The heap profiler: a table of the live sampled allocations of the process
// heap with the call stack of each (docs/profiling.md). Allocates nothing
// from the heap it profiles: the table is mmap'd, stacks are taken by
// capture_stack (stack_walk.h: libgcc's unwinder, loaded once at start,
// behind a cache of verified stacks), and the writers format on the stack.
#include "platform/linux/heap_profile.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include "core/domain.h"
#include "core/hooks.h"
#include "core/print_number.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/errno_kept.h"
#include "platform/linux/fd_text.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/stack_walk.h"

namespace shardalloc::platform {

std::atomic<uint32_t> g_profile_dump_request{0};  // a word: riscv64 has no lock-free byte atomics
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the signal handler stores it");

namespace {

constexpr int kMaxFrames = kStackMaxFrames;
constexpr uint32_t kMaxSamples = uint32_t{1} << 18;  // 256 Ki live samples (104 MiB reserved)
constexpr uint32_t kFirstIndexBits = 10;

struct Sample {
  uintptr_t block;  // 0: a free entry
  uint64_t size;
  uint64_t block_bytes;
  uint32_t depth;
  uint32_t next_free;  // a free entry: the next free entry + 1
  uintptr_t frames[kMaxFrames];
};

// The table: one lock (samples are rare, and so are frees of sampled blocks).
struct Table {
  std::atomic<pid_t> locked{0};  // the holder's thread id; 0: free
  Sample* samples = nullptr;     // kMaxSamples reserved, used from the front
  uint32_t high = 0;             // entries ever used
  uint32_t free_head = 0;        // first free entry + 1
  uint32_t live = 0;
  uint32_t* index = nullptr;  // open addressing by block: entry + 1, 0 empty
  uint32_t index_bits = 0;
  uint64_t dropped = 0;        // samples not recorded: the table was full
  uint64_t live_estimate = 0;  // the live samples' estimated bytes (sample_estimate)
  uint64_t growth_mark = 0;    // live_estimate at the last growth dump (0: none yet)
  uint64_t growth_dumps = 0;   // growth dumps claimed
};

Table g_table;
uint64_t g_rate = 512 * 1024;
// SHARDALLOC_PROFILE, copied at start: the program may change its
// environment (and the string getenv returned) before exit.
char g_path_copy[4096];
const char* g_path = nullptr;
bool g_on = false;

constinit thread_local bool tl_in_profiler = false;

// Dumps while the program runs (docs/profiling.md, "Dumps while running").
uint64_t g_growth_step = 0;  // SHARDALLOC_PROFILE_GROWTH_MB in bytes; 0: off
// Signal dumps: the handler sets g_profile_dump_request (heap_profile.h).
std::atomic<uint64_t> g_signal_dumps{0};  // signal dumps written (or tried), for the names
// The calling thread is writing a dump: no nested one (a malloc inside it
// would be a signal handler's, on the interrupted path, which never samples;
// this is for the slow-path check of a handler that interrupted no call).
constinit thread_local bool tl_dumping = false;

// A counting filter over the tracked blocks, read without the lock: a free
// whose block's counter is 0 was no sample (most frees into a page holding
// samples). Relaxed: the thread that frees a block (or collects its remote
// free) is the one that recorded it, or received it from that thread
// through the program's own synchronization, or adopted its heap (an
// acquire); so it sees the increment.
constexpr uint32_t kFilterBits = 16;
std::atomic<uint16_t> g_filter[uint32_t{1} << kFilterBits];

std::atomic<uint16_t>& filter_of(uintptr_t block) {
  return g_filter[((block >> 4) * 0xD6E8FEB86659FD93ull) >> (64 - kFilterBits)];
}

// Sparse tables (the samples' table is 104 MiB of address space): no
// transparent huge pages, which would make 2 MiB resident at a sample's
// first touch where THP is "always" (a review: 3.4 -> 5.5 MiB peak RSS).
void* map_zeroed(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  os_advise_no_huge_pages(p, bytes);
  return p;
}

// Holds the table lock for a scope, inside a fork step (no fork copies it
// held). ok() is false when the calling thread is already in the profiler (a
// signal handler that interrupted it): it must not wait for itself.
// Set in a fork child whose parent had the lock held by another thread
// (a step the fork gate may cut: docs/protocols.md section 8), and when a
// thread ends inside the profiler (heap_profile_thread_ended_in_call): the
// table may be half updated and its holder is gone, so it is never used
// again, and a thread waiting for the lock stops waiting.
std::atomic<bool> g_table_lost{false};

// The thread tid of this process is gone (tgkill's signal 0 checks, sends
// nothing). errno kept: this runs inside malloc.
bool holder_gone(pid_t tid) {
  const ErrnoKept kept;
  return tgkill(getpid(), tid, 0) != 0 && errno == ESRCH;
}

class TableLock {
 public:
  TableLock() {
    // relaxed: a stale false only costs the wait below, which looks again.
    if (tl_in_profiler || g_table_lost.load(std::memory_order_relaxed)) return;
    tl_in_profiler = true;
    step_ = enter_step();
    const pid_t self = gettid();
    pid_t holder = 0;
    // acquire: the previous holder's table writes happen-before ours.
    for (uint32_t spins = 1; !g_table.locked.compare_exchange_weak(
             holder, self, std::memory_order_acquire, std::memory_order_relaxed);
         ++spins, holder = 0) {
      // A holder that ended without its exit destructor giving the table up
      // (a thread that never allocated has none, and one may end inside
      // shard_profile_write, outside a call): the table is lost as well.
      if (holder != 0 && spins % 256 == 0 && holder_gone(holder))
        g_table_lost.store(true, std::memory_order_relaxed);
      // relaxed: the flag alone is the message (the holder will never release).
      if (g_table_lost.load(std::memory_order_relaxed)) {
        leave_step(step_);
        tl_in_profiler = false;
        return;
      }
      sched_yield();
    }
    ok_ = true;
  }
  ~TableLock() {
    if (!ok_) return;
    g_table.locked.store(0,
                         std::memory_order_release);  // release: our writes to the next holder
    leave_step(step_);
    tl_in_profiler = false;
  }
  bool ok() const { return ok_; }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;

 private:
  bool ok_ = false;
  uint32_t step_ = 0;  // enter_step's token
};

// A sample's estimated bytes, rounded: the same integer is added when it is
// recorded and taken off when it is dropped, so live_estimate does not drift.
uint64_t sample_estimate(const Sample& s) {
  return uint64_t(sample_weight(s.block_bytes, g_rate) * double(s.size) + 0.5);
}

uint32_t home(uintptr_t block, uint32_t bits) {
  return uint32_t(((block >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

// Under the lock: the index slot of block, or of the empty slot where it goes.
uint32_t find_slot(uintptr_t block) {
  const uint32_t mask = (uint32_t{1} << g_table.index_bits) - 1;
  uint32_t i = home(block, g_table.index_bits);
  while (g_table.index[i] != 0 && g_table.samples[g_table.index[i] - 1].block != block)
    i = (i + 1) & mask;
  return i;
}

// Under the lock: doubles the index when it is half full.
bool grow_index() {
  if (g_table.index != nullptr && g_table.live < (uint32_t{1} << (g_table.index_bits - 1)))
    return true;
  const uint32_t bits = g_table.index == nullptr ? kFirstIndexBits : g_table.index_bits + 1;
  auto* fresh = static_cast<uint32_t*>(map_zeroed(sizeof(uint32_t) << bits));
  if (fresh == nullptr) return false;
  uint32_t* old = g_table.index;
  const uint32_t old_bits = g_table.index_bits;
  g_table.index = fresh;
  g_table.index_bits = bits;
  if (old != nullptr) {
    for (uint32_t i = 0; i < (uint32_t{1} << old_bits); ++i) {
      if (old[i] != 0) g_table.index[find_slot(g_table.samples[old[i] - 1].block)] = old[i];
    }
    munmap(old, sizeof(uint32_t) << old_bits);
  }
  return true;
}

// Under the lock: removes the entry in index slot i (backward-shift deletion).
void erase_slot(uint32_t i) {
  const uint32_t mask = (uint32_t{1} << g_table.index_bits) - 1;
  const uint32_t entry = g_table.index[i] - 1;
  for (uint32_t j = (i + 1) & mask; g_table.index[j] != 0; j = (j + 1) & mask) {
    const uint32_t k = home(g_table.samples[g_table.index[j] - 1].block, g_table.index_bits);
    // Entry j may move to the hole at i when its home is not in (i, j] (cyclically).
    const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    g_table.index[i] = g_table.index[j];
    i = j;
  }
  g_table.index[i] = 0;
  Sample& s = g_table.samples[entry];
  filter_of(s.block).fetch_sub(1, std::memory_order_relaxed);  // relaxed: see g_filter
  g_table.live_estimate -= sample_estimate(s);
  s.block = 0;
  s.next_free = g_table.free_head;
  g_table.free_head = entry + 1;
  --g_table.live;
}

// --- Writing -----------------------------------------------------------

// A frame name or module path: separators of the collapsed format become '_'.
core::TextOut& put_name(core::TextOut& out, const char* s) {
  for (; *s != '\0'; ++s) out.ch(*s == ';' || *s == ' ' || *s == '\n' ? '_' : *s);
  return out;
}

// A copy of the live samples, taken under the lock, formatted without it
// (dladdr takes the loader's lock, which a thread in dlopen holds while it
// allocates and may wait for our table lock).
struct Snapshot {
  Sample* samples = nullptr;
  uint32_t count = 0;
  size_t bytes = 0;
  uint64_t dropped = 0;
  Snapshot() {
    uint32_t cap;
    {
      TableLock lock;
      if (!lock.ok()) return;
      cap = g_table.live;
    }
    // Room for samples recorded meanwhile.
    cap += cap / 4 + 64;
    bytes = size_t(cap) * sizeof(Sample);
    samples = static_cast<Sample*>(map_zeroed(bytes));
    if (samples == nullptr) return;
    TableLock lock;
    if (!lock.ok()) return;
    for (uint32_t i = 0; i < g_table.high && count < cap; ++i) {
      if (g_table.samples[i].block != 0) samples[count++] = g_table.samples[i];
    }
    dropped = g_table.dropped;
  }
  ~Snapshot() {
    if (samples != nullptr) munmap(samples, bytes);
  }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
};

// The frames of a sample that are not the allocator's (from the first frame
// outside our module; all of them when we are linked into the program).
uint32_t first_user_frame(const Sample& s) {
  uint32_t i = 0;
  while (i < s.depth && own_module_known() && own_frame(s.frames[i] - 1)) ++i;
  return i;
}

int compare_stacks(const Sample& a, const Sample& b) {
  const uint32_t n = a.depth < b.depth ? a.depth : b.depth;
  for (uint32_t i = 0; i < n; ++i) {
    if (a.frames[i] != b.frames[i]) return a.frames[i] < b.frames[i] ? -1 : 1;
  }
  return a.depth == b.depth ? 0 : (a.depth < b.depth ? -1 : 1);
}

template <typename T, typename Less>
void heap_sort(T* a, size_t n, Less less) {
  auto sift = [&](size_t root, size_t end) {
    for (size_t child; (child = 2 * root + 1) < end; root = child) {
      if (child + 1 < end && less(a[child], a[child + 1])) ++child;
      if (!less(a[root], a[child])) return;
      T t = a[root];
      a[root] = a[child];
      a[child] = t;
    }
  };
  for (size_t i = n / 2; i-- > 0;) sift(i, n);
  for (size_t end = n; end-- > 1;) {
    T t = a[0];
    a[0] = a[end];
    a[end] = t;
    sift(0, end);
  }
}

// Sorts the snapshot so that samples of one stack are adjacent (the user
// frames only: the allocator's frames were cut off into depth 0.. first).
void group_by_stack(Snapshot& snap) {
  for (uint32_t i = 0; i < snap.count; ++i) {
    Sample& s = snap.samples[i];
    const uint32_t skip = first_user_frame(s);
    for (uint32_t k = skip; k < s.depth; ++k) s.frames[k - skip] = s.frames[k];
    s.depth -= skip;
  }
  heap_sort(snap.samples, snap.count,
            [](const Sample& a, const Sample& b) { return compare_stacks(a, b) < 0; });
}

double estimated_bytes(const Sample& s) {
  return sample_weight(s.block_bytes, g_rate) * double(s.size);
}

// A frame as the collapsed format names it: its dynamic symbol, else
// module+0xoffset (the offset of the call instruction's last byte).
void put_frame(core::TextOut& out, uintptr_t pc) {
  Dl_info info;
  const uintptr_t at = pc - 1;
  if (dladdr(reinterpret_cast<void*>(at), &info) == 0 || info.dli_fname == nullptr) {
    out.hex(at);
    return;
  }
  if (info.dli_sname != nullptr) {
    put_name(out, info.dli_sname);
    return;
  }
  put_name(out, info.dli_fname[0] != '\0' ? info.dli_fname : "main")
      .text("+")
      .hex(at - uintptr_t(info.dli_fbase));
}

void put_frame_line(core::TextOut& out, uintptr_t pc) {
  Dl_info info;
  const uintptr_t at = pc - 1;
  out.text("    ").hex(at).text(" ");
  if (dladdr(reinterpret_cast<void*>(at), &info) == 0 || info.dli_fname == nullptr) {
    out.text("?\n");
    return;
  }
  if (info.dli_sname != nullptr) put_name(out, info.dli_sname).text(" ");
  put_name(out.text("("), info.dli_fname[0] != '\0' ? info.dli_fname : "main")
      .text("+")
      .hex(at - uintptr_t(info.dli_fbase))
      .text(")\n");
}

struct Group {
  uint32_t first;
  uint32_t count;
  double bytes;
};

// Calls f(first, count, bytes) for each run of samples with one stack.
template <typename F>
void for_each_group(const Snapshot& snap, F f) {
  uint32_t i = 0;
  while (i < snap.count) {
    uint32_t j = i;
    double bytes = 0;
    while (j < snap.count && compare_stacks(snap.samples[i], snap.samples[j]) == 0)
      bytes += estimated_bytes(snap.samples[j++]);
    f(i, j - i, bytes);
    i = j;
  }
}

int finish(core::TextOut& out) {
  out.finish();
  return out.failed() ? -1 : 0;
}

void expand_path(const char* path, const char* suffix, char* out, size_t cap) {
  size_t n = 0;
  auto put = [&](char c) {
    if (n + 1 < cap) out[n++] = c;
  };
  for (const char* p = path; *p != '\0'; ++p) {
    if (p[0] == '%' && p[1] == 'p') {
      char digits[24];
      int k = 0;
      for (uint64_t v = uint64_t(getpid()); k == 0 || v != 0; v /= 10)
        digits[k++] = char('0' + v % 10);
      while (k > 0) put(digits[--k]);
      ++p;
    } else {
      put(*p);
    }
  }
  for (const char* p = suffix; *p != '\0'; ++p) put(*p);
  out[n] = '\0';
}

// Writes the profile to the expanded path plus suffix (no leak report).
void dump_profile(const char* suffix) {
  if (g_path == nullptr || tl_dumping) return;
  tl_dumping = true;
  // Dumps are written inside malloc (the sampling slow path, in a call), and
  // open / write / close are cancellation points, which malloc must not be:
  // a deferred pthread_cancel acted there, the thread ended in a call and
  // kept its heap (test AdversarialDeath.DeferredCancellationNeverActs...).
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  char path[4096];
  expand_path(g_path, suffix, path, sizeof path);
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    heap_profile_write(fd);
    close(fd);
  }
  pthread_setcancelstate(cancel_state, nullptr);
  tl_dumping = false;
}

// ".N" or ".signal.N".
void dump_numbered(const char* kind, uint64_t n) {
  char suffix[48];
  size_t k = 0;
  suffix[k++] = '.';
  for (; *kind != '\0'; ++kind) suffix[k++] = *kind;
  char digits[24];
  int d = 0;
  for (uint64_t v = n; d == 0 || v != 0; v /= 10) digits[d++] = char('0' + v % 10);
  while (d > 0) suffix[k++] = digits[--d];
  suffix[k] = '\0';
  dump_profile(suffix);
}

void on_dump_signal(int) {
  // relaxed: a flag; the dump's snapshot takes the table lock for the data.
  g_profile_dump_request.store(1, std::memory_order_relaxed);
}

// Other threads' frees of sampled blocks are reported when the page's owner
// collects them (Page::splice): blocks freed into this thread's pages and
// still on their thread_free lists would read as leaks at exit. Only this
// thread's heap: other heaps' owners may still run (their pending remote
// frees stay counted, docs/profiling.md).
void collect_own_heap() {
  core::Heap* h = own_process_heap();
  if (h->placeholder || process_heap() != h) return;  // no heap yet, or inside a call
  CallScope scope;
  h->collect_all();
}

// Blocks other threads freed into the pages of an exited thread's heap wait
// on those pages' thread_free lists until a thread adopts or sweeps the heap
// (protocol 3; a sealed page that keeps a live block never completes), and
// their samples stay in the table until then. A sweep collects them
// (Page::splice reports the samples freed), so that a profile or a leak
// report does not count them (a review's leak report named 62 freed blocks
// of an exited thread, of 1 leaked). Not inside a call (a dump from the
// sampling slow path, or a signal handler that interrupted a call).
void collect_abandoned_heaps() {
  if (in_call()) return;
  CallScope call;  // as sweeps from the allocation slow path run: a handler's malloc borrows
  g_process_domain.sweep_abandoned();
}

__attribute__((destructor)) void write_at_exit() {
  if (!g_on || g_path == nullptr) return;
  push_own_remote_batch();
  collect_own_heap();
  heap_profile_serve_request();  // a signal dump still pending: written before the exit profile
  char path[4096];
  expand_path(g_path, "", path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    heap_profile_write(fd);
    close(fd);
  }
  expand_path(g_path, ".leaks", path, sizeof path);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    heap_profile_write_leaks(fd);
    close(fd);
  }
}

}  // namespace

// --- Sampling math -------------------------------------------------------

double sample_log(double x) {
  uint64_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  int e = int((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);
  double m;
  __builtin_memcpy(&m, &bits, sizeof m);  // x = m * 2^e, m in [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172: the series
  // converges to double precision in 11 terms.
  const double s = (m - 1) / (m + 1);
  const double s2 = s * s;
  double term = s, sum = 0;
  for (int k = 1; k <= 23; k += 2) {
    sum += term / k;
    term *= s2;
  }
  return 2 * sum + e * 0.6931471805599453;
}

double sample_exp_neg(double x) {
  if (x > 700) return 0;
  // e^-x = 2^-n * e^-r, r = x - n ln 2 in [0, ln 2).
  const double ln2 = 0.6931471805599453;
  const int n = int(x / ln2);
  const double r = x - n * ln2;
  double term = 1, sum = 1;
  for (int k = 1; k < 24; ++k) {
    term *= -r / k;
    sum += term;
  }
  for (int i = 0; i < n; ++i) sum *= 0.5;
  return sum;
}

double sample_weight(size_t block_bytes, uint64_t rate) {
  const double p = 1 - sample_exp_neg(double(block_bytes) / double(rate));
  return p <= 0 ? 1 : 1 / p;
}

uint64_t sample_gap(uint64_t rate, double u) {
  const double gap = -sample_log(u) * double(rate);
  if (gap >= 9.0e18) return uint64_t{1} << 62;
  return uint64_t(gap) + 1;
}

// --- Recording -----------------------------------------------------------

void heap_profile_start(uint64_t rate, const char* path) {
  if constexpr (core::kChecked) return;  // checked builds: not offered (docs/profiling.md)
  if (g_on) return;
  g_rate = rate == 0 ? 512 * 1024 : rate;
  if (path != nullptr) {
    size_t n = 0;
    while (path[n] != '\0' && n + 1 < sizeof g_path_copy) {
      g_path_copy[n] = path[n];
      ++n;
    }
    g_path_copy[n] = '\0';
    g_path = g_path_copy;
  }
  g_table.samples = static_cast<Sample*>(map_zeroed(sizeof(Sample) * kMaxSamples));
  if (g_table.samples == nullptr) return;
  {
    TableLock lock;
    if (!grow_index()) return;
  }
  // Loading the unwinder allocates (dlopen): now, outside any allocator call.
  // It also finds our module, whose frames are recognised by address range,
  // so only when we are a shared object apart from the program (preloaded or
  // linked); linked into the program itself, every frame is kept.
  stack_walk_start();
  set_sample_rate(g_rate);
  g_on = true;
  // Heaps made from now on copy the flag at init; those made earlier (this
  // thread's, before main) are set here, before other threads start.
  g_process_domain.sample_allocations.store(true,
                                            std::memory_order_relaxed);  // relaxed: see domain.h
  // acquire: pairs with the release push of each heap on the list.
  for (core::Heap* h = g_process_domain.heaps.load(std::memory_order_acquire); h != nullptr;
       h = h->next_in_domain) {
    if (!h->placeholder) h->sampling = true;
  }
}

bool heap_profile_on() { return g_on; }

void heap_profile_after_fork_in_child() {
  // relaxed: only this thread runs. The lock is not ours (we are not inside
  // the profiler), so the thread that held it is gone.
  if (!tl_in_profiler && g_table.locked.load(std::memory_order_relaxed) != 0)
    g_table_lost.store(true, std::memory_order_relaxed);
}

void heap_profile_thread_ended_in_call() {
  // relaxed: waiters poll it; the table is not read again after it.
  // (Also outside a call: shard_profile_write's snapshot takes the lock.)
  if (tl_in_profiler) g_table_lost.store(true, std::memory_order_relaxed);
}

bool heap_profile_dumps(uint64_t growth_bytes, int signal) {
  if (!g_on) return false;
  g_growth_step = growth_bytes;
  if (signal <= 0) return true;
  struct sigaction sa;
  __builtin_memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_dump_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(signal, &sa, nullptr) == 0;
}

void heap_profile_serve_request() {
  if (!g_on || tl_dumping) return;
  // relaxed: whoever clears the flag writes the dump; the data come from the
  // table under its lock.
  if (!g_profile_dump_request.exchange(0, std::memory_order_relaxed)) return;
  // relaxed: a counter for the file names only.
  dump_numbered("signal.", g_signal_dumps.fetch_add(1, std::memory_order_relaxed) + 1);
}

namespace {

// Under the lock: enters a sample of block into the table.
bool record_locked(void* block, size_t size, size_t block_bytes, void* const* frames, int depth) {
  if (!grow_index()) {
    ++g_table.dropped;
    return false;
  }
  const uintptr_t key = reinterpret_cast<uintptr_t>(block);
  const uint32_t slot = find_slot(key);
  uint32_t entry;
  if (g_table.index[slot] != 0) {
    entry = g_table.index[slot] - 1;  // a stale entry (its free went unseen): reused
    g_table.live_estimate -= sample_estimate(g_table.samples[entry]);
  } else {
    if (g_table.free_head != 0) {
      entry = g_table.free_head - 1;
      g_table.free_head = g_table.samples[entry].next_free;
    } else if (g_table.high < kMaxSamples) {
      entry = g_table.high++;
    } else {
      ++g_table.dropped;
      return false;
    }
    g_table.index[slot] = entry + 1;
    ++g_table.live;
    filter_of(key).fetch_add(1, std::memory_order_relaxed);  // relaxed: see g_filter
  }
  Sample& s = g_table.samples[entry];
  s.block = key;
  s.size = size;
  s.block_bytes = block_bytes;
  s.depth = depth > 0 ? uint32_t(depth) : 0;
  for (uint32_t i = 0; i < s.depth; ++i) s.frames[i] = reinterpret_cast<uintptr_t>(frames[i]);
  g_table.live_estimate += sample_estimate(s);
  return true;
}

}  // namespace

bool heap_profile_record(void* block, size_t size, size_t block_bytes) {
  if (!g_on || tl_in_profiler) return false;
  void* frames[kMaxFrames];
  tl_in_profiler = true;
  const int depth = capture_stack(frames, kMaxFrames);
  tl_in_profiler = false;
  uint64_t growth_dump = 0;
  {
    TableLock lock;
    if (!lock.ok()) return false;
    if (!record_locked(block, size, block_bytes, frames, depth)) return false;
    // A growth dump when the live estimate passed the last one's by the step
    // (tcmalloc's HEAP_PROFILE_INUSE_INTERVAL): claimed here, written below
    // without the lock (the writer takes it for its snapshot).
    // (Not from a signal handler's sample while this thread writes a dump:
    // the number would be claimed and its file never written.)
    if (g_growth_step != 0 && !tl_dumping &&
        g_table.live_estimate >= g_table.growth_mark + g_growth_step) {
      g_table.growth_mark = g_table.live_estimate;
      growth_dump = ++g_table.growth_dumps;
    }
  }
  // In a call still (the caller is the core's allocation slow path): the
  // writer allocates nothing from the heap (mmap'd snapshot, stack buffer,
  // open/write/close), so nothing re-enters the thread's half-updated heap.
  if (growth_dump != 0) dump_numbered("", growth_dump);
  if (g_profile_dump_request.load(std::memory_order_relaxed) != 0)
    heap_profile_serve_request();  // relaxed: a flag
  return true;
}

bool heap_profile_forget(void* block) {
  // relaxed: see g_filter.
  if (filter_of(reinterpret_cast<uintptr_t>(block)).load(std::memory_order_relaxed) == 0)
    return false;
  TableLock lock;
  if (!lock.ok() || g_table.index == nullptr) return false;
  const uint32_t slot = find_slot(reinterpret_cast<uintptr_t>(block));
  if (g_table.index[slot] == 0) return false;
  erase_slot(slot);
  return true;
}

namespace {

// What both writers start from: write(snap), snap the samples of every heap
// (abandoned ones collected first) grouped by stack; -1 (ENOTSUP) when
// profiling is off, before anything is mapped.
template <typename Write>
int write_grouped(Write write) {
  if (!g_on) {
    errno = ENOTSUP;
    return -1;
  }
  collect_abandoned_heaps();
  Snapshot snap;
  group_by_stack(snap);
  return write(snap);
}

int write_folded(int fd, const Snapshot& snap) {
  FdText out(fd);
  for_each_group(snap, [&](uint32_t first, uint32_t, double bytes) {
    const Sample& s = snap.samples[first];
    if (s.depth == 0) {
      out.text("[unknown]");
    } else {
      for (uint32_t k = s.depth; k-- > 0;) {
        put_frame(out, s.frames[k]);
        if (k != 0) out.ch(';');
      }
    }
    out.ch(' ').num(uint64_t(bytes + 0.5)).ch('\n');
  });
  return finish(out);
}

int write_leaks(int fd, const Snapshot& snap) {
  // The groups, largest first.
  uint32_t groups = 0;
  for_each_group(snap, [&](uint32_t, uint32_t, double) { ++groups; });
  const size_t group_bytes = sizeof(Group) * (groups + 1);
  auto* g = static_cast<Group*>(map_zeroed(group_bytes));
  FdText out(fd);
  double total = 0;
  for_each_group(snap, [&](uint32_t, uint32_t, double bytes) { total += bytes; });
  out.text("shardalloc leak report: pid ")
      .num(uint64_t(getpid()))
      .text(", one sample per ")
      .num(g_rate)
      .text(" bytes on average\n");
  out.text("live: ")
      .num(snap.count)
      .text(" sampled blocks, about ")
      .num(uint64_t(total + 0.5))
      .text(" bytes in ")
      .num(groups)
      .text(" allocation stacks");
  if (snap.dropped != 0) out.text(" (").num(snap.dropped).text(" samples dropped: table full)");
  out.text("\n");
  if (g != nullptr) {
    uint32_t n = 0;
    for_each_group(snap, [&](uint32_t first, uint32_t count, double bytes) {
      g[n++] = Group{first, count, bytes};
    });
    heap_sort(g, n, [](const Group& a, const Group& b) { return a.bytes > b.bytes; });
    for (uint32_t i = 0; i < n; ++i) {
      const Sample& s = snap.samples[g[i].first];
      out.text("\nleak: about ")
          .num(uint64_t(g[i].bytes + 0.5))
          .text(" bytes (")
          .num(g[i].count)
          .text(" sampled blocks, e.g. ")
          .num(s.size)
          .text(" bytes) allocated at:\n");
      for (uint32_t k = 0; k < s.depth; ++k) put_frame_line(out, s.frames[k]);
    }
    munmap(g, group_bytes);
  }
  return finish(out);
}

}  // namespace

int heap_profile_write(int fd) {
  return write_grouped([fd](const Snapshot& snap) { return write_folded(fd, snap); });
}

int heap_profile_write_leaks(int fd) {
  return write_grouped([fd](const Snapshot& snap) { return write_leaks(fd, snap); });
}

}  // namespace shardalloc::platform
