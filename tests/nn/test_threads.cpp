// What may run on several threads at once: the measurements behind the README's thread-safety
// paragraph. Each case runs the same work on two std::threads and compares every result, bit
// for bit, with the same work done on one thread. Sizes are large enough that the kernels split
// across the thread pool and GEMMs go to OpenBLAS, as in training.
#include <zkynet/zkynet.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace zkynet;

namespace {

constexpr int kThreads = 2;

// Modules are not copyable; layers draw from nn's default generator, so build them on one thread.
std::unique_ptr<nn::Sequential> make_mlp(std::uint64_t seed) {
  nn::manual_seed(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->add<nn::Linear>(64, 256);
  net->add<nn::ReLU>();
  net->add<nn::Linear>(256, 10);
  return net;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<std::size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

// Runs body(thread index) on kThreads threads at once; returns each thread's count of
// mismatches, or rethrows the first exception a thread raised.
std::vector<int> run_threads(const std::function<int(int)>& body) {
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::exception_ptr> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        mismatches[t] = body(t);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return mismatches;
}

}  // namespace

TEST_CASE("two threads calling one Sequential at once get the single-threaded output bit for bit") {
  auto mlp = make_mlp(1);
  nn::Sequential& net = *mlp;
  Generator gen(2);
  const Tensor x = Tensor::randn({256, 64}, gen, DType::Float32);
  const Tensor expected = net(x).value();

  const auto mismatches = run_threads([&](int) {
    int bad = 0;
    for (int i = 0; i < 300; ++i) {
      if (!same_bits(net(x).value(), expected)) ++bad;
    }
    return bad;
  });
  CHECK(mismatches == std::vector<int>(kThreads, 0));
}

TEST_CASE("two threads taking VJPs of their own graphs of one Sequential get the single-threaded gradients bit for bit") {
  auto mlp = make_mlp(3);
  nn::Sequential& net = *mlp;
  Generator gen(4);
  const Tensor x = Tensor::randn({256, 64}, gen, DType::Float32);
  const Tensor y = Tensor::randn({256, 10}, gen, DType::Float32);
  const auto params = net.parameters();
  // vjp() keeps gradients per graph; back() would also add them into the shared Parameter::grad().
  const auto gradients = [&] {
    ModuleGraph loss(op::mse_loss(net(x), y));
    loss.vjp(Tensor::ones({}, DType::Float32));
    std::vector<Tensor> grads{loss.grad(net.input("x"))};
    for (const auto& p : params) grads.push_back(loss.grad(p));
    return grads;
  };
  const std::vector<Tensor> expected = gradients();

  const auto mismatches = run_threads([&](int) {
    int bad = 0;
    for (int i = 0; i < 150; ++i) {
      const auto grads = gradients();
      for (std::size_t k = 0; k < grads.size(); ++k) {
        if (!same_bits(grads[k], expected[k])) ++bad;
      }
    }
    return bad;
  });
  CHECK(mismatches == std::vector<int>(kThreads, 0));
  for (const auto& p : params) CHECK_FALSE(p.grad().defined());  // nothing was accumulated
}

TEST_CASE("two threads each training their own model with back() end with the single-threaded parameters bit for bit") {
  Generator gen(6);
  const Tensor x = Tensor::randn({256, 64}, gen, DType::Float32);
  const Tensor y = Tensor::randn({256, 10}, gen, DType::Float32);
  const auto train = [&](nn::Sequential& net) {
    optim::SGD sgd(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    for (int step = 0; step < 60; ++step) {
      ModuleGraph loss(op::mse_loss(net(x), y));
      sgd.zero_grad();
      loss.back();
      sgd.step();
    }
  };
  auto reference = make_mlp(7);
  train(*reference);
  std::vector<std::unique_ptr<nn::Sequential>> nets;
  for (int t = 0; t < kThreads; ++t) nets.push_back(make_mlp(7));  // built before the threads start

  const auto mismatches = run_threads([&](int t) {
    train(*nets[t]);
    int bad = 0;
    const auto got = nets[t]->parameters(), want = reference->parameters();
    for (std::size_t k = 0; k < got.size(); ++k) {
      if (!same_bits(got[k].value(), want[k].value()) || !same_bits(got[k].grad(), want[k].grad())) ++bad;
    }
    return bad;
  });
  CHECK(mismatches == std::vector<int>(kThreads, 0));
}
