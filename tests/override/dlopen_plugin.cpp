// A small shared library that allocates and frees with malloc / new, loaded
// with dlopen by dlopen_user (run under LD_PRELOAD=libshardalloc.so). Its
// static constructor and destructor allocate and free too, so every dlopen /
// dlclose cycle does, and it has a thread_local (dynamic TLS, allocated by
// glibc with malloc in each thread that uses it).
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#define PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

struct Registry {
  std::vector<std::string> names;
  char* banner;
  Registry() : banner(strdup("dlopen_plugin loaded")) {
    for (int i = 0; i < 100; ++i) names.push_back("plugin-entry-" + std::to_string(i));
  }
  ~Registry() { std::free(banner); }
};
Registry g_registry;

// Dynamic TLS: glibc allocates this module's TLS block with malloc in every
// thread that touches it, and frees it when the thread exits.
thread_local std::string t_scratch;

}  // namespace

PLUGIN_EXPORT void* plugin_alloc(size_t n) { return std::malloc(n); }
PLUGIN_EXPORT void plugin_free(void* p) { std::free(p); }
PLUGIN_EXPORT size_t plugin_usable(void* p) { return malloc_usable_size(p); }
PLUGIN_EXPORT void* plugin_new_array(size_t n) { return new char[n]; }
PLUGIN_EXPORT void plugin_delete_array(void* p) { delete[] static_cast<char*>(p); }
PLUGIN_EXPORT const char* plugin_banner() { return g_registry.banner; }

// Allocation work with a checkable result: returns sum of 0..rounds-1 computed
// through strings, maps and reallocated buffers, or -1 on an inconsistency.
PLUGIN_EXPORT long plugin_work(int rounds) {
  std::map<std::string, long> m;
  char* buf = nullptr;
  size_t len = 0;
  for (int i = 0; i < rounds; ++i) {
    std::string key(1, 'k');
    key += std::to_string(i % 97);
    t_scratch += key;
    if (t_scratch.size() > 4000) t_scratch.clear();
    m[key] += i;
    char* dup = strdup(key.c_str());
    buf = static_cast<char*>(std::realloc(buf, len + std::strlen(dup) + 1));
    if (buf == nullptr) return -1;
    std::memcpy(buf + len, dup, std::strlen(dup) + 1);
    len += std::strlen(dup);
    std::free(dup);
    if (i % 50 == 49) {
      std::free(buf);
      buf = nullptr;
      len = 0;
    }
  }
  std::free(buf);
  long total = 0;
  for (auto& [k, v] : m) total += v;
  return total;
}
