#include <zkynet/framework/module.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/optim_kernels.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/adam.h>
#include <zkynet/optim/clip.h>
#include <zkynet/optim/rmsprop.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::error_message;

// Reference values come from torch 1.13 (Debian's /usr/bin/python3), with the same start and
// gradients: w0 = [1, -2, 0.5, 3] (float64) and, before every step, w.grad = w**3 - t with
// t = [0.5, 1, -1, 2] (the gradient of sum(w^4/4 - t w)). The gradient depends on w, so the
// optimizers' running state matters from the second step on.
//
//   w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
//   opt = torch.optim.Adam([w], lr=0.1)
//   for _ in range(5): opt.zero_grad(); w.grad = w.detach()**3 - t; opt.step()

namespace {

const std::vector<double> kW0 = {1.0, -2.0, 0.5, 3.0};
const std::vector<double> kTarget = {0.5, 1.0, -1.0, 2.0};

Parameter start(DType dtype = DType::Float64) {
  return Parameter("w", Tensor::from_vector(kW0, {4}).to(dtype));
}

void set_cubic_grad(Parameter& w) {
  std::vector<double> g = w.value().to_doubles();
  for (std::size_t k = 0; k < g.size(); ++k) g[k] = g[k] * g[k] * g[k] - kTarget[k];
  w.zero_grad();
  w.accumulate_grad(Tensor::from_vector(g, {4}).to(w.value().dtype()));
}

// The parameter's value after each of `steps` steps.
std::vector<Tensor> trajectory(optim::Optimizer& opt, Parameter& w, int steps = 5) {
  std::vector<Tensor> out;
  for (int s = 0; s < steps; ++s) {
    set_cubic_grad(w);
    opt.step();
    out.push_back(w.value().clone());
  }
  return out;
}

// float64 updates follow torch's operation order, so agreement is to rounding.
bool matches_torch(const Tensor& got, const Tensor& expected) { return allclose(got, expected, 1e-12, 1e-15); }

}  // namespace

// ---- Adam --------------------------------------------------------------------------------

TEST_CASE("Adam follows torch.optim.Adam over five steps") {
  Parameter w = start();
  optim::Adam opt({w}, {.lr = 0.1});
  const auto values = trajectory(opt, w);
  // torch 1.13: Adam([w], lr=0.1), after steps 1 and 5
  CHECK(matches_torch(values[0], Tensor{0.900000002, -1.900000000111111, 0.4000000008888889, 2.90000000004}));
  CHECK(matches_torch(values[4],
                      Tensor{0.6623603315828771, -1.5097914062916422, 0.0018162953057620779, 2.507597748030969}));
}

TEST_CASE("Adam adds its weight decay to the gradient (L2)") {
  Parameter w = start();
  optim::Adam opt({w}, {.lr = 0.1, .weight_decay = 0.1});
  const auto values = trajectory(opt, w);
  // torch 1.13: Adam([w], lr=0.1, weight_decay=0.1)
  CHECK(matches_torch(values[0],
                      Tensor{0.9000000016666666, -1.9000000001086956, 0.4000000008510638, 2.9000000000395256}));
  CHECK(matches_torch(values[4],
                      Tensor{0.6210389643351664, -1.5095939343315146, 0.0022923654003140503, 2.5075050016948377}));
}

TEST_CASE("Adam with amsgrad normalizes by the largest second moment so far") {
  Parameter w = start();
  optim::Adam opt({w}, {.lr = 0.1, .betas = {0.9, 0.5}, .amsgrad = true});
  const auto values = trajectory(opt, w);
  // torch 1.13: Adam([w], lr=0.1, betas=(0.9, 0.5), amsgrad=True). Without amsgrad torch gives
  // [0.6248769714710316, -1.4704193629891489, -0.006869570461630045, 2.475420879181998].
  CHECK(matches_torch(values[4],
                      Tensor{0.6881299834786881, -1.505330485543126, -0.006869570461630045, 2.4995280642642284}));
}

TEST_CASE("Adam adds eps after the bias-corrected square root") {
  Parameter w = start();
  optim::Adam opt({w}, {.lr = 0.1, .eps = 0.5});
  const auto values = trajectory(opt, w);
  // torch 1.13: Adam([w], lr=0.1, eps=0.5)
  CHECK(matches_torch(values[0], Tensor{0.95, -1.9052631578947368, 0.4307692307692308, 2.9019607843137254}));
  CHECK(matches_torch(values[4],
                      Tensor{0.7989254249855581, -1.5379152333264412, 0.158468616444704, 2.5180520728308897}));
}

TEST_CASE("Adam updates float32 parameters in float32") {
  Parameter w = start(DType::Float32);
  optim::Adam opt({w}, {.lr = 0.1});
  const auto values = trajectory(opt, w);
  CHECK(w.value().dtype() == DType::Float32);
  // torch 1.13: the same with dtype=torch.float32
  CHECK(allclose(values[4].to(DType::Float64),
                 Tensor{0.6623603105545044, -1.5097914934158325, 0.0018162652850151062, 2.5075979232788086}, 1e-6));
}

TEST_CASE("Adam counts steps per parameter, so a late parameter gets a full first step") {
  Parameter w = start();
  Parameter late("late", Tensor{2.0, -1.0});
  optim::Adam opt({w, late}, {.lr = 0.1});
  set_cubic_grad(w);
  opt.step();  // `late` has no gradient yet
  CHECK(late.value().to_doubles() == std::vector<double>{2.0, -1.0});
  late.accumulate_grad(Tensor{0.25, -4.0});
  set_cubic_grad(w);
  opt.step();
  // A first Adam step moves by lr * g / (|g| + eps): the bias corrections cancel at step 1 only.
  CHECK(matches_torch(late.value(), Tensor{2.0 - 0.1 * 0.25 / (0.25 + 1e-8), -1.0 + 0.1 * 4.0 / (4.0 + 1e-8)}));
}

TEST_CASE("Adam rejects invalid options, naming them") {
  Parameter w = start();
  CHECK_THROWS_AS(optim::Adam({w}, {.lr = -0.1}), UsageError);
  CHECK_THROWS_AS(optim::Adam({w}, {.eps = -1e-8}), UsageError);
  CHECK_THROWS_AS(optim::Adam({w}, {.weight_decay = -0.1}), UsageError);
  CHECK_THROWS_AS(optim::Adam({w}, {.betas = {1.0, 0.999}}), UsageError);
  CHECK_THROWS_AS(optim::AdamW({w}, {.betas = {0.9, -0.5}}), UsageError);
  CHECK_THAT(error_message<UsageError>([&] { optim::AdamW({w}, {.eps = -1.0}); }), Catch::Contains("AdamW: eps"));
}

// ---- AdamW -------------------------------------------------------------------------------

TEST_CASE("AdamW decays the weights directly, decoupled from the gradient") {
  Parameter w = start();
  optim::AdamW opt({w}, {.lr = 0.1, .weight_decay = 0.1});
  const auto values = trajectory(opt, w);
  // torch 1.13: AdamW([w], lr=0.1, weight_decay=0.1)
  CHECK(matches_torch(values[0], Tensor{0.890000002, -1.880000000111111, 0.39500000088888887, 2.8700000000399997}));
  CHECK(matches_torch(values[4],
                      Tensor{0.6459426467603996, -1.4242901274938238, -0.01277798574881904, 2.373727509053741}));
}

TEST_CASE("AdamW's default weight decay is torch's 1e-2") {
  Parameter w = start();
  optim::AdamW opt({w}, {.lr = 0.1});
  CHECK(opt.options().weight_decay == 1e-2);
  const auto values = trajectory(opt, w);
  // torch 1.13: AdamW([w], lr=0.1)
  CHECK(matches_torch(values[4],
                      Tensor{0.6606793613127724, -1.5010647632883902, 0.0003214827048469149, 2.493933466769149}));
}

TEST_CASE("AdamW with amsgrad follows torch") {
  Parameter w = start();
  optim::AdamW opt({w}, {.lr = 0.1, .betas = {0.9, 0.5}, .weight_decay = 0.1, .amsgrad = true});
  const auto values = trajectory(opt, w);
  // torch 1.13: AdamW([w], lr=0.1, betas=(0.9, 0.5), weight_decay=0.1, amsgrad=True)
  CHECK(matches_torch(values[4],
                      Tensor{0.6681879433950012, -1.4234677512694605, -0.021447157300570605, 2.3710578302024774}));
}

// ---- RMSprop -----------------------------------------------------------------------------

TEST_CASE("RMSprop follows torch.optim.RMSprop over five steps") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.01});
  const auto values = trajectory(opt, w);
  // torch 1.13: RMSprop([w], lr=0.01)
  CHECK(matches_torch(values[0], Tensor{0.900000019999996, -1.9000000011111111, 0.40000000888888815, 2.9000000004}));
  CHECK(matches_torch(values[4],
                      Tensor{0.811006694840222, -1.700783416176187, 0.18331333714174494, 2.6964060517846424}));
}

TEST_CASE("RMSprop adds its weight decay to the gradient") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.01, .weight_decay = 0.1});
  const auto values = trajectory(opt, w);
  // torch 1.13: RMSprop([w], lr=0.01, weight_decay=0.1)
  CHECK(matches_torch(values[4],
                      Tensor{0.7899984876654439, -1.7004262560712988, 0.18473877780480685, 2.696223985780391}));
}

TEST_CASE("RMSprop with momentum accumulates the scaled gradients from zero") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.01, .momentum = 0.9});
  const auto values = trajectory(opt, w);
  // torch 1.13: RMSprop([w], lr=0.01, momentum=0.9); the first step equals plain RMSprop's
  CHECK(matches_torch(values[0], Tensor{0.900000019999996, -1.9000000011111111, 0.40000000888888815, 2.9000000004}));
  CHECK(matches_torch(values[4],
                      Tensor{0.5840492849427414, -1.1485088624741622, -0.42992040669357745, 2.1336703470107756}));
}

TEST_CASE("centered RMSprop divides by the running standard deviation") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.01, .centered = true});
  const auto values = trajectory(opt, w);
  // torch 1.13: RMSprop([w], lr=0.01, centered=True)
  CHECK(matches_torch(values[0], Tensor{0.899496238676095, -1.8994962195964133, 0.3994962274527537, 2.8994962188781193}));
  CHECK(matches_torch(values[4],
                      Tensor{0.8104219498504658, -1.6972600353562841, 0.17921597483006865, 2.6927566905755693}));
}

TEST_CASE("RMSprop with every option at once follows torch") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.01, .alpha = 0.9, .weight_decay = 0.05, .momentum = 0.5, .centered = true});
  const auto values = trajectory(opt, w);
  // torch 1.13: RMSprop([w], lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.05)
  CHECK(matches_torch(values[0], Tensor{0.9666666686868686, -1.966666666788767, 0.4666666676328502, 2.966666666710846}));
  CHECK(matches_torch(values[4],
                      Tensor{0.8336646032333839, -1.8037923984405477, 0.2994359935024947, 2.8024350133442537}));
}

TEST_CASE("RMSprop rejects invalid options, naming them") {
  Parameter w = start();
  CHECK_THROWS_AS(optim::RMSprop({w}, {.lr = -1.0}), UsageError);
  CHECK_THROWS_AS(optim::RMSprop({w}, {.alpha = -0.5}), UsageError);
  CHECK_THROWS_AS(optim::RMSprop({w}, {.eps = -1.0}), UsageError);
  CHECK_THROWS_AS(optim::RMSprop({w}, {.weight_decay = -1.0}), UsageError);
  CHECK_THAT(error_message<UsageError>([&] { optim::RMSprop({w}, {.momentum = -0.9}); }),
             Catch::Contains("RMSprop: momentum"));
}

// ---- the Optimizer base ------------------------------------------------------------------

TEST_CASE("the learning rate set through Optimizer governs the next step") {
  Parameter a = start(), b = start(), c = start(), d = start();
  optim::SGD sgd({a}, {.lr = 0.5});
  optim::Adam adam({b}, {.lr = 0.5});
  optim::AdamW adamw({c}, {.lr = 0.5});
  optim::RMSprop rmsprop({d}, {.lr = 0.5});
  const std::vector<std::pair<optim::Optimizer*, Parameter*>> all = {{&sgd, &a}, {&adam, &b}, {&adamw, &c}, {&rmsprop, &d}};
  for (auto [opt, w] : all) {
    opt->set_lr(0.0);
    CHECK(opt->lr() == 0.0);
    set_cubic_grad(*w);
    opt->step();
    CHECK(w->value().to_doubles() == kW0);
    opt->set_lr(0.25);
    CHECK(opt->lr() == 0.25);
  }
  CHECK(adam.options().lr == 0.25);
}

TEST_CASE("set_lr refuses a negative learning rate") {
  Parameter w = start();
  optim::Adam adam({w});
  optim::RMSprop rmsprop({w});
  optim::SGD sgd({w}, {});
  for (optim::Optimizer* opt : std::vector<optim::Optimizer*>{&adam, &rmsprop, &sgd}) {
    CHECK_THROWS_AS(opt->set_lr(-0.1), UsageError);
  }
}

TEST_CASE("zero_grad through Optimizer keeps the gradient buffers") {
  Parameter w = start();
  optim::Adam adam({w});
  optim::Optimizer& opt = adam;
  set_cubic_grad(w);
  const void* buffer = w.grad().raw_data();
  opt.zero_grad();
  CHECK(w.grad().raw_data() == buffer);
  CHECK(w.grad().to_doubles() == std::vector<double>(4, 0.0));
}

TEST_CASE("frozen parameters and parameters without gradients are not updated") {
  Parameter w = start();
  Parameter frozen("frozen", Tensor{1.0, 2.0});
  frozen.accumulate_grad(Tensor{1.0, 1.0});
  frozen.requires_grad(false);
  Parameter no_grad("no_grad", Tensor{3.0});
  optim::RMSprop opt({w, frozen, no_grad}, {.lr = 0.1, .momentum = 0.9});
  set_cubic_grad(w);
  opt.step();
  CHECK(frozen.value().to_doubles() == std::vector<double>{1.0, 2.0});
  CHECK(no_grad.value().item() == 3.0);
  CHECK(w.value().to_doubles() != kW0);
}

TEST_CASE("a parameter whose shape changed since the last step is refused by name") {
  Parameter w = start();
  optim::Adam opt({w}, {.lr = 0.1});
  set_cubic_grad(w);
  opt.step();
  w.set_value(Tensor{1.0, 2.0});
  w.zero_grad();
  w.accumulate_grad(Tensor{1.0, 1.0});
  CHECK_THAT(error_message<UsageError>([&] { opt.step(); }), Catch::Contains("'w' is now (2,)") && Catch::Contains("state is (4,)"));
}

TEST_CASE("Adam fits a linear regression through autodiff") {
  Generator gen(11);
  const Tensor x = Tensor::randn({64, 3}, gen);
  const Tensor true_w = Tensor{{2.0, -1.0, 0.5}};
  const Tensor y = op::matmul(x, op::transpose(true_w)).value();
  nn::Linear model(3, 1, {.bias = false, .dtype = DType::Float64, .generator = &gen});
  optim::Adam opt(model.parameters(), {.lr = 0.05});
  Lambda loss({"x", "y"}, [&](std::span<const NodeRef> in) { return op::mean(op::square(op::sub(model(in[0]), in[1]))); });
  for (int step = 0; step < 500; ++step) {
    opt.zero_grad();
    loss(x, y).back();
    opt.step();
  }
  CHECK(allclose(model.param("weight").value(), true_w, 1e-4, 1e-6));
}

// ---- clip_grad_norm ----------------------------------------------------------------------

// Reference: two float64 parameters with gradients [[1, -2], [3, 0.5]] and [-4, 2.5, 1.5];
// torch.nn.utils.clip_grad_norm_([a, b], max_norm, norm_type) in torch 1.13.

namespace {

struct TwoGrads {
  Parameter a{"a", Tensor::zeros({2, 2})};
  Parameter b{"b", Tensor::zeros({3})};
  TwoGrads() {
    a.accumulate_grad(Tensor{{1.0, -2.0}, {3.0, 0.5}});
    b.accumulate_grad(Tensor{-4.0, 2.5, 1.5});
  }
};

}  // namespace

TEST_CASE("clip_grad_norm scales gradients to max_norm in the 2-norm") {
  TwoGrads p;
  const double norm = optim::clip_grad_norm({p.a, p.b}, 1.0);
  CHECK(norm == Approx(6.224949798994366).epsilon(1e-14));
  CHECK(matches_torch(p.a.grad(), Tensor{{0.1606438399740523, -0.3212876799481046},
                                         {0.4819315199221569, 0.08032191998702615}}));
  CHECK(matches_torch(p.b.grad(), Tensor{-0.6425753598962092, 0.40160959993513073, 0.24096575996107844}));
}

TEST_CASE("clip_grad_norm in the 1-norm") {
  TwoGrads p;
  const double norm = optim::clip_grad_norm({p.a, p.b}, 2.0, 1.0);
  CHECK(norm == Approx(14.5).epsilon(1e-14));
  CHECK(matches_torch(p.a.grad(), Tensor{{0.13793102497027415, -0.2758620499405483},
                                         {0.41379307491082246, 0.06896551248513708}}));
  CHECK(matches_torch(p.b.grad(), Tensor{-0.5517240998810966, 0.34482756242568535, 0.20689653745541123}));
}

TEST_CASE("clip_grad_norm in the infinity norm uses the largest absolute gradient") {
  TwoGrads p;
  const double norm = optim::clip_grad_norm({p.a, p.b}, 1.5, std::numeric_limits<double>::infinity());
  CHECK(norm == 4.0);
  CHECK(matches_torch(p.a.grad(), Tensor{{0.37499990625002344, -0.7499998125000469},
                                         {1.1249997187500704, 0.18749995312501172}}));
  CHECK(matches_torch(p.b.grad(), Tensor{-1.4999996250000938, 0.9374997656250585, 0.5624998593750352}));
}

TEST_CASE("clip_grad_norm in a general p-norm") {
  TwoGrads p;
  const double norm = optim::clip_grad_norm({p.a, p.b}, 2.0, 3.0);
  CHECK(norm == Approx(4.9204063603376635).epsilon(1e-14));
  CHECK(matches_torch(p.a.grad(), Tensor{{0.4064704105846126, -0.8129408211692252},
                                         {1.2194112317538377, 0.2032352052923063}}));
  CHECK(matches_torch(p.b.grad(), Tensor{-1.6258816423384503, 1.0161760264615314, 0.6097056158769188}));
}

TEST_CASE("clip_grad_norm leaves gradients under max_norm unchanged and still returns the norm") {
  TwoGrads p;
  const double norm = optim::clip_grad_norm({p.a, p.b}, 100.0);
  CHECK(norm == Approx(6.224949798994366).epsilon(1e-14));
  CHECK(p.a.grad().to_doubles() == std::vector<double>{1.0, -2.0, 3.0, 0.5});
  CHECK(p.b.grad().to_doubles() == std::vector<double>{-4.0, 2.5, 1.5});
}

TEST_CASE("clip_grad_norm's 1e-6 epsilon scales a norm exactly at max_norm") {
  Parameter w("w", Tensor::zeros({2}));
  w.accumulate_grad(Tensor{3.0, 4.0});
  CHECK(optim::clip_grad_norm({w}, 5.0) == 5.0);
  // torch 1.13 gives [2.99999940000012, 3.99999920000016] = [3, 4] * 5 / (5 + 1e-6)
  CHECK(matches_torch(w.grad(), Tensor{2.99999940000012, 3.99999920000016}));
}

TEST_CASE("clip_grad_norm skips parameters without gradients") {
  Parameter w("w", Tensor::zeros({2}));
  w.accumulate_grad(Tensor{3.0, 4.0});
  Parameter none("none", Tensor{100.0});
  CHECK(optim::clip_grad_norm({none, w}, 10.0) == 5.0);
  CHECK_FALSE(none.grad().defined());
}

TEST_CASE("clip_grad_norm of no gradients is 0") {
  Parameter none("none", Tensor{100.0});
  CHECK(optim::clip_grad_norm({none}, 1.0) == 0.0);
  CHECK(optim::clip_grad_norm({}, 1.0) == 0.0);
}

TEST_CASE("clip_grad_norm with error_if_nonfinite refuses a NaN norm before touching gradients") {
  Parameter w("w", Tensor::zeros({2}));
  w.accumulate_grad(Tensor{std::nan(""), 4.0});
  CHECK_THROWS_AS(optim::clip_grad_norm({w}, 1.0, 2.0, true), UsageError);
  CHECK(w.grad().to_doubles()[1] == 4.0);
}

TEST_CASE("clip_grad_norm without error_if_nonfinite propagates NaN, as torch does") {
  Parameter w("w", Tensor::zeros({2}));
  w.accumulate_grad(Tensor{std::nan(""), 4.0});
  CHECK(std::isnan(optim::clip_grad_norm({w}, 1.0)));
  CHECK(std::isnan(w.grad().to_doubles()[1]));
}

TEST_CASE("clip_grad_norm refuses a non-positive norm_type") {
  TwoGrads p;
  CHECK_THROWS_AS(optim::clip_grad_norm({p.a}, 1.0, 0.0), UsageError);
  CHECK_THROWS_AS(optim::clip_grad_norm({p.a}, 1.0, -2.0), UsageError);
}

TEST_CASE("Adam, SGD and RMSprop step an empty parameter (as PyTorch does)") {
  Parameter w("w", Tensor::zeros({5, 0}));
  w.accumulate_grad(Tensor::zeros({5, 0}));
  optim::Adam adam({w}, {.lr = 0.1});
  CHECK_NOTHROW(adam.step());
  optim::SGD sgd({w}, {.lr = 0.1, .momentum = 0.9});
  CHECK_NOTHROW(sgd.step());
  optim::RMSprop rmsprop({w}, {.lr = 0.1});
  CHECK_NOTHROW(rmsprop.step());
  CHECK(w.value().shape() == Shape{5, 0});
}

// ---- state on the parameter's device, the fused kernels ----------------------------------
// The steps run in kernels::{sgd,adam,rmsprop}_step (zkynet/ops/optim_kernels.h); the CUDA
// suite (tests/cuda/test_operators.cpp) compares their CUDA kernels with these CPU loops.

TEST_CASE("optimizer state is allocated at the first step, on the parameter's device, under torch's names") {
  Parameter w = start();
  optim::Adam adam({w}, {.lr = 0.1, .amsgrad = true});
  optim::SGD sgd({w}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.5});
  optim::RMSprop rmsprop({w}, {.lr = 0.1, .momentum = 0.9, .centered = true});
  CHECK(adam.state(0).empty());
  set_cubic_grad(w);
  const Tensor g = w.grad().clone(), w0 = w.value().clone();
  adam.step();
  const auto a = adam.state(0);
  REQUIRE(a.size() == 3);
  for (const auto& [name, t] : a) CHECK(t.device() == w.value().device());
  // torch: exp_avg = (1 - beta1) g, exp_avg_sq = (1 - beta2) g^2 after the first step
  CHECK(allclose(a.at("exp_avg"), op::mult(g, 0.1).value(), 1e-15, 0.0));
  CHECK(allclose(a.at("exp_avg_sq"), op::mult(op::square(g), 1 - 0.999).value(), 1e-12, 0.0));
  CHECK(allclose(a.at("max_exp_avg_sq"), a.at("exp_avg_sq"), 0.0, 0.0));

  w.set_value(w0.clone());
  sgd.step();  // the first step copies g + weight_decay * w into the buffer
  CHECK(allclose(sgd.state(0).at("momentum_buffer"), op::add(g, op::mult(w0, 0.5)).value(), 1e-15, 0.0));
  rmsprop.step();
  const auto r = rmsprop.state(0);
  CHECK(r.size() == 3);
  CHECK(allclose(r.at("square_avg"), op::mult(op::square(g), 1 - 0.99).value(), 1e-12, 0.0));
  CHECK(allclose(r.at("grad_avg"), op::mult(g, 1 - 0.99).value(), 1e-12, 0.0));
  CHECK_THROWS_AS(adam.state(1), IndexError);
}

TEST_CASE("a parameter moved after the optimizer was built is stepped from its new place, its state with it") {
  // Module::to replaces each parameter's value by a copy on the device; the optimizer holds the
  // parameter, not the tensor, and moves its state to wherever the value now is. On this
  // machine the copy is a CPU one; the CUDA suite moves a model to the GPU the same way.
  const Tensor x{{1.0, -2.0, 0.5}, {0.25, 1.0, 3.0}};
  auto train_step = [&](nn::Linear& m, optim::Optimizer& opt) {
    Lambda loss({"x"}, [&](std::span<const NodeRef> in) { return op::sum(op::square(m(in[0]))); });
    opt.zero_grad();
    loss(x).back();
    opt.step();
  };
  for (const bool moved : {false, true}) {
    INFO("moved: " << moved);
    Generator gen(5);
    nn::Linear a(3, 2, {.dtype = DType::Float64, .generator = &gen}), b(3, 2, {.dtype = DType::Float64});
    for (const char* name : {"weight", "bias"}) b.param(name).set_value(a.param(name).value().clone());
    optim::Adam opt_a(a.parameters(), {.lr = 0.1, .amsgrad = true});
    optim::Adam opt_b(b.parameters(), {.lr = 0.1, .amsgrad = true});
    for (int s = 0; s < 4; ++s) {
      if (s == 2 && moved) {
        b.to(Device::cpu());
        for (const char* name : {"weight", "bias"}) b.param(name).set_value(b.param(name).value().clone());
      }
      train_step(a, opt_a);
      train_step(b, opt_b);
    }
    CHECK(allclose(b.param("weight").value(), a.param("weight").value(), 0.0, 0.0));
    CHECK(allclose(b.param("bias").value(), a.param("bias").value(), 0.0, 0.0));
    for (const auto& [name, t] : opt_b.state(0)) CHECK(t.device() == b.param("weight").value().device());
  }
}

TEST_CASE("a step bumps the versions of the parameter and its state") {
  Parameter w = start();
  optim::RMSprop opt({w}, {.lr = 0.1, .momentum = 0.5});
  set_cubic_grad(w);
  opt.step();
  const std::uint64_t value_version = w.value().version();
  const std::uint64_t buffer_version = opt.state(0).at("momentum_buffer").version();
  set_cubic_grad(w);
  opt.step();
  CHECK(w.value().version() > value_version);
  CHECK(opt.state(0).at("momentum_buffer").version() > buffer_version);
}

TEST_CASE("the fused step kernels take several parameters at once and refuse misplaced state before writing") {
  const Tensor w1 = Tensor::from_vector(kW0, {4}), w2 = Tensor{{1.0, 2.0}, {3.0, 4.0}};
  const Tensor g1 = Tensor::ones({4}), g2 = Tensor::full({2, 2}, -0.5);
  std::vector<kernels::AdamSlot> slots{{w1, g1, Tensor::zeros({4}), Tensor::zeros({4}), {}, 1},
                                       {w2, g2, Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), {}, 3}};
  const kernels::AdamHyper hyper{.lr = 0.1};
  kernels::adam_step(slots, hyper);
  // A first step moves by lr * sign(g); the third step of w2 from zero state too, less the bias
  // corrections' mismatch: -lr / (1 - 0.9^3) * 0.1 g / (sqrt(0.001 g^2) / sqrt(1 - 0.999^3) + eps).
  CHECK(allclose(w1, Tensor{0.9, -2.1, 0.4, 2.9}, 1e-7, 0.0));
  const double third = 0.1 / (1 - 0.729) * 0.05 / (std::sqrt(0.001 * 0.25) / std::sqrt(1 - 0.997002999) + 1e-8);
  CHECK(allclose(w2, Tensor{{1.0 + third, 2.0 + third}, {3.0 + third, 4.0 + third}}, 1e-12, 0.0));

  const Tensor before = w1.clone();
  slots[1].exp_avg = Tensor::zeros({4});
  CHECK_THAT(error_message<ShapeError>([&] { kernels::adam_step(slots, hyper); }),
             Catch::Contains("Adam step") && Catch::Contains("exp_avg"));
  CHECK(allclose(w1, before, 0.0, 0.0));  // the first slot was not written either
  slots[1].exp_avg = Tensor::zeros({2, 2}, DType::Float32);
  CHECK_THROWS_AS(kernels::adam_step(slots, hyper), TypeError);
  slots[1].exp_avg = Tensor();
  CHECK_THROWS_AS(kernels::adam_step(slots, hyper), UsageError);
  CHECK_THROWS_AS(kernels::sgd_step(std::vector<kernels::SgdSlot>{{w1, g1, {}, true}}, {.lr = 0.1, .momentum = 0.9}),
                  UsageError);
  CHECK_THROWS_AS(kernels::rmsprop_step(std::vector<kernels::RmspropSlot>{{w1, Tensor::ones({3}), Tensor::zeros({4}), {}, {}}},
                                        {.lr = 0.1}),
                  ShapeError);
}
