// Run under LD_PRELOAD=libshardalloc.so: dlopens a plugin (argv[1]) that
// allocates with malloc / new, and checks that the plugin's allocations are
// shardalloc's, that blocks cross the boundary in both directions, that the
// plugin works from several threads, and that dlopen / dlclose cycles (whose
// static constructors and destructors allocate) are fine.
#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "override_check.h"

namespace {

struct Plugin {
  void* handle;
  void* (*alloc)(size_t);
  void (*free_)(void*);
  size_t (*usable)(void*);
  void* (*new_array)(size_t);
  void (*delete_array)(void*);
  const char* (*banner)();
  long (*work)(int);
};

int g_failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "dlopen_user: FAIL: %s\n", what);
    ++g_failures;
  }
}

bool open_plugin(const char* path, Plugin* p) {
  p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (p->handle == nullptr) {
    std::fprintf(stderr, "dlopen_user: dlopen(%s): %s\n", path, dlerror());
    return false;
  }
  p->alloc = reinterpret_cast<void* (*)(size_t)>(dlsym(p->handle, "plugin_alloc"));
  p->free_ = reinterpret_cast<void (*)(void*)>(dlsym(p->handle, "plugin_free"));
  p->usable = reinterpret_cast<size_t (*)(void*)>(dlsym(p->handle, "plugin_usable"));
  p->new_array = reinterpret_cast<void* (*)(size_t)>(dlsym(p->handle, "plugin_new_array"));
  p->delete_array = reinterpret_cast<void (*)(void*)>(dlsym(p->handle, "plugin_delete_array"));
  p->banner = reinterpret_cast<const char* (*)()>(dlsym(p->handle, "plugin_banner"));
  p->work = reinterpret_cast<long (*)(int)>(dlsym(p->handle, "plugin_work"));
  return p->alloc && p->free_ && p->usable && p->new_array && p->delete_array && p->banner &&
         p->work;
}

long expected_work(int rounds) { return long(rounds) * (rounds - 1) / 2; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dlopen_user PLUGIN.so\n");
    return 2;
  }
  shardtest::require_override("dlopen_user");
  Plugin p{};
  if (!open_plugin(argv[1], &p)) return 1;

  expect(std::strcmp(p.banner(), "dlopen_plugin loaded") == 0, "plugin constructor");
  // 21 bytes: shardalloc's 32-byte class (21 usable in checked builds), where glibc gives 24.
  const size_t banner = shardtest::library_is_checked() ? 21 : 32;
  expect(malloc_usable_size(const_cast<char*>(p.banner())) == banner,
         "plugin's strdup is not shardalloc's");

  // Plugin allocates, we free; we allocate, plugin frees.
  const size_t probe = shardtest::probe_usable(shardtest::library_is_checked());
  void* a = p.alloc(shardtest::kProbeRequest);
  expect(a != nullptr && malloc_usable_size(a) == probe, "plugin's malloc is not shardalloc's");
  std::memset(a, 1, probe);
  std::free(a);
  void* b = std::malloc(5000);
  expect(p.usable(b) == malloc_usable_size(b), "usable size differs across the boundary");
  p.free_(b);
  void* c = p.new_array(300);
  // The 320-byte class (300 usable in checked builds, the size asked for).
  expect(malloc_usable_size(c) == (shardtest::library_is_checked() ? 300u : 320u),
         "plugin's operator new[] is not shardalloc's");
  delete[] static_cast<char*>(c);
  char* d = new char[40];
  p.delete_array(d);

  expect(p.work(5000) == expected_work(5000), "plugin_work result");

  // From several threads at once, with blocks crossing threads too.
  std::atomic<int> bad{0};
  std::vector<void*> handoff(4 * 1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      if (p.work(3000 + t) != expected_work(3000 + t)) bad.fetch_add(1);
      for (int i = 0; i < 1000; ++i)
        handoff[size_t(t * 1000 + i)] = p.alloc(size_t(1 + (i * 13) % 3000));
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) p.free_(handoff[size_t(((t + 1) % 4) * 1000 + i)]);
    });
  }
  for (auto& t : threads) t.join();
  expect(bad.load() == 0, "plugin_work in threads");

  // dlclose / dlopen cycles: the constructor's and destructor's allocations.
  void* kept = p.alloc(777);  // outlives the plugin that allocated it
  expect(dlclose(p.handle) == 0, "dlclose");
  for (int i = 0; i < 20; ++i) {
    Plugin q{};
    if (!open_plugin(argv[1], &q)) return 1;
    expect(q.work(200) == expected_work(200), "plugin_work after reload");
    void* x = q.alloc(size_t(10 + i));
    q.free_(x);
    expect(dlclose(q.handle) == 0, "dlclose");
  }
  std::memset(kept, 7, 777);
  std::free(kept);

  std::printf("dlopen_user: %s\n", g_failures == 0 ? "OK" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
