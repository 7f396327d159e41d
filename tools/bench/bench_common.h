// Shared helpers for zkynet's benchmark programs: wall clock, median/min/max statistics,
// and the one-line JSON format of the peer (PyTorch) scripts in shared/peers/:
//   {"bench": NAME, "results": {KEY: {"median": .., "min": .., "max": .., "n": ..}, ...},
//    "meta": {...}}
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>  // environ (g++ defines _GNU_SOURCE)

namespace zkynet::bench {

inline double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stats {
  double median = 0, min = 0, max = 0;
  std::size_t n = 0;
};

inline Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.median = s.n % 2 ? v[s.n / 2] : 0.5 * (v[s.n / 2 - 1] + v[s.n / 2]);
  s.min = v.front();
  s.max = v.back();
  return s;
}

// rate = scale / time; min and max swap, so "max" is the fastest sample (as _common.py does).
inline Stats invert(const Stats& t, double scale) {
  return {scale / t.median, scale / t.max, scale / t.min, t.n};
}

inline std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

inline std::string json(const Stats& s) {
  return "{\"median\": " + num(s.median) + ", \"min\": " + num(s.min) + ", \"max\": " + num(s.max) +
         ", \"n\": " + std::to_string(s.n) + "}";
}

inline std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// An ordered JSON object built from already-encoded values.
class Object {
 public:
  Object& add(const std::string& key, const std::string& encoded) {
    items_.emplace_back(key, encoded);
    return *this;
  }
  Object& add(const std::string& key, const Stats& s) { return add(key, json(s)); }
  Object& add_number(const std::string& key, double x) { return add(key, num(x)); }
  Object& add_string(const std::string& key, const std::string& s) { return add(key, quoted(s)); }
  std::string str() const {
    std::string out = "{";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (i) out += ", ";
      out += quoted(items_[i].first) + ": " + items_[i].second;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// The environment variables that change kernel behaviour (as _common.py records them).
inline std::string env_json() {
  std::vector<std::string> names;
  for (char** e = ::environ; *e; ++e) {
    const std::string kv = *e;
    for (const char* prefix : {"OPENBLAS", "OMP", "MKL", "GOMP", "KMP", "GLIBC_TUNABLES", "MALLOC"}) {
      if (kv.rfind(prefix, 0) == 0) {
        names.push_back(kv);
        break;
      }
    }
  }
  std::sort(names.begin(), names.end());
  Object o;
  for (const auto& kv : names) {
    const auto eq = kv.find('=');
    o.add_string(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
  }
  return o.str();
}

// "--name value" from argv, else `fallback`.
inline long arg_long(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

inline std::string arg_str(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

inline bool arg_flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

inline void emit(const std::string& bench, const Object& results, const Object& meta) {
  std::printf("{\"bench\": %s, \"results\": %s, \"meta\": %s}\n", quoted(bench).c_str(), results.str().c_str(),
              meta.str().c_str());
  std::fflush(stdout);
}

}  // namespace zkynet::bench
