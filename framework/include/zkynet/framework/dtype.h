// Element types and devices of zkynet tensors.
//
//   zkynet::DType t = zkynet::dtype_of<float>();   // DType::Float32
//   zkynet::Device d = zkynet::Device::cpu();
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zkynet {

enum class DType : std::uint8_t { Float32, Float64, Int64 };

std::string_view dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);
inline bool is_floating(DType dtype) { return dtype != DType::Int64; }

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::Int64; }

// Calls f(T{}) with T the C++ type of `dtype`.
template <class F>
decltype(auto) dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::Int64: break;
  }
  return f(std::int64_t{});
}

// Like dispatch_dtype, for kernels defined on floating types only.
template <class F>
decltype(auto) dispatch_floating(DType dtype, F&& f) {
  if (dtype == DType::Float32) return f(float{});
  return f(double{});
}

// A CUDA device is DeviceKind::CUDA; builds without CUDA reject it with a clear error.
enum class DeviceKind : std::uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {DeviceKind::CUDA, index}; }
  // "cpu", "cuda" or "cuda:N"; throws TypeError for anything else.
  static Device parse(std::string_view text);
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  std::string str() const;
  friend bool operator==(const Device&, const Device&) = default;
};

}  // namespace zkynet
