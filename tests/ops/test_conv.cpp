// conv2d, max_pool2d and avg_pool2d: values and gradients against torch 1.13 for every option
// (reference/conv_reference.h, written by reference/make_conv_reference.py), float64 gradient
// checks, a direct convolution on a batch large enough for the parallel and batched-GEMM
// paths, float32, and the errors for bad shapes and options.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include "ops/reference/conv_reference.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using namespace conv_reference;
using Catch::Matchers::Contains;

namespace {

// wave(shape, a, b)[i] = sin(a i + b) over the flat index i: make_conv_reference.py's inputs.
Tensor wave(const Shape& shape, double a, double b) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(a * static_cast<double>(i) + b);
  return Tensor::from_vector(v, shape);
}
Tensor input_wave(const Shape& shape) { return wave(shape, 0.37, 0.1); }
Tensor weight_wave(const Shape& shape) { return wave(shape, 0.71, 0.3); }
Tensor bias_wave(std::int64_t n) { return wave({n}, 1.3, 0.5); }
Tensor seed_wave(const Shape& shape) { return wave(shape, 0.53, 0.2); }

Tensor ref(const std::vector<double>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

// Float64 results against torch's float64 ones: equal up to summation order.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-10, 1e-12); }

Body conv_body(const op::Conv2dOptions& o) {
  return [o](std::span<const NodeRef> x) { return op::conv2d(x[0], x[1], x[2], o); };
}
Body conv_no_bias_body(const op::Conv2dOptions& o) {
  return [o](std::span<const NodeRef> x) { return op::conv2d(x[0], x[1], NodeRef(), o); };
}

struct TorchConv {
  const std::vector<double>& out;
  const std::vector<double>& grad_input;
  const std::vector<double>& grad_weight;
  const std::vector<double>* grad_bias;  // null without a bias
};

// Runs conv2d on the reference script's inputs and compares output and gradients with torch's.
void check_conv_against_torch(const Shape& xs, const Shape& ws, const op::Conv2dOptions& o, const Shape& ys,
                              const TorchConv& torch) {
  const Tensor x = input_wave(xs);
  const Tensor w = weight_wave(ws);
  const Tensor seed = seed_wave(ys);
  if (torch.grad_bias) {
    const Tensor b = bias_wave(ws[0]);
    const Tensor y = op::conv2d(x, w, b, o).value();
    REQUIRE(y.shape() == ys);
    CHECK(close(y, ref(torch.out, ys)));
    const auto g = vjp(conv_body(o), {x, w, b}, seed);
    CHECK(close(g[0], ref(torch.grad_input, xs)));
    CHECK(close(g[1], ref(torch.grad_weight, ws)));
    CHECK(close(g[2], ref(*torch.grad_bias, {ws[0]})));
  } else {
    const Tensor y = op::conv2d(x, w, NodeRef(), o).value();
    REQUIRE(y.shape() == ys);
    CHECK(close(y, ref(torch.out, ys)));
    const auto g = vjp(conv_no_bias_body(o), {x, w}, seed);
    CHECK(close(g[0], ref(torch.grad_input, xs)));
    CHECK(close(g[1], ref(torch.grad_weight, ws)));
  }
}

// Runs a pooling operator on the reference input and compares output and input gradient.
void check_pool_against_torch(const std::function<NodeRef(const NodeRef&)>& pool, const Shape& xs, const Shape& ys,
                              const std::vector<double>& out, const std::vector<double>& grad) {
  const Tensor x = input_wave(xs);
  const Tensor y = pool(x).value();
  REQUIRE(y.shape() == ys);
  CHECK(close(y, ref(out, ys)));
  const Body f = [&pool](std::span<const NodeRef> in) { return pool(in[0]); };
  CHECK(close(vjp(f, {x}, seed_wave(ys))[0], ref(grad, xs)));
}

// A direct (seven-loop) convolution and its gradients for sum(seed * output), in float64.
struct Direct {
  Tensor out, grad_input, grad_weight, grad_bias;
};

Direct direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, const op::Conv2dOptions& o, const Tensor& seed) {
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const std::int64_t oc = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3);
  const std::int64_t og = oc / o.groups;
  const std::int64_t ho = (h + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  const std::int64_t wo = (wd + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  const auto xv = x.to_doubles(), wv = w.to_doubles(), bv = b.to_doubles(), sv = seed.to_doubles();
  std::vector<double> y(static_cast<std::size_t>(n * oc * ho * wo)), dx(xv.size()), dw(wv.size()), db(bv.size());
  for (std::int64_t in = 0; in < n; ++in) {
    for (std::int64_t o_ = 0; o_ < oc; ++o_) {
      for (std::int64_t oh = 0; oh < ho; ++oh) {
        for (std::int64_t ow = 0; ow < wo; ++ow) {
          const auto yi = static_cast<std::size_t>(((in * oc + o_) * ho + oh) * wo + ow);
          double acc = bv[static_cast<std::size_t>(o_)];
          const double s = sv[yi];
          db[static_cast<std::size_t>(o_)] += s;
          for (std::int64_t j = 0; j < cg; ++j) {
            const std::int64_t ch = (o_ / og) * cg + j;
            for (std::int64_t ki = 0; ki < kh; ++ki) {
              for (std::int64_t kj = 0; kj < kw; ++kj) {
                const std::int64_t ih = oh * o.stride[0] - o.padding[0] + ki * o.dilation[0];
                const std::int64_t iw = ow * o.stride[1] - o.padding[1] + kj * o.dilation[1];
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const auto xi = static_cast<std::size_t>(((in * c + ch) * h + ih) * wd + iw);
                const auto wi = static_cast<std::size_t>(((o_ * cg + j) * kh + ki) * kw + kj);
                acc += xv[xi] * wv[wi];
                dx[xi] += s * wv[wi];
                dw[wi] += s * xv[xi];
              }
            }
          }
          y[yi] = acc;
        }
      }
    }
  }
  return {Tensor::from_vector(y, {n, oc, ho, wo}), Tensor::from_vector(dx, x.shape()),
          Tensor::from_vector(dw, w.shape()), Tensor::from_vector(db, b.shape())};
}

// Sets the thread pool's size for a scope, so that the parallel paths (work split by image,
// GEMMs split into blocks) run whatever OMP_NUM_THREADS says.
class ThreadsForScope {
 public:
  explicit ThreadsForScope(int n) : saved_(num_threads()) { set_num_threads(n); }
  ~ThreadsForScope() { set_num_threads(saved_); }
  ThreadsForScope(const ThreadsForScope&) = delete;
  ThreadsForScope& operator=(const ThreadsForScope&) = delete;

 private:
  int saved_;
};

// Checks conv2d, values and gradients, against direct_conv on random operands, on 2 threads.
void check_against_direct(const Shape& xs, const Shape& ws, const op::Conv2dOptions& o, std::uint64_t seed_value) {
  const ThreadsForScope threads(2);
  Generator gen(seed_value);
  const Tensor x = Tensor::randn(xs, gen);
  const Tensor w = Tensor::randn(ws, gen);
  const Tensor b = Tensor::randn({ws[0]}, gen);
  const Tensor y = op::conv2d(x, w, b, o).value();
  const Tensor seed = Tensor::randn(y.shape(), gen);
  const Direct d = direct_conv(x, w, b, o, seed);
  CHECK(close(y, d.out));
  const auto g = vjp(conv_body(o), {x, w, b}, seed);
  CHECK(close(g[0], d.grad_input));
  CHECK(close(g[1], d.grad_weight));
  CHECK(close(g[2], d.grad_bias));
}

}  // namespace

// ---- conv2d: against torch -----------------------------------------------------------------

TEST_CASE("conv2d with default options matches torch (values and gradients)", "[conv]") {
  check_conv_against_torch({2, 2, 4, 5}, {3, 2, 3, 3}, {}, {2, 3, 2, 3},
                           {kConvDefaultOut, kConvDefaultGradInput, kConvDefaultGradWeight, &kConvDefaultGradBias});
}

TEST_CASE("conv2d with stride 2 and padding 1 matches torch (values and gradients)", "[conv]") {
  check_conv_against_torch(
      {2, 2, 5, 6}, {3, 2, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}}, {2, 3, 3, 3},
      {kConvStridePaddingOut, kConvStridePaddingGradInput, kConvStridePaddingGradWeight, &kConvStridePaddingGradBias});
}

TEST_CASE("conv2d with dilation 2 matches torch (values and gradients)", "[conv]") {
  check_conv_against_torch({1, 2, 7, 6}, {3, 2, 3, 2}, {.dilation = {2, 2}}, {1, 3, 3, 4},
                           {kConvDilationOut, kConvDilationGradInput, kConvDilationGradWeight, &kConvDilationGradBias});
}

TEST_CASE("conv2d with 2 groups matches torch (values and gradients)", "[conv]") {
  check_conv_against_torch({2, 4, 4, 4}, {6, 2, 3, 3}, {.groups = 2}, {2, 6, 2, 2},
                           {kConvGroupsOut, kConvGroupsGradInput, kConvGroupsGradWeight, &kConvGroupsGradBias});
}

TEST_CASE("conv2d without bias, with per-axis stride, padding and dilation, matches torch", "[conv]") {
  check_conv_against_torch({2, 3, 6, 5}, {2, 3, 2, 3}, {.stride = {2, 1}, .padding = {0, 2}, .dilation = {1, 2}},
                           {2, 2, 3, 5},
                           {kConvNoBiasAsymmetricOut, kConvNoBiasAsymmetricGradInput,
                            kConvNoBiasAsymmetricGradWeight, nullptr});
}

TEST_CASE("conv2d with stride, padding, dilation and groups together matches torch", "[conv]") {
  check_conv_against_torch({1, 4, 7, 7}, {4, 2, 3, 3},
                           {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}, .groups = 2}, {1, 4, 3, 3},
                           {kConvAllOut, kConvAllGradInput, kConvAllGradWeight, nullptr});
}

TEST_CASE("conv2d of a constant input gives torch's weight and bias gradients", "[conv]") {
  // The input needs no gradient (as for a network's first layer): only weight and bias get one.
  const Tensor x = input_wave({2, 2, 4, 5});
  const Body f = [x](std::span<const NodeRef> p) { return op::conv2d(x, p[0], p[1]); };
  const auto g = vjp(f, {weight_wave({3, 2, 3, 3}), bias_wave(3)}, seed_wave({2, 3, 2, 3}));
  CHECK(close(g[0], ref(kConvDefaultGradWeight, {3, 2, 3, 3})));
  CHECK(close(g[1], ref(kConvDefaultGradBias, {3})));
}

TEST_CASE("conv2d of a constant weight gives torch's input and bias gradients", "[conv]") {
  const Tensor w = weight_wave({3, 2, 3, 3});
  const Body f = [w](std::span<const NodeRef> x) { return op::conv2d(x[0], w, x[1]); };
  const auto g = vjp(f, {input_wave({2, 2, 4, 5}), bias_wave(3)}, seed_wave({2, 3, 2, 3}));
  CHECK(close(g[0], ref(kConvDefaultGradInput, {2, 2, 4, 5})));
  CHECK(close(g[1], ref(kConvDefaultGradBias, {3})));
}

// ---- conv2d: other references ----------------------------------------------------------------

TEST_CASE("conv2d with a 1x1 kernel multiplies the channels by the weight matrix", "[conv]") {
  // y[n, :, h, w] = W x[n, :, h, w] + b
  const Tensor x = input_wave({2, 3, 2, 2});
  const Tensor w = weight_wave({4, 3, 1, 1});
  const Tensor b = bias_wave(4);
  const Tensor y = op::conv2d(x, w, b).value();
  const Tensor x_rows = x.permute({0, 2, 3, 1}).reshape({8, 3});  // one row per pixel
  const Tensor expected = op::add(op::matmul(x_rows, op::transpose(w.reshape({4, 3}))), b).value();
  CHECK(close(y.permute({0, 2, 3, 1}).reshape({8, 4}), expected));
}

TEST_CASE("conv2d agrees with a direct convolution on a batch that runs in parallel", "[conv]") {
  // 8 x 16 planes of 12x12 through a (32, 16, 3, 3) weight: enough work for two threads,
  // each with a share of the images and GEMMs split into blocks.
  const ThreadsForScope threads(2);
  Generator gen(7);
  const Tensor x = Tensor::randn({8, 16, 12, 12}, gen);
  const Tensor w = Tensor::randn({32, 16, 3, 3}, gen);
  const Tensor b = Tensor::randn({32}, gen);
  const op::Conv2dOptions o{.padding = {1, 1}};
  const Tensor seed = Tensor::randn({8, 32, 12, 12}, gen);
  const Direct d = direct_conv(x, w, b, o, seed);
  CHECK(close(op::conv2d(x, w, b, o).value(), d.out));
  {
    NoGradGuard no_grad;  // unfolds into per-thread buffers instead of keeping the columns
    CHECK(close(op::conv2d(x, w, b, o).value(), d.out));
  }
  const auto g = vjp(conv_body(o), {x, w, b}, seed);
  CHECK(close(g[0], d.grad_input));
  CHECK(close(g[1], d.grad_weight));
  CHECK(close(g[2], d.grad_bias));
}

TEST_CASE("conv2d agrees with a direct convolution for strided grouped windows on a larger batch", "[conv]") {
  // 36 rows per group: the weight gradient takes the transposed-gradient GEMM, per group.
  const ThreadsForScope threads(2);
  Generator gen(8);
  const Tensor x = Tensor::randn({6, 8, 11, 13}, gen);
  const Tensor w = Tensor::randn({12, 4, 3, 3}, gen);
  const Tensor b = Tensor::zeros({12});
  const op::Conv2dOptions o{.stride = {2, 3}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 2};
  const Tensor seed = Tensor::randn({6, 12, 6, 4}, gen);
  const Direct d = direct_conv(x, w, b, o, seed);
  CHECK(close(op::conv2d(x, w, NodeRef(), o).value(), d.out));
  const auto g = vjp(conv_no_bias_body(o), {x, w}, seed);
  CHECK(close(g[0], d.grad_input));
  CHECK(close(g[1], d.grad_weight));
}

TEST_CASE("conv2d agrees with a direct convolution when its GEMMs are split along output positions", "[conv]") {
  // 50x48 output positions per image: the weight gradient's products are split along them.
  check_against_direct({2, 2, 52, 50}, {3, 2, 3, 3}, {}, 10);
}

TEST_CASE("conv2d agrees with a direct convolution when its GEMMs are split along deep kernels", "[conv]") {
  // 230 channels of 3x3: the forward's products are split along the 2070 + 1 (bias) rows.
  check_against_direct({8, 230, 4, 4}, {3, 230, 3, 3}, {}, 20);
}

TEST_CASE("conv2d in float32 keeps the dtype and agrees with float64", "[conv]") {
  Generator gen(9);
  const Tensor x = Tensor::randn({4, 3, 9, 9}, gen);
  const Tensor w = Tensor::randn({5, 3, 3, 3}, gen);
  const Tensor b = Tensor::randn({5}, gen);
  const Tensor seed = Tensor::randn({4, 5, 5, 5}, gen);
  const op::Conv2dOptions o{.stride = {2, 2}, .padding = {1, 1}};
  const auto g64 = vjp(conv_body(o), {x, w, b}, seed);
  const auto g32 = vjp(conv_body(o), {x.to(DType::Float32), w.to(DType::Float32), b.to(DType::Float32)},
                       seed.to(DType::Float32));
  const Tensor y32 = op::conv2d(x.to(DType::Float32), w.to(DType::Float32), b.to(DType::Float32), o).value();
  CHECK(y32.dtype() == DType::Float32);
  CHECK(allclose(y32, op::conv2d(x, w, b, o).value(), 1e-4, 1e-4));
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(g32[i].dtype() == DType::Float32);
    CHECK(allclose(g32[i], g64[i], 1e-4, 1e-4));
  }
}

TEST_CASE("conv2d_backward recomputes the unfolded input when none was saved", "[conv]") {
  const Tensor x = input_wave({2, 2, 4, 5});
  const Tensor w = weight_wave({3, 2, 3, 3});
  const auto g = kernels::conv2d_backward(seed_wave({2, 3, 2, 3}), x, w, true, Tensor(), {}, {true, true, true});
  CHECK(close(g.input, ref(kConvDefaultGradInput, {2, 2, 4, 5})));
  CHECK(close(g.weight, ref(kConvDefaultGradWeight, {3, 2, 3, 3})));
  CHECK(close(g.bias, ref(kConvDefaultGradBias, {3})));
}

TEST_CASE("conv2d_backward gives the bias gradient alone as the sum of the output gradient", "[conv]") {
  const Tensor x = input_wave({2, 2, 4, 5});
  const Tensor w = weight_wave({3, 2, 3, 3});
  const auto g = kernels::conv2d_backward(seed_wave({2, 3, 2, 3}), x, w, true, Tensor(), {}, {false, false, true});
  CHECK_FALSE(g.input.defined());
  CHECK_FALSE(g.weight.defined());
  CHECK(close(g.bias, ref(kConvDefaultGradBias, {3})));
}

// ---- conv2d: gradcheck ---------------------------------------------------------------------

TEST_CASE("conv2d passes gradcheck with default options", "[conv]") {
  Generator gen(11);
  require_gradcheck(conv_body({}), {Tensor::randn({2, 2, 4, 4}, gen), Tensor::randn({3, 2, 2, 3}, gen),
                                    Tensor::randn({3}, gen)});
}

TEST_CASE("conv2d passes gradcheck with stride 2", "[conv]") {
  Generator gen(12);
  require_gradcheck(conv_body({.stride = {2, 2}}), {Tensor::randn({1, 2, 5, 5}, gen), Tensor::randn({2, 2, 2, 2}, gen),
                                                    Tensor::randn({2}, gen)});
}

TEST_CASE("conv2d passes gradcheck with padding 1", "[conv]") {
  Generator gen(13);
  require_gradcheck(conv_body({.padding = {1, 1}}), {Tensor::randn({1, 2, 3, 4}, gen),
                                                     Tensor::randn({2, 2, 3, 3}, gen), Tensor::randn({2}, gen)});
}

TEST_CASE("conv2d passes gradcheck with dilation 2", "[conv]") {
  Generator gen(14);
  require_gradcheck(conv_body({.dilation = {2, 2}}), {Tensor::randn({1, 2, 5, 6}, gen),
                                                      Tensor::randn({2, 2, 2, 2}, gen), Tensor::randn({2}, gen)});
}

TEST_CASE("conv2d passes gradcheck with 2 groups", "[conv]") {
  Generator gen(15);
  require_gradcheck(conv_body({.groups = 2}), {Tensor::randn({1, 4, 4, 4}, gen), Tensor::randn({4, 2, 2, 2}, gen),
                                               Tensor::randn({4}, gen)});
}

TEST_CASE("conv2d passes gradcheck without bias", "[conv]") {
  Generator gen(16);
  require_gradcheck(conv_no_bias_body({}), {Tensor::randn({2, 2, 4, 4}, gen), Tensor::randn({3, 2, 2, 2}, gen)});
}

TEST_CASE("conv2d passes gradcheck with every option at once, per axis", "[conv]") {
  Generator gen(17);
  require_gradcheck(conv_no_bias_body({.stride = {2, 1}, .padding = {1, 2}, .dilation = {2, 1}, .groups = 2}),
                    {Tensor::randn({1, 4, 6, 4}, gen), Tensor::randn({2, 2, 2, 3}, gen)});
}

// ---- conv2d: errors ------------------------------------------------------------------------

TEST_CASE("conv2d rejects an input that is not 4-d, naming the operator and shapes", "[conv]") {
  const std::string msg =
      error_message<ShapeError>([] { op::conv2d(Tensor::ones({3, 5, 5}), Tensor::ones({2, 3, 3, 3})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("(3,5,5)") && Contains("4-d"));
}

TEST_CASE("conv2d rejects a weight that is not 4-d", "[conv]") {
  const std::string msg = error_message<ShapeError>([] { op::conv2d(Tensor::ones({1, 3, 5, 5}), Tensor::ones({2, 27})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("(2,27)") && Contains("4-d"));
}

TEST_CASE("conv2d rejects an input whose channels differ from the weight's", "[conv]") {
  const std::string msg =
      error_message<ShapeError>([] { op::conv2d(Tensor::ones({1, 3, 5, 5}), Tensor::ones({4, 2, 3, 3})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("(1,3,5,5)") && Contains("(4,2,3,3)") && Contains("expects 2") &&
                      Contains("has 3"));
}

TEST_CASE("conv2d rejects input channels that the groups do not fit", "[conv]") {
  const std::string msg = error_message<ShapeError>(
      [] { op::conv2d(Tensor::ones({1, 5, 5, 5}), Tensor::ones({4, 2, 3, 3}), NodeRef(), {.groups = 2}); });
  CHECK_THAT(msg, Contains("groups=2") && Contains("expects 4") && Contains("has 5"));
}

TEST_CASE("conv2d rejects groups that do not divide the output channels", "[conv]") {
  const std::string msg = error_message<ShapeError>(
      [] { op::conv2d(Tensor::ones({1, 4, 5, 5}), Tensor::ones({3, 2, 3, 3}), NodeRef(), {.groups = 2}); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("groups=2") && Contains("does not divide"));
}

TEST_CASE("conv2d rejects a bias that is not one value per output channel", "[conv]") {
  const std::string msg = error_message<ShapeError>(
      [] { op::conv2d(Tensor::ones({1, 3, 5, 5}), Tensor::ones({4, 3, 3, 3}), Tensor::ones({3})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("bias (3,)") && Contains("(4,)"));
}

TEST_CASE("conv2d rejects a kernel larger than the padded input", "[conv]") {
  const std::string msg =
      error_message<ShapeError>([] { op::conv2d(Tensor::ones({1, 1, 2, 5}), Tensor::ones({1, 1, 3, 3})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("(1,1,2,5)") && Contains("too small"));
  // Padding makes room, and dilation takes it again.
  CHECK(op::conv2d(Tensor::ones({1, 1, 2, 5}), Tensor::ones({1, 1, 3, 3}), NodeRef(), {.padding = {1, 0}})
            .shape() == Shape{1, 1, 2, 3});
  CHECK_THROWS_AS(op::conv2d(Tensor::ones({1, 1, 4, 5}), Tensor::ones({1, 1, 3, 3}), NodeRef(), {.dilation = {2, 1}}),
                  ShapeError);
}

TEST_CASE("conv2d rejects non-positive stride, dilation or groups and negative padding", "[conv]") {
  const Tensor x = Tensor::ones({1, 2, 5, 5});
  const Tensor w = Tensor::ones({2, 2, 3, 3});
  CHECK_THAT(error_message<UsageError>([&] { op::conv2d(x, w, NodeRef(), {.stride = {0, 1}}); }),
             Contains("conv2d") && Contains("stride"));
  CHECK_THROWS_AS(op::conv2d(x, w, NodeRef(), {.padding = {-1, 0}}), UsageError);
  CHECK_THROWS_AS(op::conv2d(x, w, NodeRef(), {.dilation = {1, 0}}), UsageError);
  CHECK_THROWS_AS(op::conv2d(x, w, NodeRef(), {.groups = 0}), UsageError);
}

TEST_CASE("conv2d rejects operands of different dtypes and int64 operands", "[conv]") {
  const std::string msg = error_message<TypeError>(
      [] { op::conv2d(Tensor::ones({1, 1, 3, 3}, DType::Float32), Tensor::ones({1, 1, 2, 2})); });
  CHECK_THAT(msg, Contains("conv2d") && Contains("float32") && Contains("float64"));
  CHECK_THROWS_AS(op::conv2d(Tensor::ones({1, 1, 3, 3}, DType::Int64), Tensor::ones({1, 1, 2, 2}, DType::Int64)),
                  TypeError);
}

// ---- max_pool2d ----------------------------------------------------------------------------

TEST_CASE("max_pool2d with a 2x2 kernel and the default stride matches torch", "[conv]") {
  check_pool_against_torch([](const NodeRef& x) { return op::max_pool2d(x, {2, 2}); }, {2, 2, 4, 6}, {2, 2, 2, 3},
                           kMaxK2Out, kMaxK2GradInput);
}

TEST_CASE("max_pool2d with kernel 3, stride 2 and padding 1 matches torch", "[conv]") {
  check_pool_against_torch(
      [](const NodeRef& x) { return op::max_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}); }, {2, 2, 7, 6},
      {2, 2, 4, 3}, kMaxK3S2P1Out, kMaxK3S2P1GradInput);
}

TEST_CASE("max_pool2d with a rectangular dilated kernel matches torch", "[conv]") {
  check_pool_against_torch(
      [](const NodeRef& x) {
        return op::max_pool2d(x, {2, 3}, {.stride = {1, 2}, .padding = {1, 1}, .dilation = {2, 2}});
      },
      {1, 2, 7, 7}, {1, 2, 7, 3}, kMaxDilationOut, kMaxDilationGradInput);
}

TEST_CASE("max_pool2d with an unpadded 3x3 kernel and stride 2 matches torch", "[conv]") {
  check_pool_against_torch([](const NodeRef& x) { return op::max_pool2d(x, {3, 3}, {.stride = {2, 2}}); },
                           {1, 2, 7, 9}, {1, 2, 3, 4}, kMaxK3S2Out, kMaxK3S2GradInput);
}

TEST_CASE("max_pool2d with an unpadded rectangular kernel matches torch", "[conv]") {
  check_pool_against_torch([](const NodeRef& x) { return op::max_pool2d(x, {2, 3}, {.stride = {2, 1}}); },
                           {1, 2, 6, 7}, {1, 2, 3, 5}, kMaxRectOut, kMaxRectGradInput);
}

TEST_CASE("max_pool2d routes the gradient to the first of tied maxima", "[conv]") {
  // torch 1.13: F.max_pool2d([[1, 1, 3, 3], [0, 1, 3, 2]], 2) = [1, 3], gradient to positions 0 and 2
  const Tensor x = Tensor{{1.0, 1.0, 3.0, 3.0}, {0.0, 1.0, 3.0, 2.0}}.reshape({1, 1, 2, 4});
  CHECK(close(op::max_pool2d(x, {2, 2}).value(), Tensor{1.0, 3.0}.reshape({1, 1, 1, 2})));
  const Body f = [](std::span<const NodeRef> in) { return op::max_pool2d(in[0], {2, 2}); };
  const Tensor g = vjp(f, {x}, Tensor{5.0, 7.0}.reshape({1, 1, 1, 2}))[0];
  CHECK(close(g, Tensor{{5.0, 0.0, 7.0, 0.0}, {0.0, 0.0, 0.0, 0.0}}.reshape({1, 1, 2, 4})));
}

TEST_CASE("max_pool2d propagates NaN and routes its gradient there", "[conv]") {
  // torch 1.13: F.max_pool2d([[1, nan], [5, 2]], 2) = nan, gradient to the NaN
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor{{1.0, nan}, {5.0, 2.0}}.reshape({1, 1, 2, 2});
  CHECK(std::isnan(op::max_pool2d(x, {2, 2}).value().item()));
  const Body f = [](std::span<const NodeRef> in) { return op::max_pool2d(in[0], {2, 2}); };
  CHECK(close(vjp(f, {x}, Tensor(3.0).reshape({1, 1, 1, 1}))[0], Tensor{{0.0, 3.0}, {0.0, 0.0}}.reshape({1, 1, 2, 2})));
}

TEST_CASE("max_pool2d passes gradcheck with stride different from the kernel and padding", "[conv]") {
  Generator gen(21);
  const Body f = [](std::span<const NodeRef> x) {
    return op::max_pool2d(x[0], {3, 2}, {.stride = {2, 1}, .padding = {1, 1}});
  };
  require_gradcheck(f, {Tensor::randn({2, 2, 5, 4}, gen)});
}

TEST_CASE("max_pool2d passes gradcheck with dilation", "[conv]") {
  Generator gen(22);
  const Body f = [](std::span<const NodeRef> x) { return op::max_pool2d(x[0], {2, 2}, {.dilation = {2, 1}}); };
  require_gradcheck(f, {Tensor::randn({1, 2, 6, 5}, gen)});
}

TEST_CASE("max_pool2d in float32 keeps the dtype and agrees with float64", "[conv]") {
  const Tensor x = input_wave({2, 2, 7, 6});
  const Tensor y = op::max_pool2d(x.to(DType::Float32), {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, ref(kMaxK3S2P1Out, {2, 2, 4, 3}), 1e-6, 1e-6));
}

TEST_CASE("max_pool2d rejects a non-4-d input, too much padding and a window larger than the input", "[conv]") {
  CHECK_THAT(error_message<ShapeError>([] { op::max_pool2d(Tensor::ones({2, 4, 4}), {2, 2}); }),
             Contains("max_pool2d") && Contains("(2,4,4)") && Contains("4-d"));
  CHECK_THAT(error_message<ShapeError>([] { op::max_pool2d(Tensor::ones({1, 1, 4, 4}), {2, 2}, {.padding = {2, 0}}); }),
             Contains("max_pool2d") && Contains("half the kernel"));
  CHECK_THAT(error_message<ShapeError>([] { op::max_pool2d(Tensor::ones({1, 1, 1, 4}), {2, 2}); }),
             Contains("max_pool2d") && Contains("(1,1,1,4)") && Contains("too small"));
}

TEST_CASE("max_pool2d rejects a non-positive kernel size or negative stride", "[conv]") {
  CHECK_THROWS_AS(op::max_pool2d(Tensor::ones({1, 1, 4, 4}), {0, 2}), UsageError);
  CHECK_THROWS_AS(op::max_pool2d(Tensor::ones({1, 1, 4, 4}), {2, 2}, {.stride = {-1, 1}}), UsageError);
}

TEST_CASE("max_pool2d and avg_pool2d refuse a stride of 0, which used to mean the kernel size", "[conv]") {
  // torch 1.13: F.max_pool2d(x, 2, stride=0) raises "stride should be greater than zero"
  const Tensor x = Tensor::ones({1, 1, 4, 4});
  CHECK_THAT(error_message<UsageError>([&] { op::max_pool2d(x, {2, 2}, {.stride = {0, 0}}); }),
             Contains("max_pool2d") && Contains("stride") && Contains("(0, 0)"));
  CHECK_THAT(error_message<UsageError>([&] { op::avg_pool2d(x, {2, 2}, {.stride = {0, 0}}); }),
             Contains("avg_pool2d") && Contains("stride") && Contains("(0, 0)"));
  CHECK_THAT(error_message<UsageError>([&] { op::max_pool2d(x, {2, 2}, {.stride = {0, 1}}); }),
             Contains("max_pool2d") && Contains("stride"));
  // unset, the stride is the kernel size
  CHECK(op::max_pool2d(x, {2, 2}).value().shape() == Shape{1, 1, 2, 2});
  CHECK(op::avg_pool2d(x, {2, 1}).value().shape() == Shape{1, 1, 2, 4});
}

// ---- avg_pool2d ----------------------------------------------------------------------------

TEST_CASE("avg_pool2d with a 2x2 kernel and the default stride matches torch", "[conv]") {
  check_pool_against_torch([](const NodeRef& x) { return op::avg_pool2d(x, {2, 2}); }, {2, 2, 4, 6}, {2, 2, 2, 3},
                           kAvgK2Out, kAvgK2GradInput);
}

TEST_CASE("avg_pool2d with padding counts the padded zeros by default, like torch", "[conv]") {
  check_pool_against_torch(
      [](const NodeRef& x) { return op::avg_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}); }, {2, 2, 7, 6},
      {2, 2, 4, 3}, kAvgK3S2P1Out, kAvgK3S2P1GradInput);
}

TEST_CASE("avg_pool2d with count_include_pad false averages the input elements only, like torch", "[conv]") {
  check_pool_against_torch(
      [](const NodeRef& x) {
        return op::avg_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = {1, 1}, .count_include_pad = false});
      },
      {2, 2, 7, 6}, {2, 2, 4, 3}, kAvgK3S2P1NoPadOut, kAvgK3S2P1NoPadGradInput);
}

TEST_CASE("avg_pool2d with a rectangular kernel and per-axis stride and padding matches torch", "[conv]") {
  check_pool_against_torch(
      [](const NodeRef& x) { return op::avg_pool2d(x, {2, 3}, {.stride = {1, 2}, .padding = {1, 0}}); }, {1, 2, 5, 7},
      {1, 2, 6, 3}, kAvgRectOut, kAvgRectGradInput);
}

TEST_CASE("avg_pool2d passes gradcheck with stride different from the kernel and padding", "[conv]") {
  Generator gen(31);
  for (bool include : {true, false}) {
    INFO("count_include_pad " << include);
    const Body f = [include](std::span<const NodeRef> x) {
      return op::avg_pool2d(x[0], {3, 2}, {.stride = {2, 1}, .padding = {1, 1}, .count_include_pad = include});
    };
    require_gradcheck(f, {Tensor::randn({2, 2, 5, 4}, gen)});
  }
}

TEST_CASE("avg_pool2d in float32 keeps the dtype and agrees with float64", "[conv]") {
  const Tensor x = input_wave({2, 2, 7, 6});
  const Tensor y = op::avg_pool2d(x.to(DType::Float32), {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, ref(kAvgK3S2P1Out, {2, 2, 4, 3}), 1e-6, 1e-6));
}

TEST_CASE("avg_pool2d rejects a non-4-d input, too much padding and a window larger than the input", "[conv]") {
  CHECK_THAT(error_message<ShapeError>([] { op::avg_pool2d(Tensor::ones({4, 4}), {2, 2}); }),
             Contains("avg_pool2d") && Contains("(4,4)") && Contains("4-d"));
  CHECK_THAT(error_message<ShapeError>([] { op::avg_pool2d(Tensor::ones({1, 1, 4, 4}), {3, 3}, {.padding = {1, 2}}); }),
             Contains("avg_pool2d") && Contains("half the kernel"));
  CHECK_THAT(error_message<ShapeError>([] { op::avg_pool2d(Tensor::ones({1, 1, 4, 1}), {2, 2}); }),
             Contains("avg_pool2d") && Contains("too small"));
}
