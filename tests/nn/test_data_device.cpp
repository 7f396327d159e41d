// DataLoader's pin_memory and device options where no CUDA device answers (this machine, CI):
// pin_memory is ignored (PyTorch's behaviour), device = cpu changes nothing, a CUDA device is
// refused by name. tests/cuda/test_training_tools.cpp covers a GPU.
#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/framework/cuda.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <vector>

using namespace zkynet;
using zkynet::testing::error_message;

namespace {

data::TensorDataset numbered(std::int64_t n) {
  std::vector<double> x;
  for (std::int64_t i = 0; i < 2 * n; ++i) x.push_back(static_cast<double>(i));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) y[static_cast<std::size_t>(i)] = i;
  return data::TensorDataset({Tensor::from_vector(x, {n, 2}), Tensor::from_vector(y, {n})});
}

std::vector<std::vector<double>> epoch(data::DataLoader& loader) {
  std::vector<std::vector<double>> out;
  for (const data::Batch& b : loader) {
    for (const Tensor& t : b) {
      CHECK(t.device() == Device::cpu());
      out.push_back(t.to_doubles());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("DataLoader's pin_memory and device default to off and cpu", "[data]") {
  const data::DataLoaderOptions o;
  CHECK_FALSE(o.pin_memory);
  CHECK(o.device == Device::cpu());
}

TEST_CASE("DataLoader with pin_memory and no CUDA device gives the same, unpinned batches", "[data]") {
  if (cuda::is_available()) return;  // the CUDA suite checks pinned batches
  data::TensorDataset ds = numbered(10);
  data::DataLoader plain(ds, {.batch_size = 3, .shuffle = true, .seed = 7});
  data::DataLoader pinned(ds, {.batch_size = 3, .shuffle = true, .seed = 7, .pin_memory = true});
  CHECK_FALSE(pinned.pins());
  for (const data::Batch& b : pinned) {
    for (const Tensor& t : b) CHECK_FALSE(t.is_pinned());
  }
  pinned.set_epoch(0);
  CHECK(epoch(pinned) == epoch(plain));
}

TEST_CASE("DataLoader with device = cpu gives the same batches as without", "[data]") {
  data::TensorDataset ds = numbered(11);
  data::DataLoader plain(ds, {.batch_size = 4, .shuffle = true, .seed = 3});
  data::DataLoader on_cpu(ds, {.batch_size = 4, .shuffle = true, .seed = 3, .device = Device::cpu()});
  const auto expected = epoch(plain);
  CHECK(expected.size() == 6);  // 3 batches of (x, y)
  CHECK(epoch(on_cpu) == expected);
}

TEST_CASE("DataLoader refuses a CUDA device that does not answer, naming it", "[data]") {
  data::TensorDataset ds = numbered(4);
  const int n = cuda::device_count();
  const std::string message = error_message<UsageError>(
      [&] { data::DataLoader loader(ds, {.batch_size = 2, .device = Device::cuda(n)}); });
  CHECK_THAT(message, Catch::Matchers::Contains("DataLoader: device cuda:" + std::to_string(n) + " is not available"));
}
