// Comparisons the capture-and-replay tests share: replays must equal dynamic calls bit for bit.
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace zkynet::testing {

// Same shape, dtype and bytes.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous();
  const Tensor y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<std::size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace zkynet::testing
