// Devices without a GPU: what a CPU-only machine can check of the CUDA seam. The index
// arithmetic the CUDA kernels use (strided_index.h) against the CPU's strided loops; the host
// guard on device memory; operands on two devices; the answers of zkynet::cuda without a device.
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/operator.h>
#include <zkynet/internal/strided_index.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/normalization.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/recurrent.h>
#include <zkynet/ops/strided.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// Offsets the CPU kernels' strided loop visits, in row-major order over `shape`.
std::vector<std::int64_t> cpu_offsets(const Tensor& t, const Shape& shape) {
  const Tensor view = t.expand(shape);
  std::vector<std::int64_t> out;
  const std::array<const Shape*, 1> strides{&view.strides()};
  kernels::detail::for_each_strided<1>(shape, strides, [&](const std::array<std::int64_t, 1>& off) { out.push_back(off[0]); });
  return out;
}

std::vector<std::int64_t> device_offsets(const Tensor& t, const Shape& shape) {
  const detail::StridedLayout l = detail::layout_over(t, shape);
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < shape_numel(shape); ++i) out.push_back(l.at(i));
  return out;
}

// A tensor that claims to live on cuda:0 (no memory behind it): enough to test the checks
// that run before any kernel.
Tensor fake_cuda(const Shape& shape) {
  return Tensor::from_blob(reinterpret_cast<void*>(std::uintptr_t{4096}), shape, DType::Float32, [](void*) {},
                           Device::cuda());
}

}  // namespace

TEST_CASE("device index arithmetic equals the CPU's strided loop: contiguous, transposed, sliced") {
  const Tensor t = Tensor::arange(60).reshape({3, 4, 5});
  CHECK(device_offsets(t, t.shape()) == cpu_offsets(t, t.shape()));
  const Tensor tr = t.permute({2, 0, 1});
  CHECK(device_offsets(tr, tr.shape()) == cpu_offsets(tr, tr.shape()));
  const Tensor sl = t.slice(2, 1, 5, 2).slice(0, 1, 3);
  CHECK(device_offsets(sl, sl.shape()) == cpu_offsets(sl, sl.shape()));
}

TEST_CASE("device index arithmetic equals the CPU's for broadcast operands") {
  const Tensor row = Tensor::arange(5).reshape({1, 5});
  CHECK(device_offsets(row, {4, 5}) == cpu_offsets(row, {4, 5}));
  const Tensor col = Tensor::arange(4).reshape({4, 1});
  CHECK(device_offsets(col, {2, 4, 5}) == cpu_offsets(col, {2, 4, 5}));
  const Tensor scalar = Tensor::scalar(1.0);
  CHECK(device_offsets(scalar, {3, 2}) == std::vector<std::int64_t>(6, 0));
}

TEST_CASE("a contiguous operand's layout is one axis of stride 1 (no division per element)") {
  const detail::StridedLayout l = detail::layout_over(Tensor::zeros({2, 3, 4}), {2, 3, 4});
  CHECK(l.ndim == 1);
  CHECK(l.stride[0] == 1);
  CHECK(l.at(17) == 17);
}

TEST_CASE("devices parse from text") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK_THAT(error_message<TypeError>([] { Device::parse("gpu"); }), Contains("unknown device 'gpu'"));
  CHECK_THROWS_AS(Device::parse("cuda:x"), TypeError);
}

TEST_CASE("without a GPU no CUDA device answers, and allocating on one says so") {
  if (cuda::is_available()) return;  // this machine has a GPU: tests/cuda covers it
  CHECK(cuda::device_count() == 0);
  const std::string message = error_message<UsageError>([] { Tensor::zeros({2}, DType::Float32, Device::cuda()); });
  CHECK_THAT(message, Contains("cuda:0"));
}

TEST_CASE("host code cannot read a device tensor's memory") {
  const Tensor t = fake_cuda({3});
  CHECK(t.device() == Device::cuda());
  CHECK_THAT(error_message<DeviceError>([&] { t.data<float>(); }), Contains("copy it with .cpu()"));
  CHECK_THROWS_AS(t.raw_data(), DeviceError);
  CHECK(t.device_raw_data() != nullptr);
}

TEST_CASE("an operator refuses operands on two devices, naming both") {
  const Tensor on_device = fake_cuda({3});
  const std::string message = error_message<DeviceError>([&] { op::add(on_device, Tensor::ones({3}, DType::Float32)); });
  CHECK_THAT(message, Contains("add: operands on two devices"));
  CHECK_THAT(message, Contains("cuda:0"));
  CHECK_THAT(message, Contains("cpu"));
}

namespace {

// An operator whose only kernel reads host memory: its forward throws DeviceError for a CUDA
// operand, before touching it (as the LAPACK-based operators do).
struct HostOnlyDef {
  static constexpr std::string_view name = "host_only";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const {
    if (!x.device().is_cpu()) throw DeviceError("its kernel reads host memory");
    return x.clone();
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {c.grad}; }
};

}  // namespace

TEST_CASE("a kernel given operands on two devices names them, not a missing CUDA implementation") {
  // batch_norm's running statistics are not operands of the node: its kernel checks them,
  // before touching memory (eval mode: the statistics are read, not computed).
  const std::string message = error_message<TypeError>([] {
    op::batch_norm(fake_cuda({2, 3}), Tensor::zeros({3}, DType::Float32), Tensor::ones({3}, DType::Float32), NodeRef(),
                   NodeRef(), false);
  });
  CHECK_THAT(message, Contains("batch_norm: operands on different devices (cuda:0 and cpu)"));
  CHECK_THAT(message, !Contains("no CUDA implementation"));
}

TEST_CASE("an operator without a CUDA kernel says so, naming itself") {
  const std::string message = error_message<DeviceError>([] { apply(HostOnlyDef{}, NodeRef(fake_cuda({2, 3}))); });
  CHECK_THAT(message, Contains("host_only has no CUDA implementation yet"));
  CHECK_THAT(message, Contains("its kernel reads host memory"));
}

TEST_CASE("convolution, pooling, normalization and recurrent operators on CUDA operands in a build without CUDA "
          "say so") {
  if (cuda::built()) return;  // their CUDA kernels would read the fake memory
  const auto says = [](const std::string& op, auto&& call) {
    INFO(op);
    CHECK_THAT(error_message<UsageError>(call), Contains(op + " has no CUDA implementation in this build"));
  };
  says("conv2d", [] { op::conv2d(fake_cuda({1, 1, 4, 4}), fake_cuda({2, 1, 3, 3})); });
  says("max_pool2d", [] { op::max_pool2d(fake_cuda({1, 1, 4, 4}), {2, 2}); });
  says("avg_pool2d", [] { op::avg_pool2d(fake_cuda({1, 1, 4, 4}), {2, 2}); });
  says("layer_norm", [] { op::layer_norm(fake_cuda({2, 3}), {3}, fake_cuda({3}), fake_cuda({3})); });
  says("batch_norm", [] { op::batch_norm(fake_cuda({2, 3}), Tensor(), Tensor(), NodeRef(), NodeRef(), true); });
  says("lstm", [] {
    op::lstm(fake_cuda({2, 1, 3}), fake_cuda({1, 2}), fake_cuda({1, 2}), fake_cuda({8, 3}), fake_cuda({8, 2}),
             fake_cuda({8}), fake_cuda({8}));
  });
  says("gru", [] {
    op::gru(fake_cuda({2, 1, 3}), fake_cuda({1, 2}), fake_cuda({6, 3}), fake_cuda({6, 2}), fake_cuda({6}),
            fake_cuda({6}));
  });
  says("rnn_relu", [] {
    op::rnn(fake_cuda({2, 1, 3}), fake_cuda({1, 2}), fake_cuda({2, 3}), fake_cuda({2, 2}), fake_cuda({2}),
            fake_cuda({2}), op::RnnActivation::Relu);  // no operand left for the operator to fill with zeros
  });
}
