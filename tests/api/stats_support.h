// Helpers shared by the statistics tests: a strict JSON syntax checker and a
// parser of heap snapshots (docs/introspection.md, "Snapshot format").
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace shardtest {

// ---- a small strict JSON syntax checker --------------------------------------
struct Json {
  const char* p;
  bool ws() {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') ++p;
    return true;
  }
  bool lit(char c) { return ws() && *p == c ? (++p, true) : false; }
  bool string() {
    if (!lit('"')) return false;
    while (*p != '"') {
      if (*p == '\0' || static_cast<unsigned char>(*p) < 0x20) return false;
      if (*p == '\\') ++p;
      ++p;
    }
    ++p;
    return true;
  }
  bool number() {
    ws();
    const char* s = p;
    if (*p == '-') ++p;
    while (*p >= '0' && *p <= '9') ++p;
    return p > s && !(s[0] == '0' && p - s > 1);
  }
  bool value() {
    ws();
    if (*p == '{') {
      ++p;
      if (lit('}')) return true;
      do {
        if (!string() || !lit(':') || !value()) return false;
      } while (lit(','));
      return lit('}');
    }
    if (*p == '[') {
      ++p;
      if (lit(']')) return true;
      do {
        if (!value()) return false;
      } while (lit(','));
      return lit(']');
    }
    if (*p == '"') return string();
    return number();
  }
  static bool valid(const char* text) {
    Json j{text};
    return j.value() && j.ws() && *j.p == '\0';
  }
};

// ---- heap snapshots --------------------------------------------------------------

// One line of a snapshot: its record type and its key=value fields.
struct Record {
  std::string type;
  std::map<std::string, std::string> kv;
  uint64_t num(const std::string& k) const {
    auto it = kv.find(k);
    return it == kv.end() ? UINT64_MAX : std::strtoull(it->second.c_str(), nullptr, 0);
  }
  bool has(const std::string& k) const { return kv.count(k) != 0; }
};

inline std::vector<Record> parse_snapshot(const std::string& text) {
  std::vector<Record> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    Record r;
    ls >> r.type;
    std::string tok;
    while (ls >> tok) {
      const size_t eq = tok.find('=');
      if (eq != std::string::npos) r.kv[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace shardtest
