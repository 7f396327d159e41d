#include <zkynet/nn/linear.h>
#include <zkynet/optim/sgd.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

using namespace zkynet;

namespace {

// One parameter w = [1, 2] with gradient g = [0.5, -1] set directly.
Parameter parameter_with_grad() {
  Parameter w("w", Tensor{1.0, 2.0});
  w.accumulate_grad(Tensor{0.5, -1.0});
  return w;
}

}  // namespace

TEST_CASE("plain SGD steps against the gradient") {
  Parameter w = parameter_with_grad();
  optim::SGD opt({w}, {.lr = 0.1});
  opt.step();
  CHECK(allclose(w.value(), Tensor{0.95, 2.1}));
}

TEST_CASE("SGD with momentum and weight decay follows torch.optim.SGD") {
  // torch 1.13: w = [1, 2], grad [0.5, -1] at both steps, lr 0.1, momentum 0.9, weight_decay 0.01
  Parameter w = parameter_with_grad();
  optim::SGD opt({w}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  opt.step();
  opt.step();
  CHECK(allclose(w.value(), Tensor{0.852151, 2.284102}, 1e-9));
}

TEST_CASE("Nesterov momentum follows torch.optim.SGD") {
  // torch 1.13: the same with nesterov=True
  Parameter w = parameter_with_grad();
  optim::SGD opt({w}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  opt.step();
  opt.step();
  CHECK(allclose(w.value(), Tensor{0.76507411, 2.45142622}, 1e-8));
}

TEST_CASE("zero_grad keeps gradient buffers and parameters without gradients are skipped") {
  Parameter w = parameter_with_grad();
  Parameter untouched("u", Tensor{3.0});
  optim::SGD opt({w, untouched}, {.lr = 1.0});
  const void* buffer = w.grad().raw_data();
  opt.zero_grad();
  CHECK(w.grad().raw_data() == buffer);
  opt.step();
  CHECK(allclose(w.value(), Tensor{1.0, 2.0}));
  CHECK(untouched.value().item() == 3.0);
}

TEST_CASE("SGD fits a linear regression") {
  Generator gen(11);
  const Tensor x = Tensor::randn({64, 3}, gen);
  const Tensor true_w = Tensor{{2.0, -1.0, 0.5}};
  const Tensor y = op::matmul(x, op::transpose(true_w)).value();
  nn::Linear model(3, 1, {.bias = false, .dtype = DType::Float64, .generator = &gen});
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.5});
  Lambda loss({"x", "y"}, [&](std::span<const NodeRef> in) { return op::mean(op::square(op::sub(model(in[0]), in[1]))); });
  for (int step = 0; step < 200; ++step) {
    opt.zero_grad();
    loss(x, y).back();
    opt.step();
  }
  CHECK(allclose(model.param("weight").value(), true_w, 1e-4, 1e-6));
}
