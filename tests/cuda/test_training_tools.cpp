// Training tools with CUDA models (issue 13 §2): checkpoints load onto the parameters' device
// and save from it, DOT labels name the device, DataLoader batches moved with .to(device).
// Part of the CUDA suite (skipped without a device).
#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/module.h>
#include <zkynet/nn/checkpoint.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

using namespace zkynet;

namespace {

const Device kGpu = Device::cuda();

std::string temp_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("zkynet-cuda-tools-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void require_same(const nn::StateDict& a, const nn::StateDict& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    REQUIRE(a[i].first == b[i].first);
    CHECK(a[i].second.to_doubles() == b[i].second.to_doubles());
  }
}

// Linear(3, 4) -> Linear(4, 2), seeded.
void build(nn::Sequential& m, std::uint64_t seed) {
  nn::manual_seed(seed);
  m.add<nn::Linear>(3, 4);
  m.add<nn::Linear>(4, 2);
}

}  // namespace

TEST_CASE("load_checkpoint into a CUDA model copies each value to its parameter's device", "[cuda][checkpoint]") {
  nn::Sequential saved, loaded;
  build(saved, 1);
  build(loaded, 2);
  loaded.to(kGpu);
  const std::string path = temp_file("to_cuda.h5");
  nn::save_checkpoint(saved, path);
  nn::load_checkpoint(loaded, path);
  for (const auto& [name, p] : loaded.named_parameters()) {
    INFO(name);
    CHECK(p.value().device() == kGpu);
  }
  require_same(nn::state_dict(loaded), nn::state_dict(saved));
}

TEST_CASE("save_checkpoint from a CUDA model reads the values back through the host", "[cuda][checkpoint]") {
  nn::Sequential on_gpu, on_cpu;
  build(on_gpu, 3);
  build(on_cpu, 4);
  on_gpu.to(kGpu);
  const std::string path = temp_file("from_cuda.h5");
  nn::save_checkpoint(on_gpu, path);
  nn::load_checkpoint(on_cpu, path);
  for (const auto& [name, p] : on_cpu.named_parameters()) CHECK(p.value().device().is_cpu());
  require_same(nn::state_dict(on_cpu), nn::state_dict(on_gpu));
}

TEST_CASE("a stateful LSTM's carried state saved on CUDA continues the series after loading", "[cuda][checkpoint]") {
  nn::manual_seed(5);
  nn::LSTM a(2, 3, {.stateful = true});
  nn::manual_seed(6);
  nn::LSTM b(2, 3, {.stateful = true});
  a.to(kGpu);
  b.to(kGpu);
  Generator gen(7);
  const Tensor x = Tensor::randn({4, 1, 2}, gen, DType::Float32).to(kGpu);
  a(x);
  const std::string path = temp_file("lstm_state.h5");
  nn::save_checkpoint(a, path);
  nn::load_checkpoint(b, path);
  const std::vector<double> next_a = a(x).value().to_doubles(), next_b = b(x).value().to_doubles();
  REQUIRE(next_a.size() == next_b.size());
  for (std::size_t i = 0; i < next_a.size(); ++i) CHECK(next_b[i] == Approx(next_a[i]).epsilon(1e-6).margin(1e-6));
}

TEST_CASE("DOT labels of a CUDA graph name the device", "[cuda][dot]") {
  nn::Sequential m;
  build(m, 8);
  m.to(kGpu);
  Generator gen(9);
  ModuleGraph g = m(Tensor::randn({5, 3}, gen, DType::Float32).to(kGpu));
  const std::string dot = to_dot(g);
  CHECK(dot.find("(5,2) cuda:0") != std::string::npos);
  CHECK(dot.find("(4,3) cuda:0") != std::string::npos);  // a parameter
}

TEST_CASE("DataLoader batches moved with .to(cuda) give the CPU's losses", "[cuda][data]") {
  Generator gen(10);
  const Tensor x = Tensor::randn({20, 3}, gen, DType::Float32);
  const Tensor y = Tensor::randn({20, 2}, gen, DType::Float32);
  data::TensorDataset set({x, y});
  double losses[2] = {0, 0};
  for (int d = 0; d < 2; ++d) {
    const Device device = d == 0 ? Device::cpu() : kGpu;
    nn::Sequential m;
    build(m, 11);
    m.to(device);
    data::DataLoader loader(set, {.batch_size = 8, .shuffle = true, .seed = 3});
    for (const data::Batch& b : loader) {
      const Tensor bx = b[0].to(device), by = b[1].to(device);
      REQUIRE(bx.device() == device);
      ModuleGraph out = m(bx);
      const NodeRef diff = op::sub(out.root(), NodeRef(by));
      losses[d] += ModuleGraph(op::sum(op::mult(diff, diff))).value().item();
    }
  }
  CHECK(losses[1] == Approx(losses[0]).epsilon(1e-5));
}
