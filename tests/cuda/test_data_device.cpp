// DataLoader(pin_memory, device = cuda) on a GPU (issue 13 §2): the same batches as the CPU
// loader, a training step fed by it equals the CPU's, an epoch left early leaves nothing
// broken. Part of the CUDA suite (skipped without a device).
#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/module.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>

#include <vector>

using namespace zkynet;

namespace {

const Device kGpu = Device::cuda();

data::TensorDataset dataset(std::int64_t n) {
  Generator gen(10);
  return data::TensorDataset({Tensor::randn({n, 3}, gen, DType::Float32), Tensor::randn({n, 2}, gen, DType::Float32)});
}

}  // namespace

TEST_CASE("DataLoader with pin_memory delivers pinned host batches", "[cuda][data]") {
  data::TensorDataset set = dataset(10);
  data::DataLoader loader(set, {.batch_size = 4, .pin_memory = true});
  CHECK(loader.pins());
  for (const data::Batch& b : loader) {
    for (const Tensor& t : b) CHECK(t.is_pinned());
  }
}

TEST_CASE("DataLoader(device = cuda, pin_memory) yields the CPU loader's batches", "[cuda][data]") {
  data::TensorDataset set = dataset(23);
  for (bool pin : {false, true}) {
    data::DataLoader cpu(set, {.batch_size = 5, .shuffle = true, .seed = 4});
    data::DataLoader gpu(set, {.batch_size = 5, .shuffle = true, .seed = 4, .pin_memory = pin, .device = kGpu});
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::vector<data::Batch> want;
      for (const data::Batch& b : cpu) want.push_back(b);
      std::int64_t i = 0;
      for (auto it = gpu.begin(); it != gpu.end(); ++it, ++i) {
        REQUIRE(i < static_cast<std::int64_t>(want.size()));
        for (std::size_t f = 0; f < 2; ++f) {
          CHECK((*it)[f].device() == kGpu);
          CHECK((*it)[f].to_doubles() == want[static_cast<std::size_t>(i)][f].to_doubles());
        }
      }
      CHECK(i == 5);
    }
  }
}

TEST_CASE("an epoch left after one batch drops its prefetched copy safely", "[cuda][data]") {
  data::TensorDataset set = dataset(12);
  data::DataLoader gpu(set, {.batch_size = 4, .pin_memory = true, .device = kGpu});
  for (const data::Batch& b : gpu) {
    CHECK(b[0].shape() == Shape{4, 3});
    break;  // batch 1 is being copied: the iterator's end must order its memory's reuse
  }
  std::int64_t batches = 0;
  for (const data::Batch& b : gpu) batches += b[0].size(0) > 0;
  CHECK(batches == 3);
}

TEST_CASE("SGD steps fed by DataLoader(device = cuda, pin_memory) match the CPU's", "[cuda][data]") {
  data::TensorDataset set = dataset(40);
  std::vector<std::vector<double>> params[2];
  for (int d = 0; d < 2; ++d) {
    const Device device = d == 0 ? Device::cpu() : kGpu;
    nn::manual_seed(11);
    nn::Sequential m;
    m.add<nn::Linear>(3, 8, nn::LinearOptions{.dtype = DType::Float32});
    m.add<nn::Linear>(8, 2, nn::LinearOptions{.dtype = DType::Float32});
    m.to(device);
    optim::SGD opt(m.parameters(), {.lr = 0.05, .momentum = 0.9});
    data::DataLoader loader(set, {.batch_size = 8, .shuffle = true, .seed = 3, .pin_memory = d == 1, .device = device});
    for (int epoch = 0; epoch < 2; ++epoch) {
      for (const data::Batch& b : loader) {
        REQUIRE(b[0].device() == device);
        opt.zero_grad();
        ModuleGraph out = m(b[0]);
        const NodeRef diff = op::sub(out.root(), NodeRef(b[1]));
        ModuleGraph(op::sum(op::mult(diff, diff))).back();
        opt.step();
      }
    }
    for (const Parameter& p : m.parameters()) params[d].push_back(p.value().to_doubles());
  }
  REQUIRE(params[0].size() == params[1].size());
  for (std::size_t i = 0; i < params[0].size(); ++i) {
    INFO("parameter " << i);
    REQUIRE(params[0][i].size() == params[1][i].size());
    for (std::size_t j = 0; j < params[0][i].size(); ++j) CHECK(params[1][i][j] == Approx(params[0][i][j]).epsilon(1e-4).margin(1e-5));
  }
}
