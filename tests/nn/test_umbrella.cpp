// <zkynet/zkynet.h> alone is enough for a program: layers, optimizers, data, the functional
// transforms and the operators, in one include.
#include <zkynet/zkynet.h>

#include <catch2/catch.hpp>

using namespace zkynet;

TEST_CASE("the umbrella header alone builds, trains and differentiates a model") {
  Generator gen(5);
  nn::Sequential model;
  model.add<nn::Linear>(3, 8);
  model.add<nn::ReLU>();
  model.add<nn::Linear>(8, 1);
  optim::Adam adam(model.parameters(), {.lr = 1e-2});
  const Tensor x = Tensor::randn({32, 3}, gen, DType::Float32);  // layers hold float32, as in torch
  const Tensor y = kernels::sum(x, {1}, true);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    ModuleGraph loss(op::mse_loss(model(x), y));  // extends the model call's graph
    adam.zero_grad();
    loss.back();
    adam.step();
    (step == 0 ? first : last) = loss.value().item();
  }
  CHECK(last < 0.1 * first);
  const auto df = grad([](std::span<const NodeRef> v) { return op::sum(op::square(v[0])); });
  CHECK(allclose(df({Tensor{1.0, -2.0}})[0], Tensor{2.0, -4.0}));
}
