// Shape: the dimensions (or strides) of a tensor, stored inline.
//
//   Shape s{2, 3};  s.push_back(4);  s == Shape{2, 3, 4};
//
// A vector-like type without heap allocation: tensors are copied on every operator call,
// and with std::vector each copy cost two allocations (a third of the per-operator time).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <zkynet/framework/error.h>
#include <zkynet/framework/host_device.h>

#include <string>

namespace zkynet {

class Shape {
 public:
  static constexpr std::size_t kMaxDims = 16;
  using value_type = std::int64_t;
  using iterator = std::int64_t*;
  using const_iterator = const std::int64_t*;

  Shape() = default;
  explicit Shape(std::size_t n, std::int64_t value = 0) : size_(checked(n)) { std::fill_n(data_.data(), n, value); }
  Shape(std::initializer_list<std::int64_t> values) : size_(checked(values.size())) {
    std::copy(values.begin(), values.end(), data_.data());
  }
  template <class It>
  Shape(It first, It last) : size_(checked(static_cast<std::size_t>(std::distance(first, last)))) {
    std::copy(first, last, data_.data());
  }

  ZKYNET_HD std::size_t size() const { return size_; }
  ZKYNET_HD bool empty() const { return size_ == 0; }
  std::int64_t* data() { return data_.data(); }
  ZKYNET_HD const std::int64_t* data() const { return data_.data(); }
  std::int64_t& operator[](std::size_t i) { return data_[i]; }
  ZKYNET_HD std::int64_t operator[](std::size_t i) const { return data_[i]; }
  iterator begin() { return data_.data(); }
  iterator end() { return data_.data() + size_; }
  ZKYNET_HD const_iterator begin() const { return data_.data(); }
  ZKYNET_HD const_iterator end() const { return data_.data() + size_; }
  std::int64_t& front() { return data_[0]; }
  ZKYNET_HD std::int64_t front() const { return data_[0]; }
  std::int64_t& back() { return data_[size_ - 1]; }
  ZKYNET_HD std::int64_t back() const { return data_[size_ - 1]; }

  void push_back(std::int64_t v) {
    checked(size_ + 1);
    data_[size_++] = v;
  }
  void pop_back() { --size_; }
  void resize(std::size_t n, std::int64_t value = 0) {
    checked(n);
    for (std::size_t i = size_; i < n; ++i) data_[i] = value;
    size_ = n;
  }
  iterator insert(const_iterator pos, std::int64_t v) { return insert(pos, &v, &v + 1); }
  iterator insert(const_iterator pos, std::initializer_list<std::int64_t> values) {
    return insert(pos, values.begin(), values.end());
  }
  template <class It>
  iterator insert(const_iterator pos, It first, It last) {
    const auto at = static_cast<std::size_t>(pos - begin());
    const auto n = static_cast<std::size_t>(std::distance(first, last));
    checked(size_ + n);
    std::copy_backward(data_.data() + at, data_.data() + size_, data_.data() + size_ + n);
    std::copy(first, last, data_.data() + at);
    size_ += n;
    return begin() + at;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  static std::size_t checked(std::size_t n) {
    if (n > kMaxDims) {
      throw ShapeError("zkynet: tensors have at most " + std::to_string(kMaxDims) + " dimensions, got " +
                              std::to_string(n));
    }
    return n;
  }

  std::array<std::int64_t, kMaxDims> data_{};
  std::size_t size_ = 0;
};

}  // namespace zkynet
