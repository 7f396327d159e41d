// Data sets for the examples, read from files Debian packages ship:
//   the handwritten digits (python3-sklearn): 1797 rows of 64 pixels (0..16) then the label, gzipped;
//   the yearly sunspot numbers 1700-2008 (python3-statsmodels): a CSV with YEAR, SUNACTIVITY.
#pragma once

#include <zkynet/framework/tensor.h>

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <cstdlib>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

namespace examples {

inline const char* kDigitsPath = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
inline const char* kSunspotsPath = "/usr/lib/python3/dist-packages/statsmodels/datasets/sunspots/sunspots.csv";

// The whole (decompressed) text of a file, plain or gzipped (zlib's gzread reads both).
inline std::string read_text(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path + " (is the Debian package installed?)");
  std::string text;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  gzclose(f);
  if (n < 0) throw std::runtime_error("cannot read " + path);
  return text;
}

// 0..n-1 in an order fixed by `seed` (Fisher-Yates over std::mt19937_64).
inline std::vector<std::int64_t> permutation(std::int64_t n, std::uint64_t seed) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  for (std::int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<std::size_t>(i)], order[rng() % (i + 1)]);
  return order;
}

struct Digits {
  zkynet::Tensor x_train, y_train, x_test, y_test;  // x (N, 64) float32 in [0, 1]; y (N) int64
};

// The digits, shuffled with `seed` and split: the first test_fraction of the rows for testing.
inline Digits load_digits(std::uint64_t seed = 0, double test_fraction = 0.2) {
  std::vector<float> pixels;
  std::vector<std::int64_t> labels;
  // ZKYNET_DIGITS names another copy (the GPU machine has no scikit-learn: tools/gpu_bundle.sh packs it).
  const char* path = std::getenv("ZKYNET_DIGITS");
  std::istringstream lines(read_text(path != nullptr && *path != '\0' ? path : kDigitsPath));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::vector<double> row;
    for (std::string v; std::getline(fields, v, ',');) row.push_back(std::stod(v));
    if (row.size() != 65) throw std::runtime_error("digits: expected 65 values per row");
    for (int i = 0; i < 64; ++i) pixels.push_back(static_cast<float>(row[static_cast<std::size_t>(i)] / 16.0));
    labels.push_back(static_cast<std::int64_t>(row[64]));
  }
  const auto n = static_cast<std::int64_t>(labels.size());
  const auto n_test = static_cast<std::int64_t>(static_cast<double>(n) * test_fraction);
  const std::vector<std::int64_t> order = permutation(n, seed);
  auto take = [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> x;
    std::vector<std::int64_t> y;
    for (std::int64_t k = begin; k < end; ++k) {
      const auto i = static_cast<std::size_t>(order[static_cast<std::size_t>(k)]);
      x.insert(x.end(), pixels.begin() + static_cast<std::ptrdiff_t>(64 * i),
               pixels.begin() + static_cast<std::ptrdiff_t>(64 * i + 64));
      y.push_back(labels[i]);
    }
    return std::pair{zkynet::Tensor::from_vector(x, {end - begin, 64}), zkynet::Tensor::from_vector(y, {end - begin})};
  };
  Digits d;
  std::tie(d.x_test, d.y_test) = take(0, n_test);
  std::tie(d.x_train, d.y_train) = take(n_test, n);
  return d;
}

// Fraction of rows whose largest logit is at the label: logits (N, C) float32, labels (N) int64.
inline double accuracy(const zkynet::Tensor& logits, const zkynet::Tensor& labels) {
  const zkynet::Tensor l = logits.contiguous();
  const std::int64_t n = l.size(0), c = l.size(1);
  const float* p = l.data<float>();
  const std::int64_t* y = labels.contiguous().data<std::int64_t>();
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t best = 0;
    for (std::int64_t k = 1; k < c; ++k) best = p[i * c + k] > p[i * c + best] ? k : best;
    correct += best == y[i];
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

struct Series {
  std::vector<double> time, value;
};

// The yearly sunspot numbers: time = YEAR, value = SUNACTIVITY.
inline Series load_sunspots() {
  Series s;
  // ZKYNET_SUNSPOTS names another copy (the GPU machine has no statsmodels: tools/gpu_bundle.sh packs it).
  const char* path = std::getenv("ZKYNET_SUNSPOTS");
  std::istringstream lines(read_text(path != nullptr && *path != '\0' ? path : kSunspotsPath));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const auto comma = line.find(',');
    s.time.push_back(std::stod(line.substr(0, comma)));
    s.value.push_back(std::stod(line.substr(comma + 1)));
  }
  return s;
}

}  // namespace examples
