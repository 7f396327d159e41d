// One operator table for both devices: every operator's value and vector-Jacobian product on
// CUDA equals the CPU's (float64 to 1e-12, float32 to 1e-5 relative), with broadcast and
// non-contiguous operands. An operator without a CUDA path must be listed in kCpuOnly with a
// reason, or its case fails; a listed one must refuse CUDA operands with a DeviceError saying it
// has no CUDA implementation, so that giving it one fails its case until the list is updated.
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/bmm.h>
#include <zkynet/ops/compare.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/jacobian.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/attention.h>
#include <zkynet/ops/linalg.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/normalization.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/recurrent.h>
#include <zkynet/ops/select.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/optim/adam.h>
#include <zkynet/optim/clip.h>
#include <zkynet/optim/rmsprop.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>

#include "user_functors.h"

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

using namespace zkynet;

namespace {

using Body = std::function<NodeRef(std::span<const NodeRef>)>;

// An int64 tensor (indices, a condition) on x's device; `transposed`: the transpose of `shape`
// read back as a non-contiguous view of shape.
NodeRef int64_on(const NodeRef& x, const std::vector<std::int64_t>& values, const Shape& shape,
                 bool transposed = false) {
  if (!transposed) return Tensor::from_vector(values, shape).to(x.value().device());
  return Tensor::from_vector(values, {shape[1], shape[0]}).to(x.value().device()).transpose(0, 1);
}

struct Case {
  std::string name;
  Body body;
  std::vector<Shape> shapes;
  bool positive = false;   // inputs > 0 (log, sqrt, div's divisor)
  bool transposed = false; // the first input a transposed (non-contiguous) view
  // float32's relative tolerance: cuDNN's convolution algorithms (Winograd, FFT) round otherwise
  // than a direct sum, so conv2d rows allow 1e-4 (TF32 stays off).
  double rtol32 = 1e-5;
};

// conv2d with options, float32 compared to 1e-4.
Case conv_case(std::string name, std::vector<Shape> shapes, op::Conv2dOptions options, bool transposed = false) {
  const bool bias = shapes.size() == 3;
  return {std::move(name),
          [=](auto x) { return op::conv2d(x[0], x[1], bias ? x[2] : NodeRef(), options); },
          std::move(shapes),
          false,
          transposed,
          1e-4};
}

// Class indices as an int64 target on the scores' device: (N,), or 0-d for one index.
NodeRef classes(const NodeRef& scores, const std::vector<std::int64_t>& indices) {
  const Shape shape = scores.shape().size() == 1 ? Shape{} : Shape{static_cast<std::int64_t>(indices.size())};
  return Tensor::from_vector(indices, shape).to(scores.value().device());
}

const std::vector<Case>& table() {
  static const std::vector<Case> cases = {
      {"add broadcast", [](auto x) { return op::add(x[0], x[1]); }, {{4, 5}, {5}}},
      {"add scalar", [](auto x) { return op::add(x[0], 2.0); }, {{3, 4}}},
      {"sub", [](auto x) { return op::sub(x[0], x[1]); }, {{4, 1}, {4, 5}}},
      {"mult transposed", [](auto x) { return op::mult(x[0], x[1]); }, {{5, 4}, {5, 4}}, false, true},
      {"div", [](auto x) { return op::div(x[0], x[1]); }, {{3, 4}, {3, 4}}, true},
      {"neg", [](auto x) { return op::neg(x[0]); }, {{7}}},
      {"square", [](auto x) { return op::square(x[0]); }, {{2, 3}}},
      {"exp", [](auto x) { return op::exp(x[0]); }, {{2, 3}}},
      {"log", [](auto x) { return op::log(x[0]); }, {{2, 3}}, true},
      {"sqrt", [](auto x) { return op::sqrt(x[0]); }, {{2, 3}}, true},
      {"tanh", [](auto x) { return op::tanh(x[0]); }, {{2, 3}}},
      {"relu", [](auto x) { return op::relu(x[0]); }, {{4, 6}}},
      {"sigmoid", [](auto x) { return op::sigmoid(x[0]); }, {{4, 6}}},
      {"sum all", [](auto x) { return op::sum(x[0]); }, {{300, 70}}},
      {"sum axis 0", [](auto x) { return op::sum(x[0], {0}); }, {{300, 70}}},
      {"sum axes (0, 2) transposed", [](auto x) { return op::sum(x[0], {0, 2}, true); }, {{5, 6, 7}}, false, true},
      {"mean", [](auto x) { return op::mean(x[0], {1}); }, {{8, 9}}},
      {"matmul", [](auto x) { return op::matmul(x[0], x[1]); }, {{7, 5}, {5, 3}}},
      {"matmul batched transposed", [](auto x) { return op::matmul(x[0], x[1]); }, {{2, 5, 7}, {2, 7, 3}}, false, true},
      {"linear", [](auto x) { return op::linear(x[0], x[1], x[2]); }, {{6, 5}, {4, 5}, {4}}},
      {"greater mask times x, broadcast", [](auto x) { return op::mult(x[0], op::greater(x[0], x[1])); }, {{4, 5}, {5}}},
      {"less_equal, equal, not_equal masks", [](auto x) {
         return op::add(op::add(op::less_equal(x[0], 0.1), op::equal(x[0], x[0])), op::mult(x[0], op::not_equal(x[0], 0.0)));
       }, {{3, 4}}},
      // Batched products: one strided-batched cuBLAS call where the batch strides are uniform
      // (contiguous or broadcast), a GEMM per entry where they are not.
      {"bmm", [](auto x) { return op::bmm(x[0], x[1]); }, {{3, 4, 5}, {3, 5, 2}}},
      {"matmul batch broadcast", [](auto x) { return op::matmul(x[0], x[1]); }, {{3, 4, 5}, {5, 2}}},
      {"matmul 4-d batch, one operand broadcast on an inner batch axis",
       [](auto x) { return op::matmul(x[0], x[1]); }, {{2, 3, 4, 5}, {2, 1, 5, 2}}},
      // Indexing and selection (kernels/select.cpp, cuda/select.cu). Index tensors are int64 on the
      // data's device; scatter-add VJPs (index_select, gather, embedding) sum repeated indices
      // with atomics; max runs a lane per thread (short lanes) or per warp (long or few lanes);
      // var/std sum in double over one chunk or several; reshape copies non-contiguous input.
      {"slice step 2", [](auto x) { return op::slice(x[0], 1, 1, 7, 2); }, {{3, 8}}},
      {"slice transposed", [](auto x) { return op::slice(x[0], 0, -3, 5); }, {{6, 4}}, false, true},
      {"concat axis 1", [](auto x) { return op::concat({x[0], x[1]}, 1); }, {{3, 2}, {3, 5}}},
      {"concat transposed", [](auto x) { return op::concat({x[0], x[1]}, 0); }, {{4, 3}, {2, 3}}, false, true},
      {"stack", [](auto x) { return op::stack({x[0], x[1]}, 1); }, {{3, 4}, {3, 4}}},
      {"split", [](auto x) {
         const auto p = op::split(x[0], 2, 1);
         return op::add(op::mult(p[0], p[1]), p[2]);
       }, {{3, 6}}},
      {"index_select axis 1, repeated",
       [](auto x) { return op::index_select(x[0], 1, int64_on(x[0], {4, 0, 4, 2, 4}, {5})); }, {{3, 5}}},
      {"index_select axis 0 transposed",
       [](auto x) { return op::index_select(x[0], 0, int64_on(x[0], {2, 2, 0}, {3})); }, {{4, 3}}, false, true},
      {"gather axis 1, index narrower than x",
       [](auto x) { return op::gather(x[0], 1, int64_on(x[0], {0, 3, 3, 1, 2, 2, 0, 0}, {2, 4})); }, {{3, 4}}},
      {"gather axis 0, transposed index",
       [](auto x) { return op::gather(x[0], 0, int64_on(x[0], {3, 0, 3, 1, 1, 2}, {2, 3}, true)); }, {{4, 3}}},
      {"embedding repeated indices",
       [](auto x) { return op::embedding(int64_on(x[0], {1, 4, 1, 1, 0, 4}, {2, 3}), x[0]); }, {{5, 3}}},
      {"embedding transposed weight",
       [](auto x) { return op::embedding(int64_on(x[0], {5, 0, 5}, {3}), x[0]); }, {{6, 4}}, false, true},
      {"embedding 400 lookups of 7 rows", [](auto x) {
         std::vector<std::int64_t> rows;
         for (std::int64_t i = 0; i < 400; ++i) rows.push_back(i * i % 7);
         return op::embedding(int64_on(x[0], rows, {20, 20}), x[0]);
       }, {{7, 64}}},
      {"where float condition (0, NaN) broadcast", [](auto x) {
         const double nan = std::numeric_limits<double>::quiet_NaN();
         const NodeRef condition = Tensor::from_vector<double>({1, 0, nan, -2, 0}, {5}).to(x[0].value().device());
         return op::where(condition, x[0], x[1]);
       }, {{4, 5}, {5}}},
      {"where int64 condition, a number",
       [](auto x) { return op::where(int64_on(x[0], {1, 0, 0, 2, 0, -1}, {2, 3}), x[0], 0.5); }, {{4, 2, 3}}},
      {"clamp both bounds", [](auto x) { return op::clamp(x[0], -0.5, 0.7); }, {{4, 6}}},
      {"clamp lower bound transposed", [](auto x) { return op::clamp(x[0], 0.1, std::nullopt); }, {{3, 5}}, false, true},
      {"maximum broadcast", [](auto x) { return op::maximum(x[0], x[1]); }, {{4, 5}, {5}}},
      {"maximum transposed", [](auto x) { return op::maximum(x[0], x[1]); }, {{5, 4}, {5, 1}}, false, true},
      {"minimum with ties", [](auto x) { return op::minimum(x[0], op::clamp(x[0], -0.3, 0.3)); }, {{4, 6}}},
      {"max axis 1, a lane per thread", [](auto x) { return op::max(x[0], 1); }, {{4, 7}}},
      {"max last axis keepdim, a lane per warp", [](auto x) { return op::max(x[0], -1, true); }, {{3, 500}}},
      {"max axis 0, strided lanes per warp", [](auto x) { return op::max(x[0], 0); }, {{200, 3}}},
      {"max axis 0 transposed", [](auto x) { return op::max(x[0], 0); }, {{5, 4}}, false, true},
      {"argmax then gather", [](auto x) { return op::gather(x[0], 1, op::argmax(x[0], 1, true)); }, {{4, 9}}},
      {"var axis 1", [](auto x) { return op::var(x[0], {1}); }, {{6, 9}}},
      {"var axes (0, 2) biased keepdim", [](auto x) { return op::var(x[0], {0, 2}, false, true); }, {{3, 4, 5}}},
      {"var of all, several chunks per lane", [](auto x) { return op::var(x[0]); }, {{300, 70}}},
      {"std axis 0 transposed", [](auto x) { return op::std(x[0], {0}); }, {{5, 4}}, false, true},
      {"std keepdim, long lanes", [](auto x) { return op::std(x[0], {1}, true, true); }, {{4, 5000}}},
      {"reshape transposed", [](auto x) { return op::reshape(x[0], {4, 5}); }, {{5, 4}}, false, true},
      {"transpose then reshape", [](auto x) { return op::reshape(op::transpose(x[0], 0, 2), {6, 4}); }, {{2, 3, 4}}},
      {"reshape", [](auto x) { return op::reshape(x[0], {3, 4}); }, {{2, 6}}},
      {"transpose", [](auto x) { return op::transpose(x[0]); }, {{2, 6}}},
      // Jacobian-based operators: the functor's own CUDA kernels (jacobian_cuda.cuh), values on
      // the device and derivatives from dual numbers there; the built-in ones registered in
      // ops/src/kernels/cuda/jacobian.cu, the test's own in user_functors.cu.
      {"pow (Jacobian-based) broadcast", [](auto x) { return op::pow(x[0], x[1]); }, {{3, 4}, {4}}, true},
      {"pow of a number", [](auto x) { return op::pow(x[0], 3.0); }, {{2, 5}}},
      {"abs (Jacobian-based) transposed", [](auto x) { return op::abs(x[0]); }, {{4, 3}}, false, true},
      {"tanh_dual", [](auto x) { return op::tanh_dual(x[0]); }, {{5, 6}}},
      {"user elementwise softplus", [](auto x) { return op::elementwise(zkynet_test::Softplus{}, x[0]); }, {{300, 7}}},
      {"user elementwise of 3 operands broadcast",
       [](auto x) { return op::elementwise(zkynet_test::MulAdd{}, x[0], x[1], x[2]); }, {{4, 5}, {5}, {4, 1}}},
      {"user general inner product",
       [](auto x) { return op::jacobian_op(zkynet_test::InnerProduct{}, x[0], x[1]); }, {{9}, {9}}},
      {"user general cumsum", [](auto x) { return op::jacobian_op(zkynet_test::CumSum{}, x[0]); }, {{40}}},
      // Softmax and the losses: contiguous lanes one to a warp (n <= 1024) or a block, strided
      // lanes (inner >= 32) one to a thread; class targets are int64 on the scores' device.
      // (No class weights or ignore_index: the operators have none, see ops/loss.h.)
      {"softmax", [](auto x) { return op::softmax(x[0]); }, {{4, 7}}},
      {"softmax axis 0, lanes 12 apart", [](auto x) { return op::softmax(x[0], 0); }, {{5, 3, 4}}},
      {"softmax axis 0, a lane per thread", [](auto x) { return op::softmax(x[0], 0); }, {{6, 40}}},
      {"softmax, a lane per block", [](auto x) { return op::softmax(x[0]); }, {{3, 1500}}},
      {"log_softmax transposed", [](auto x) { return op::log_softmax(x[0]); }, {{4, 7}}, false, true},
      {"log_softmax axis 1", [](auto x) { return op::log_softmax(x[0], 1); }, {{3, 5, 40}}},
      {"logsumexp", [](auto x) { return op::logsumexp(x[0], {1}); }, {{4, 6}}},
      {"logsumexp axes (0, 2) keepdim", [](auto x) { return op::logsumexp(x[0], {0, 2}, true); }, {{3, 4, 5}}},
      {"cross_entropy", [](auto x) { return op::cross_entropy(x[0], classes(x[0], {0, 4, 2, 2, 1, 3})); }, {{6, 5}}},
      {"cross_entropy none, a row per block",
       [](auto x) { return op::cross_entropy(x[0], classes(x[0], {1499, 0}), op::Reduction::None); }, {{2, 1500}}},
      {"cross_entropy sum unbatched",
       [](auto x) { return op::cross_entropy(x[0], classes(x[0], {3}), op::Reduction::Sum); }, {{5}}},
      {"nll_loss", [](auto x) { return op::nll_loss(x[0], classes(x[0], {2, 0, 1, 2})); }, {{4, 3}}},
      {"nll_loss none",
       [](auto x) { return op::nll_loss(x[0], classes(x[0], {2, 0, 1, 2}), op::Reduction::None); }, {{4, 3}}},
      {"mse_loss", [](auto x) { return op::mse_loss(x[0], x[1]); }, {{4, 6}, {4, 6}}},
      {"mse_loss none transposed",
       [](auto x) { return op::mse_loss(x[0], x[1], op::Reduction::None); }, {{4, 6}, {4, 6}}, false, true},
      {"binary_cross_entropy_with_logits",
       [](auto x) { return op::binary_cross_entropy_with_logits(x[0], x[1]); }, {{5, 3}, {5, 3}}},
      {"binary_cross_entropy_with_logits sum", [](auto x) {
         return op::binary_cross_entropy_with_logits(x[0], x[1], op::Reduction::Sum);
       }, {{7}, {7}}},
      // Normalization (cuda/normalization.cu): groups summed in chunks of 8192 elements (the long
      // rows and big channels take several); running statistics live on the input's device.
      {"layer_norm", [](auto x) { return op::layer_norm(x[0], {6}, x[1], x[2]); }, {{4, 6}, {6}, {6}}},
      {"layer_norm over two axes, no affine", [](auto x) { return op::layer_norm(x[0], {3, 4}); }, {{2, 3, 4}}},
      {"layer_norm weight only, transposed", [](auto x) { return op::layer_norm(x[0], {5}, x[1]); },
       {{3, 4, 5}, {5}}, false, true},
      {"layer_norm bias only", [](auto x) { return op::layer_norm(x[0], {7}, NodeRef(), x[1]); }, {{2, 3, 7}, {7}}},
      {"layer_norm rows of 9000, several chunks",
       [](auto x) { return op::layer_norm(x[0], {9000}, x[1], x[2], 1e-3); }, {{3, 9000}, {9000}, {9000}}},
      {"batch_norm training", [](auto x) {
         const Tensor& v = x[0].value();
         return op::batch_norm(x[0], Tensor::zeros({3}, v.dtype(), v.device()), Tensor::ones({3}, v.dtype(), v.device()),
                               x[1], x[2], true);
       }, {{4, 3, 5}, {3}, {3}}},
      {"batch_norm evaluation", [](auto x) {
         const Tensor& v = x[0].value();
         return op::batch_norm(x[0], Tensor::full({3}, 0.1, v.dtype(), v.device()),
                               Tensor::full({3}, 2.0, v.dtype(), v.device()), x[1], x[2], false);
       }, {{4, 3}, {3}, {3}}},
      {"batch_norm training 4-d, no statistics, no affine",
       [](auto x) { return op::batch_norm(x[0], Tensor(), Tensor(), NodeRef(), NodeRef(), true, 0.1, 1e-3); },
       {{3, 4, 5, 6}}},
      {"batch_norm training, 10560 per channel (two chunks), weight only", [](auto x) {
         const Tensor& v = x[0].value();
         return op::batch_norm(x[0], Tensor::zeros({2}, v.dtype(), v.device()), Tensor::ones({2}, v.dtype(), v.device()),
                               x[1], NodeRef(), true, 0.3);
       }, {{16, 2, 33, 20}, {2}}},
      {"batch_norm evaluation 4-d transposed", [](auto x) {
         const Tensor& v = x[0].value();
         return op::batch_norm(x[0], Tensor::full({3}, -0.2, v.dtype(), v.device()),
                               Tensor::full({3}, 0.7, v.dtype(), v.device()), x[1], x[2], false);
       }, {{2, 3, 4, 5}, {3}, {3}}, false, true},
      // Recurrent operators (cuda/recurrent.cu): cuBLAS projections and own cell kernels in the
      // CPU's packed layout; with and without biases and initial states, odd sizes, two stacked
      // layers (the second reads the first's output), one-step cells, longer sequences (float32
      // to 1e-4: the GEMMs' rounding compounds over the steps).
      {"lstm", [](auto x) { return op::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]).output; },
       {{3, 2, 4}, {2, 5}, {2, 5}, {20, 4}, {20, 5}, {20}, {20}}},
      {"lstm no bias, odd sizes, h_n and c_n", [](auto x) {
         const op::RecurrentResult r = op::lstm(x[0], x[1], x[2], x[3], x[4]);
         return op::add(op::add(r.output, r.h_n), op::mult(r.c_n, 0.5));
       }, {{5, 3, 7}, {3, 9}, {3, 9}, {36, 7}, {36, 9}}},
      {"lstm zero initial state, b_hh only, one sequence", [](auto x) {
         return op::lstm(x[0], NodeRef(), NodeRef(), x[1], x[2], NodeRef(), x[3]).output;
       }, {{4, 1, 3}, {8, 3}, {8, 2}, {8}}},
      {"lstm 2 layers", [](auto x) {
         const op::RecurrentResult a = op::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
         const op::RecurrentResult b = op::lstm(a.output, NodeRef(), NodeRef(), x[7], x[8], x[9], x[10]);
         return op::add(b.output, b.c_n);
       }, {{4, 3, 5}, {3, 6}, {3, 6}, {24, 5}, {24, 6}, {24}, {24}, {12, 6}, {12, 3}, {12}, {12}}},
      {"lstm_cell", [](auto x) {
         const auto [h, c] = op::lstm_cell(x[0], x[1], x[2], x[3], x[4]);
         return op::add(h, c);
       }, {{2, 4}, {2, 5}, {2, 5}, {20, 4}, {20, 5}}},
      {"lstm_cell with biases, odd sizes", [](auto x) {
         const auto [h, c] = op::lstm_cell(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
         return op::sub(h, op::mult(c, c));
       }, {{3, 5}, {3, 7}, {3, 7}, {28, 5}, {28, 7}, {28}, {28}}},
      {"lstm 30 steps, hidden 33", [](auto x) {
         return op::lstm(x[0], x[1], x[2], op::mult(x[3], 0.2), op::mult(x[4], 0.2), x[5], x[6]).output;
       }, {{30, 4, 6}, {4, 33}, {4, 33}, {132, 6}, {132, 33}, {132}, {132}}, false, false, 1e-4},
      {"gru, zero initial state",
       [](auto x) { return op::gru(x[0], NodeRef(), x[1], x[2], x[3], x[4]).output; },
       {{3, 2, 4}, {15, 4}, {15, 5}, {15}, {15}}},
      {"gru with h0, no bias, odd sizes, h_n", [](auto x) {
         const op::RecurrentResult r = op::gru(x[0], x[1], x[2], x[3]);
         return op::add(r.output, r.h_n);
       }, {{5, 3, 7}, {3, 9}, {27, 7}, {27, 9}}},
      {"gru 2 layers", [](auto x) {
         const op::RecurrentResult a = op::gru(x[0], x[1], x[2], x[3], x[4], x[5]);
         return op::gru(a.output, NodeRef(), x[6], x[7], x[8], x[9]).output;
       }, {{4, 3, 5}, {3, 6}, {18, 5}, {18, 6}, {18}, {18}, {9, 6}, {9, 3}, {9}, {9}}},
      {"gru_cell", [](auto x) { return op::gru_cell(x[0], x[1], x[2], x[3]); }, {{2, 4}, {2, 5}, {15, 4}, {15, 5}}},
      {"gru_cell with biases", [](auto x) { return op::gru_cell(x[0], x[1], x[2], x[3], x[4], x[5]); },
       {{3, 5}, {3, 7}, {21, 5}, {21, 7}, {21}, {21}}},
      {"gru 30 steps, hidden 33", [](auto x) {
         return op::gru(x[0], x[1], op::mult(x[2], 0.2), op::mult(x[3], 0.2), x[4], x[5]).output;
       }, {{30, 4, 6}, {4, 33}, {99, 6}, {99, 33}, {99}, {99}}, false, false, 1e-4},
      {"rnn tanh", [](auto x) { return op::rnn(x[0], x[1], x[2], x[3]).output; }, {{3, 2, 4}, {2, 5}, {5, 4}, {5, 5}}},
      {"rnn tanh with biases, odd sizes, h_n", [](auto x) {
         const op::RecurrentResult r = op::rnn(x[0], x[1], x[2], x[3], x[4], x[5]);
         return op::add(r.output, r.h_n);
       }, {{5, 3, 7}, {3, 9}, {9, 7}, {9, 9}, {9}, {9}}},
      {"rnn relu with biases, zero initial state", [](auto x) {
         return op::rnn(x[0], NodeRef(), x[1], op::mult(x[2], 0.3), x[3], x[4], op::RnnActivation::Relu).output;
       }, {{5, 3, 7}, {9, 7}, {9, 9}, {9}, {9}}},
      {"rnn relu 2 layers, no bias", [](auto x) {
         const op::RecurrentResult a = op::rnn(x[0], x[1], x[2], op::mult(x[3], 0.3), NodeRef(), NodeRef(),
                                               op::RnnActivation::Relu);
         return op::rnn(a.output, NodeRef(), x[4], op::mult(x[5], 0.3), NodeRef(), NodeRef(),
                        op::RnnActivation::Relu).output;
       }, {{4, 3, 5}, {3, 6}, {6, 5}, {6, 6}, {4, 6}, {4, 4}}},
      {"rnn tanh 2 layers", [](auto x) {
         const op::RecurrentResult a = op::rnn(x[0], x[1], x[2], x[3], x[4], x[5]);
         return op::rnn(a.output, NodeRef(), x[6], x[7], x[8], x[9]).output;
       }, {{4, 3, 5}, {3, 6}, {6, 5}, {6, 6}, {6}, {6}, {4, 6}, {4, 4}, {4}, {4}}},
      {"rnn_cell relu", [](auto x) {
         return op::rnn_cell(x[0], x[1], x[2], x[3], x[4], x[5], op::RnnActivation::Relu);
       }, {{3, 5}, {3, 7}, {7, 5}, {7, 7}, {7}, {7}}},
      {"rnn tanh on a transposed input", [](auto x) { return op::rnn(x[0], x[1], x[2], x[3]).output; },
       {{3, 4, 2}, {4, 5}, {5, 2}, {5, 5}}, false, true},
      // conv2d through cuDNN (cuda/conv.cu): strides, padding, dilation, groups, odd sizes, no
      // bias, a non-contiguous input; the bias gradient is cuda::sum's.
      conv_case("conv2d padded", {{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}, {.padding = {1, 1}}),
      conv_case("conv2d stride 2, no bias", {{2, 3, 7, 6}, {5, 3, 3, 2}}, {.stride = {2, 2}}),
      conv_case("conv2d dilation 2, padding (2, 1)", {{1, 2, 9, 8}, {3, 2, 3, 3}, {3}},
                {.padding = {2, 1}, .dilation = {2, 2}}),
      conv_case("conv2d groups 2, stride (1, 2)", {{2, 4, 6, 7}, {6, 2, 3, 3}, {6}}, {.stride = {1, 2}, .groups = 2}),
      conv_case("conv2d depthwise, padded", {{2, 3, 5, 5}, {3, 1, 3, 3}, {3}}, {.padding = {1, 1}, .groups = 3}),
      conv_case("conv2d 1x1 on a transposed input", {{2, 3, 5, 4}, {4, 3, 1, 1}, {4}}, {}, true),
      conv_case("conv2d odd sizes, stride (3, 2), padding (2, 1), dilation (1, 2)",
                {{3, 5, 11, 13}, {7, 5, 4, 3}, {7}}, {.stride = {3, 2}, .padding = {2, 1}, .dilation = {1, 2}}),
      conv_case("conv2d 16 to 32 channels, 3x3, batch 8", {{8, 16, 12, 12}, {32, 16, 3, 3}, {32}},
                {.padding = {1, 1}}),
      // Pooling (cuda/pooling.cu): windows clipped by padding, dilation, count_include_pad.
      {"max_pool2d", [](auto x) { return op::max_pool2d(x[0], {2, 2}); }, {{2, 3, 4, 4}}},
      {"max_pool2d 3x3 stride 2 padding 1",
       [](auto x) { return op::max_pool2d(x[0], {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}); }, {{2, 3, 7, 8}}},
      {"max_pool2d (3, 2) dilation 2 stride (1, 2) padding 1", [](auto x) {
         return op::max_pool2d(x[0], {3, 2}, {.stride = {1, 2}, .padding = {1, 1}, .dilation = {2, 2}});
       }, {{1, 2, 9, 9}}},
      {"max_pool2d (2, 3) transposed", [](auto x) { return op::max_pool2d(x[0], {2, 3}); }, {{2, 3, 5, 6}}, false, true},
      {"avg_pool2d", [](auto x) { return op::avg_pool2d(x[0], {2, 2}); }, {{2, 3, 4, 4}}},
      {"avg_pool2d 3x3 stride 2 padding 1",
       [](auto x) { return op::avg_pool2d(x[0], {3, 3}, {.stride = {2, 2}, .padding = {1, 1}}); }, {{2, 3, 7, 8}}},
      {"avg_pool2d (3, 2) stride (2, 1) padding 1, count_include_pad false", [](auto x) {
         return op::avg_pool2d(x[0], {3, 2}, {.stride = {2, 1}, .padding = {1, 1}, .count_include_pad = false});
       }, {{1, 2, 6, 5}}},
      {"avg_pool2d transposed, overlapping", [](auto x) {
         return op::avg_pool2d(x[0], {2, 2}, {.stride = {1, 1}});
       }, {{2, 2, 6, 6}}, false, true},
      // op::linalg (LAPACK): CPU-only (kCpuOnly); inputs built on the operands' device.
      {"linalg.solve", [](auto x) { return op::linalg::solve(x[0], x[1]); }, {{2, 3, 3}, {2, 3, 2}}},
      {"linalg.inv", [](auto x) { return op::linalg::inv(x[0]); }, {{2, 3, 3}}},
      {"linalg.det", [](auto x) { return op::linalg::det(x[0]); }, {{2, 3, 3}}},
      {"linalg.slogdet", [](auto x) { return op::linalg::slogdet(x[0]).logabsdet; }, {{2, 3, 3}}},
      {"linalg.cholesky", [](auto x) {
         return op::linalg::cholesky(op::add(op::matmul(x[0], op::transpose(x[0])), 3.0));
       }, {{2, 3, 3}}},
      {"linalg.cholesky_solve", [](auto x) { return op::linalg::cholesky_solve(x[1], x[0]); }, {{2, 3, 3}, {2, 3, 2}}},
      {"linalg.solve_triangular", [](auto x) { return op::linalg::solve_triangular(x[0], x[1], true); },
       {{2, 3, 3}, {2, 3, 2}}},
      {"linalg.eigh", [](auto x) { return op::linalg::eigh(op::add(x[0], op::transpose(x[0]))).eigenvalues; },
       {{2, 3, 3}}},
      {"linalg.qr", [](auto x) { return op::linalg::qr(x[0]).R; }, {{2, 4, 3}}},
      {"linalg.svd", [](auto x) { return op::linalg::svd(x[0]).S; }, {{2, 4, 3}}},
      {"linalg.matrix_exp", [](auto x) { return op::linalg::matrix_exp(x[0]); }, {{2, 3, 3}}},
      {"linalg.vector_norm", [](auto x) { return op::linalg::vector_norm(x[0], 2, {-1}); }, {{2, 3, 4}}},
      // Attention and GELU (issue 15 §1): CPU-only (kCpuOnly).
      {"scaled_dot_product_attention", [](auto x) { return op::scaled_dot_product_attention(x[0], x[1], x[2]); },
       {{2, 5, 4}, {2, 6, 4}, {2, 6, 3}}},
      {"gelu", [](auto x) { return op::gelu(x[0]); }, {{3, 4}}},
      {"packed_self_attention", [](auto x) { return op::packed_self_attention(x[0], 2); }, {{2, 5, 12}}},
      // stop_gradient has no kernel (its value is its operand's): the same on every device.
      {"stop_gradient", [](auto x) { return op::mult(op::stop_gradient(x[0]), x[1]); }, {{3, 4}, {3, 4}}},
  };
  return cases;
}

// Operators the table knows to lack a CUDA path, with the reason. Each must refuse CUDA operands
// (see the table's test): remove its entry when it gets a CUDA implementation. (RNN, LSTM and
// GRU left the list with cuda/recurrent.cu.)
const std::map<std::string, std::string> kCpuOnly = {
    {"linalg.solve", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.inv", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.det", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.slogdet", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.cholesky", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.cholesky_solve", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.solve_triangular", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.eigh", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.qr", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.svd", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.matrix_exp", "LAPACK on the CPU only (issue 15 §2)"},
    {"linalg.vector_norm", "LAPACK on the CPU only (issue 15 §2)"},
    {"scaled_dot_product_attention", "fused CPU kernel only; a CUDA kernel is GPU work after issue 15"},
    {"gelu", "CPU kernel only; a CUDA kernel is GPU work after issue 15"},
    {"packed_self_attention", "fused CPU kernel only (scaled_dot_product_attention's); GPU work after issue 15"},
};

Tensor input(const Shape& shape, bool positive, std::uint64_t seed, DType dtype) {
  Generator gen(seed);
  return positive ? Tensor::uniform(shape, 0.5, 2.0, gen, dtype) : Tensor::randn(shape, gen, dtype);
}

struct Result {
  Tensor value;
  std::vector<Tensor> grads;
};

Result run(const Case& c, const std::vector<Tensor>& inputs, const Tensor& seed_cpu) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < inputs.size(); ++i) names.push_back("x" + std::to_string(i));
  Lambda module(names, c.body);
  ModuleGraph g = module.invoke(std::vector<NodeRef>(inputs.begin(), inputs.end()));
  g.back(seed_cpu.to(g.value().device()));
  Result r{g.value().cpu(), {}};
  for (const auto& name : names) r.grads.push_back(g.grad(module.input(name)).cpu());
  return r;
}

}  // namespace

TEST_CASE("every operator in the table gives the CPU's value and gradient on CUDA", "[cuda]") {
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    for (const Case& c : table()) {
      const double rtol = dtype == DType::Float64 ? 1e-12 : c.rtol32;
      INFO(c.name << " " << dtype_name(dtype));
      std::vector<Tensor> cpu_inputs, gpu_inputs;
      for (std::size_t i = 0; i < c.shapes.size(); ++i) {
        const bool positive = c.positive && i + 1 == c.shapes.size();
        if (i == 0 && c.transposed) {  // the same shape, as a transposed view of a contiguous base
          Shape base_shape = c.shapes[i];
          std::swap(base_shape[base_shape.size() - 1], base_shape[base_shape.size() - 2]);
          const Tensor base = input(base_shape, positive, 17 + i, dtype);
          cpu_inputs.push_back(base.transpose(-1, -2));
          gpu_inputs.push_back(base.cuda().transpose(-1, -2));
          REQUIRE_FALSE(gpu_inputs.back().is_contiguous());
          continue;
        }
        cpu_inputs.push_back(input(c.shapes[i], positive, 17 + i, dtype));
        gpu_inputs.push_back(cpu_inputs.back().cuda());
      }
      const Shape out_shape = c.body(std::vector<NodeRef>(cpu_inputs.begin(), cpu_inputs.end())).shape();
      const Tensor seed = input(out_shape, false, 99, dtype);
      if (const auto reason = kCpuOnly.find(c.name); reason != kCpuOnly.end()) {
        INFO("listed as CPU-only (" << reason->second << "): on CUDA it must say so");
        CHECK_THROWS_AS(run(c, gpu_inputs, seed), DeviceError);
        CHECK_THROWS_WITH(run(c, gpu_inputs, seed), Catch::Contains("no CUDA implementation"));
        continue;
      }
      const Result want = run(c, cpu_inputs, seed);
      const Result got = run(c, gpu_inputs, seed);
      CHECK(allclose(got.value, want.value, rtol, rtol));
      for (std::size_t i = 0; i < want.grads.size(); ++i) CHECK(allclose(got.grads[i], want.grads[i], rtol, rtol));
    }
  }
}

// Equal where either is NaN or infinite (NaN matching NaN), else within rtol.
bool same_values(const Tensor& got, const Tensor& want, double rtol) {
  const Tensor a = got.cpu().to(DType::Float64).contiguous();
  const Tensor b = want.cpu().to(DType::Float64).contiguous();
  if (a.shape() != b.shape()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<double>()[i];
    const double y = b.data<double>()[i];
    if (std::isnan(x) || std::isnan(y) || std::isinf(x) || std::isinf(y)) {
      if (!(std::isnan(x) && std::isnan(y)) && x != y) return false;
    } else if (std::abs(x - y) > rtol * (1.0 + std::abs(y))) {
      return false;
    }
  }
  return true;
}

TEST_CASE("softmax, log_softmax, logsumexp and cross_entropy shift extreme lanes on CUDA as on the CPU", "[cuda]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Lanes (rows): finite, huge, one +inf, only -inf, one -inf, one NaN.
  const Tensor x = Tensor::from_vector<double>(
      {1, 2, 3, 1e30, -1e30, 0, inf, 1, 2, -inf, -inf, -inf, -inf, 0, 1, nan, 0, 1}, {6, 3});
  const std::vector<Case> cases = {
      {"softmax", [](auto v) { return op::softmax(v[0]); }, {}},
      {"softmax axis 0", [](auto v) { return op::softmax(v[0], 0); }, {}},
      {"log_softmax", [](auto v) { return op::log_softmax(v[0]); }, {}},
      {"logsumexp", [](auto v) { return op::logsumexp(v[0], {1}); }, {}},
      {"cross_entropy none",
       [](auto v) { return op::cross_entropy(v[0], classes(v[0], {0, 1, 2, 0, 1, 2}), op::Reduction::None); }, {}},
  };
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor xc = x.to(dtype);
    for (const Case& c : cases) {
      INFO(c.name << " " << dtype_name(dtype));
      const Tensor seed = Tensor::ones(c.body(std::vector<NodeRef>{xc}).shape(), dtype);
      const Result want = run(c, {xc}, seed);
      const Result got = run(c, {xc.cuda()}, seed);
      CHECK(same_values(got.value, want.value, 1e-5));
      CHECK(same_values(got.grads[0], want.grads[0], 1e-5));
    }
  }
}


TEST_CASE("a float32 sum of 1e8 elements on CUDA is within 1e-6 of the CPU's float64 total", "[cuda]") {
  Generator gen(3);
  const Tensor x = Tensor::uniform({100'000'000}, -1.0, 1.02, gen, DType::Float32);
  const double want = kernels::sum(x.to(DType::Float64)).item();
  const double got = kernels::sum(x.cuda()).item();
  CHECK(std::abs(got - want) <= 1e-6 * std::abs(want));
  const Tensor m = x.reshape({25'000'000, 4});
  const Tensor cols_cpu = kernels::sum(m.to(DType::Float64), {0});
  const Tensor cols_gpu = kernels::sum(m.cuda(), {0}).cpu();
  for (std::int64_t j = 0; j < 4; ++j) CHECK(std::abs(cols_gpu.at({j}) - cols_cpu.at({j})) <= 1e-6 * std::abs(cols_cpu.at({j})));
}

TEST_CASE("tensors move between devices explicitly and keep their values", "[cuda]") {
  const Tensor t = Tensor::arange(12, DType::Float32).reshape({3, 4});
  const Tensor d = t.cuda();
  CHECK(d.device() == Device::cuda());
  CHECK(allclose(d.cpu(), t, 0.0, 0.0));
  CHECK_THROWS_AS(d.item(), ShapeError);
  CHECK(Tensor::scalar(2.5, DType::Float32).cuda().item() == 2.5);
}

TEST_CASE("the caching allocator reuses a freed block on the device", "[cuda]") {
  cuda::empty_cache();
  const auto before = cuda::memory_stats();
  { Tensor a = Tensor::empty({1 << 20}, DType::Float32, Device::cuda()); }
  { Tensor b = Tensor::empty({1 << 20}, DType::Float32, Device::cuda()); }
  const auto after = cuda::memory_stats();
  CHECK(after.cache_hits >= before.cache_hits + 1);
  CHECK(after.allocated_bytes == before.allocated_bytes);
}

// ---- optimizer steps and dropout (ops/src/kernels/cuda/optim.cu, random.cu) ---------------
// Three steps of each optimizer on CUDA against the CPU loops, over more parameters than one
// launch's table holds (32) and one longer than a launch's chunks (256 x 16384 elements); a
// model moved to the GPU after its optimizer was built; dropout's mask equal to the CPU's bit
// for bit (counter-based: the same key gives the same numbers on both devices).

namespace {

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Parameter>)>;

const std::vector<std::pair<std::string, MakeOptimizer>>& optimizers() {
  static const std::vector<std::pair<std::string, MakeOptimizer>> list = {
      {"SGD momentum dampening", [](auto p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.2,
                                                                  .weight_decay = 0.01});
       }},
      {"SGD nesterov", [](auto p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
       }},
      {"SGD plain", [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1}); }},
      {"Adam amsgrad weight_decay", [](auto p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 0.1, .weight_decay = 0.1, .amsgrad = true});
       }},
      {"AdamW", [](auto p) { return std::make_unique<optim::AdamW>(p, optim::AdamWOptions{.lr = 0.1}); }},
      {"RMSprop centered momentum weight_decay", [](auto p) {
         return std::make_unique<optim::RMSprop>(
             p, optim::RMSpropOptions{.lr = 0.01, .weight_decay = 0.1, .momentum = 0.9, .centered = true});
       }},
      {"RMSprop plain", [](auto p) { return std::make_unique<optim::RMSprop>(p, optim::RMSpropOptions{.lr = 0.01}); }},
  };
  return list;
}

std::vector<Shape> optimizer_shapes() {
  std::vector<Shape> shapes;
  for (std::int64_t k = 0; k < 40; ++k) shapes.push_back({k % 7 + 1, 3 * k + 1});
  shapes.push_back({4'500'000});
  shapes.push_back({0, 3});
  return shapes;
}

// The values and state after three steps, gradients drawn on the host from a fixed seed.
std::vector<Tensor> three_steps(const MakeOptimizer& make, DType dtype, Device device) {
  Generator gen(21);
  std::vector<Parameter> params;
  for (const Shape& shape : optimizer_shapes()) {
    params.emplace_back("p" + std::to_string(params.size()), Tensor::randn(shape, gen, dtype).to(device));
  }
  const auto opt = make(params);
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (step == 0 && i % 5 == 3) continue;  // some parameters start late (their own step counts)
      params[i].zero_grad();
      params[i].accumulate_grad(Tensor::randn(params[i].value().shape(), gen, dtype).to(device));
    }
    opt->step();
  }
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    out.push_back(params[i].value().cpu());
    for (const auto& [name, t] : opt->state(i)) {
      REQUIRE(t.device() == device);
      out.push_back(t.cpu());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("each optimizer's step on CUDA gives the CPU's values and state", "[cuda][optim]") {
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    const double rtol = dtype == DType::Float64 ? 1e-12 : 1e-5;
    for (const auto& [name, make] : optimizers()) {
      INFO(name << " " << dtype_name(dtype));
      const std::vector<Tensor> want = three_steps(make, dtype, Device::cpu());
      const std::vector<Tensor> got = three_steps(make, dtype, Device::cuda());
      REQUIRE(got.size() == want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("tensor " << i);
        CHECK(allclose(got[i], want[i], rtol, rtol));
      }
    }
  }
}

TEST_CASE("a model moved to CUDA after its optimizer was built trains on, its state moved with it",
          "[cuda][optim]") {
  const Tensor x = Tensor{{1.0, -2.0, 0.5}, {0.25, 1.0, 3.0}}.to(DType::Float32);
  auto train_step = [](nn::Linear& m, optim::Optimizer& opt, const Tensor& input) {
    Lambda loss({"x"}, [&](std::span<const NodeRef> in) { return op::sum(op::square(m(in[0]))); });
    opt.zero_grad();
    loss(input).back();
    opt.step();
  };
  Generator gen(5);
  nn::Linear cpu_model(3, 2, {.generator = &gen}), gpu_model(3, 2);
  for (const char* name : {"weight", "bias"}) gpu_model.param(name).set_value(cpu_model.param(name).value().clone());
  optim::Adam cpu_opt(cpu_model.parameters(), {.lr = 0.1, .amsgrad = true});
  optim::Adam gpu_opt(gpu_model.parameters(), {.lr = 0.1, .amsgrad = true});
  for (int step = 0; step < 4; ++step) {
    if (step == 2) gpu_model.to(Device::cuda());  // the optimizer already holds CPU state
    train_step(cpu_model, cpu_opt, x);
    train_step(gpu_model, gpu_opt, step < 2 ? x : x.cuda());
  }
  for (const char* name : {"weight", "bias"}) {
    INFO(name);
    CHECK(gpu_model.param(name).value().device() == Device::cuda());
    CHECK(allclose(gpu_model.param(name).value().cpu(), cpu_model.param(name).value(), 1e-5, 1e-6));
  }
  for (std::size_t i = 0; i < 2; ++i) {
    const auto state = gpu_opt.state(i);
    CHECK(state.size() == 3);
    for (const auto& [name, t] : state) CHECK(t.device() == Device::cuda());
  }
}

TEST_CASE("dropout on CUDA draws the CPU's mask from the same seed", "[cuda][dropout]") {
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    Generator gen(8);
    const Tensor x = Tensor::randn({300, 77}, gen, dtype);
    auto run_on = [&](const Tensor& input) {
      Generator g(42);  // a fresh generator per device: the same key
      Lambda f({"x"}, [&](std::span<const NodeRef> in) { return op::dropout(in[0], 0.3, true, g); });
      ModuleGraph y = f(input);
      y.back(Tensor::ones(input.shape(), dtype, input.device()));
      return std::pair{y.value().cpu(), y.grad(f.input("x")).cpu()};
    };
    const auto [want, want_grad] = run_on(x);
    const auto [got, got_grad] = run_on(x.cuda());
    CHECK(allclose(got, want, 0.0, 0.0));
    CHECK(allclose(got_grad, want_grad, 0.0, 0.0));
    double zeros = 0;
    for (double v : want_grad.to_doubles()) zeros += v == 0.0 ? 1 : 0;
    CHECK(std::abs(zeros / static_cast<double>(want_grad.numel()) - 0.3) < 0.02);
  }
}

// ---- indexing and selection at the edges (kernels/select.cpp, cuda/select.cu) -------------

TEST_CASE("max and argmax pick the first maximum or the first NaN on CUDA as on the CPU", "[cuda][select]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // Short rows (a lane per thread): ties, a NaN after a maximum, a NaN first, -inf only, -0/+0.
  const Tensor rows = Tensor::from_vector<double>(
      {1, 3, 3, 2, 5, nan, 7, nan, nan, 1, 2, 3, -inf, -inf, -inf, -inf, -0.0, 0.0, -1, 0.0}, {5, 4});
  // Long rows (a lane per warp): the same traps 100 elements apart.
  std::vector<double> long_values(3 * 100, 0.0);
  long_values[40] = long_values[73] = 9;             // a tie, first at 40
  long_values[100 + 70] = nan;                      // a NaN late,
  long_values[100 + 90] = nan;                      // and another after it
  long_values[100 + 5] = inf;
  for (int j = 0; j < 100; ++j) long_values[200 + j] = -inf;  // only -inf: position 0
  const Tensor long_rows = Tensor::from_vector(long_values, {3, 100});
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    for (const Tensor& base : {rows, long_rows, long_rows.transpose(0, 1).contiguous()}) {
      for (std::int64_t axis : {0, 1}) {
        INFO(dtype_name(dtype) << " " << shape_str(base.shape()) << " axis " << axis);
        const Tensor x = base.to(dtype);
        const Tensor want = op::argmax(x, axis).value();
        const Tensor got = op::argmax(x.cuda(), axis).value();
        CHECK(got.device() == Device::cuda());
        CHECK(allclose(got.cpu(), want, 0.0, 0.0));
        const Tensor want_max = op::max(x, axis).value().to(DType::Float64);
        const Tensor got_max = op::max(x.cuda(), axis).value().cpu().to(DType::Float64);
        for (std::int64_t i = 0; i < want_max.numel(); ++i) {
          const double w = want_max.data<double>()[i];
          const double g = got_max.data<double>()[i];
          CHECK(((std::isnan(w) && std::isnan(g)) || (w == g && std::signbit(w) == std::signbit(g))));
        }
      }
    }
  }
}

TEST_CASE("an index out of range on CUDA is refused as on the CPU, naming it", "[cuda][select]") {
  const Tensor x = Tensor::arange(12, DType::Float32).reshape({3, 4});
  const Tensor index = Tensor::from_vector<std::int64_t>({0, 2, 7, -1}, {4});
  for (const Device device : {Device::cpu(), Device::cuda()}) {
    INFO((device.is_cpu() ? "cpu" : "cuda"));
    CHECK_THROWS_WITH(op::index_select(x.to(device), 1, index.to(device)),
                      Catch::Contains("index_select: index 7 is out of range for axis 1 of size 4"));
    CHECK_THROWS_AS(op::embedding(index.to(device), x.to(device)), IndexError);
    CHECK_THROWS_AS(op::gather(x.to(device), 0, index.reshape({1, 4}).to(device)), IndexError);
  }
}

TEST_CASE("clamp, maximum, where and var of int64 and odd values on CUDA match the CPU", "[cuda][select]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor ints = Tensor::from_vector<std::int64_t>({-5, 0, 3, 9, std::numeric_limits<std::int64_t>::max()}, {5});
  const Tensor floats = Tensor::from_vector<double>({-2, nan, 0.5, 3, -0.0}, {5});
  // Equal values (NaN matching NaN), same dtype, the result on the device.
  const auto same = [](const Tensor& got, const Tensor& want) {
    REQUIRE(got.device() == Device::cuda());
    CHECK(got.dtype() == want.dtype());
    const Tensor a = got.cpu().to(DType::Float64).contiguous();
    const Tensor b = want.to(DType::Float64).contiguous();
    REQUIRE(a.shape() == b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i) {
      const double x = a.data<double>()[i];
      const double y = b.data<double>()[i];
      CHECK(((std::isnan(x) && std::isnan(y)) || x == y));
    }
  };
  same(op::clamp(ints.cuda(), -1.0, 1e300).value(), op::clamp(ints, -1.0, 1e300).value());
  same(op::clamp(floats.cuda(), -1.0, 1.0).value(), op::clamp(floats, -1.0, 1.0).value());
  same(op::maximum(ints.cuda(), Tensor::scalar(2.0, DType::Int64)).value(),
       op::maximum(ints, Tensor::scalar(2.0, DType::Int64)).value());
  same(op::minimum(floats.cuda(), 0.25).value(), op::minimum(floats, 0.25).value());
  same(op::where(ints.cuda(), floats.cuda(), 7.0).value(), op::where(ints, floats, 7.0).value());
  same(op::argmax(ints.cuda(), 0).value(), op::argmax(ints, 0).value());
  // Unbiased var of one element per output is NaN; of an empty axis too.
  same(op::var(floats.reshape({5, 1}).cuda(), {1}).value(), op::var(floats.reshape({5, 1}), {1}).value());
  same(op::std(Tensor::zeros({2, 0}).cuda(), {1}).value(), op::std(Tensor::zeros({2, 0}), {1}).value());
}

TEST_CASE("clip_grad_norm on CUDA gradients gives the CPU's norm and clips them in place", "[cuda][optim]") {
  // The norms are sums of |g|^p in double on the device (another order than the CPU's), so
  // the totals agree to rounding; an empty gradient and a NaN one behave as on the CPU.
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Shape> shapes = {{300, 70}, {7}, {0, 3}};
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    for (const double p : {2.0, 1.0, 3.0, inf}) {
      INFO(dtype_name(dtype) << " p = " << p);
      const auto params_on = [&](Device device) {
        Generator gen(5);
        std::vector<Parameter> params;
        for (const Shape& shape : shapes) {
          params.emplace_back("p" + std::to_string(params.size()), Tensor::zeros(shape, dtype, device));
          params.back().accumulate_grad(Tensor::randn(shape, gen, dtype).to(device));
        }
        return params;
      };
      const std::vector<Parameter> cpu = params_on(Device::cpu());
      const std::vector<Parameter> gpu = params_on(Device::cuda());
      const double want = optim::clip_grad_norm(cpu, 1.0, p);
      const double got = optim::clip_grad_norm(gpu, 1.0, p);
      CHECK(got == Approx(want).epsilon(1e-13));
      for (std::size_t i = 0; i < cpu.size(); ++i) {
        REQUIRE(gpu[i].grad().device() == Device::cuda());
        // float32: coef may round to the neighbouring float
        CHECK(allclose(gpu[i].grad().cpu(), cpu[i].grad(), dtype == DType::Float64 ? 1e-12 : 1e-6, 0.0));
      }
    }
    Parameter nan_grad("n", Tensor::zeros({3}, dtype, Device::cuda()));
    nan_grad.accumulate_grad(Tensor::from_vector<double>({1.0, std::nan(""), 2.0}, {3}).to(dtype).cuda());
    CHECK(std::isnan(optim::clip_grad_norm({nan_grad}, 1.0)));
    CHECK(std::isnan(optim::clip_grad_norm({nan_grad}, 1.0, inf)));
  }
}

// ---- convolution, pooling and normalization beyond the table (cuda/conv.cu, pooling.cu,
// normalization.cu) ---------------------------------------------------------------------------

TEST_CASE("max_pool2d on CUDA picks the CPU's index for ties, NaN, -inf and all-padding windows", "[cuda][pool]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // One 4x4 plane: a tie (2, 2) in the first window, NaNs (the last one wins), -inf only, -0/+0.
  const Tensor x = Tensor::from_vector<double>(
      {2, 1, nan, 3, 2, 0, 4, nan, -inf, -inf, -0.0, 0.0, -inf, -inf, 0.0, -0.0}, {1, 1, 4, 4});
  const std::vector<std::pair<std::array<std::int64_t, 2>, op::MaxPool2dOptions>> windows = {
      {{2, 2}, {}},
      {{3, 3}, {.stride = {1, 1}, .padding = {1, 1}}},
      {{2, 2}, {.stride = {1, 1}, .padding = {1, 1}, .dilation = {5, 5}}},  // taps -1 and 4: wholly in padding
      {{2, 2}, {.stride = {3, 3}, .padding = {1, 1}, .dilation = {3, 3}}},
      {{3, 1}, {.stride = {1, 2}, .padding = {1, 0}, .dilation = {1, 1}}},
  };
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    for (const auto& [kernel, options] : windows) {
      INFO(dtype_name(dtype) << " kernel " << kernel[0] << "x" << kernel[1]);
      Tensor want_index, got_index;
      const Tensor want = kernels::max_pool2d(x.to(dtype), kernel, options, &want_index);
      const Tensor got = kernels::max_pool2d(x.to(dtype).cuda(), kernel, options, &got_index);
      REQUIRE(got.device() == Device::cuda());
      CHECK(same_values(got, want, 0.0));
      CHECK(allclose(got_index.cpu(), want_index, 0.0, 0.0));
      const Tensor g = Tensor::ones(want.shape(), dtype);
      CHECK(allclose(kernels::max_pool2d_backward(g.cuda(), x.shape(), got_index).cpu(),
                     kernels::max_pool2d_backward(g, x.shape(), want_index), 0.0, 0.0));
    }
  }
}

TEST_CASE("batch_norm's running statistics on CUDA follow the CPU's over several steps", "[cuda][norm]") {
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    Generator gen(13);
    const Tensor x = Tensor::randn({6, 4, 3, 5}, gen, dtype);
    Tensor mean_cpu = Tensor::zeros({4}, dtype), var_cpu = Tensor::ones({4}, dtype);
    Tensor mean_gpu = mean_cpu.cuda(), var_gpu = var_cpu.cuda();
    for (int step = 0; step < 3; ++step) {
      const Tensor input = kernels::scale(x, 1.0 + step);
      op::batch_norm(input, mean_cpu, var_cpu, NodeRef(), NodeRef(), true, 0.25);
      op::batch_norm(input.cuda(), mean_gpu, var_gpu, NodeRef(), NodeRef(), true, 0.25);
    }
    REQUIRE(mean_gpu.device() == Device::cuda());
    const double rtol = dtype == DType::Float64 ? 1e-12 : 1e-6;
    CHECK(allclose(mean_gpu.cpu(), mean_cpu, rtol, rtol));
    CHECK(allclose(var_gpu.cpu(), var_cpu, rtol, rtol));
    // Statistics on another device than the input are refused, naming the operator and the
    // devices (a TypeError: not reported as a missing CUDA implementation).
    CHECK_THROWS_AS(op::batch_norm(x.cuda(), mean_cpu, var_cpu, NodeRef(), NodeRef(), true), TypeError);
    CHECK_THROWS_WITH(op::batch_norm(x.cuda(), mean_cpu, var_cpu, NodeRef(), NodeRef(), true),
                      Catch::Contains("batch_norm") && Catch::Contains("operands on different devices") &&
                          !Catch::Contains("no CUDA implementation"));
  }
}

TEST_CASE("a small CNN's training step on CUDA gives the CPU's loss, gradients and running statistics",
          "[cuda][layers]") {
  // conv (padded) -> batch norm -> relu -> max pool -> grouped strided conv -> avg pool ->
  // flatten -> linear -> cross_entropy, TF32 off.
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    auto build = [&] {
      Generator gen(7);
      auto net = std::make_shared<nn::Sequential>();
      net->add<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1, .dtype = dtype, .generator = &gen});
      net->add<nn::BatchNorm2d>(8, nn::BatchNormOptions{.dtype = dtype});
      net->add<nn::ReLU>();
      net->add<nn::MaxPool2d>(2);
      net->add<nn::Conv2d>(8, 6, 3, nn::Conv2dOptions{.stride = 2, .groups = 2, .dtype = dtype, .generator = &gen});
      net->add<nn::AvgPool2d>(2, nn::AvgPool2dOptions{.stride = 1});
      net->add<nn::Flatten>();
      net->add<nn::Linear>(6, 4, nn::LinearOptions{.dtype = dtype, .generator = &gen});
      return net;
    };
    Generator gen(11);
    const Tensor x = Tensor::randn({5, 3, 12, 12}, gen, dtype);  // 12 -> 12 -> 6 -> 2 -> 1
    const Tensor target = Tensor::from_vector<std::int64_t>({0, 3, 1, 1, 2}, {5});
    auto step = [&](nn::Sequential& net, Device device) {
      net.to(device);
      Lambda loss({"x"}, [&](std::span<const NodeRef> in) {
        return op::cross_entropy(net(in[0]), target.to(device));
      });
      ModuleGraph g = loss(x.to(device));
      g.back();
      std::vector<Tensor> out{g.value().cpu()};
      for (const auto& [name, p] : net.named_parameters()) out.push_back(p.grad().cpu());
      for (const auto& [name, b] : net.named_buffers()) out.push_back(b.cpu());
      return out;
    };
    const auto cpu_net = build();
    const auto gpu_net = build();
    const std::vector<Tensor> want = step(*cpu_net, Device::cpu());
    const std::vector<Tensor> got = step(*gpu_net, Device::cuda());
    REQUIRE(got.size() == want.size());
    const double rtol = dtype == DType::Float64 ? 1e-11 : 1e-4;
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO("tensor " << i << " (0: the loss, then gradients, then buffers)");
      CHECK(allclose(got[i], want[i], rtol, rtol));
    }
  }
}

TEST_CASE("conv2d on CUDA with TF32 allowed runs in its own cached algorithms, close to the CPU's", "[cuda][conv]") {
  // TF32 keeps ~10 bits of each product's mantissa: the sums agree to ~1e-2 of their size. The
  // TF32 mode is part of the algorithm cache's key, so switching it back off gives the FMA
  // algorithms (and 1e-4) again.
  Generator gen(19);
  const Tensor x = Tensor::randn({4, 8, 10, 10}, gen, DType::Float32);
  const Tensor w = Tensor::randn({16, 8, 3, 3}, gen, DType::Float32);
  const Tensor want = kernels::conv2d(x, w, Tensor(), {.padding = {1, 1}});
  cuda::set_allow_tf32(true);
  const Tensor loose = kernels::conv2d(x.cuda(), w.cuda(), Tensor(), {.padding = {1, 1}}).cpu();
  cuda::set_allow_tf32(false);
  const Tensor tight = kernels::conv2d(x.cuda(), w.cuda(), Tensor(), {.padding = {1, 1}}).cpu();
  CHECK(allclose(loose, want, 2e-2, 2e-2));
  CHECK(allclose(tight, want, 1e-4, 1e-4));
}

// ---- recurrent layers beyond the table (cuda/recurrent.cu under nn::RNN, LSTM, GRU) -----------

TEST_CASE("an LSTM's training step on CUDA gives the CPU's loss, gradients and updated weights", "[cuda][layers]") {
  // nn::LSTM (2 layers) -> Linear -> mse_loss, one SGD step with momentum, TF32 off; then a
  // second forward from the updated weights.
  cuda::set_allow_tf32(false);
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    struct Net {
      std::shared_ptr<nn::LSTM> lstm;
      std::shared_ptr<nn::Linear> head;
    };
    auto build = [&] {
      Generator gen(23);
      Net net;
      net.lstm = std::make_shared<nn::LSTM>(5, 12, nn::RecurrentOptions{.num_layers = 2, .dtype = dtype,
                                                                        .generator = &gen});
      net.head = std::make_shared<nn::Linear>(12, 3, nn::LinearOptions{.dtype = dtype, .generator = &gen});
      return net;
    };
    Generator gen(29);
    const Tensor x = Tensor::randn({9, 4, 5}, gen, dtype);  // (T, B, I)
    const Tensor y = Tensor::randn({9, 4, 3}, gen, dtype);
    auto run = [&](Net& net, Device device) {
      net.lstm->to(device);
      net.head->to(device);
      std::vector<Parameter> params = net.lstm->parameters();
      for (const Parameter& p : net.head->parameters()) params.push_back(p);
      optim::SGD opt(params, {.lr = 0.1, .momentum = 0.9});
      Lambda loss({"x"}, [&](std::span<const NodeRef> in) {
        return op::mse_loss((*net.head)((*net.lstm)(in[0])), y.to(device));
      });
      opt.zero_grad();
      ModuleGraph g = loss(x.to(device));
      g.back();
      std::vector<Tensor> out{g.value().cpu()};
      for (const Parameter& p : params) {
        REQUIRE(p.grad().device() == device);
        out.push_back(p.grad().cpu());
      }
      opt.step();
      for (const Parameter& p : params) out.push_back(p.value().cpu());
      out.push_back(loss(x.to(device)).value().cpu());
      return out;
    };
    Net cpu_net = build();
    Net gpu_net = build();
    const std::vector<Tensor> want = run(cpu_net, Device::cpu());
    const std::vector<Tensor> got = run(gpu_net, Device::cuda());
    REQUIRE(got.size() == want.size());
    const double rtol = dtype == DType::Float64 ? 1e-11 : 1e-4;
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO("tensor " << i << " (0: the loss, then gradients, then updated weights, then the next loss)");
      CHECK(allclose(got[i], want[i], rtol, rtol));
    }
  }
}

TEST_CASE("RNN, GRU and LSTM layers on CUDA: stateful calls, batch_first, explicit state, as on the CPU",
          "[cuda][layers]") {
  // Two calls of a stateful layer (the second starts from the state the first carried, on the
  // device), then a call with an explicit initial state that needs its gradient.
  using Kind = nn::RecurrentBase::Kind;
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    for (const Kind kind : {Kind::RnnRelu, Kind::RnnTanh, Kind::Gru, Kind::Lstm}) {
      INFO(dtype_name(dtype) << " kind " << static_cast<int>(kind));
      auto build = [&]() -> std::shared_ptr<nn::RecurrentBase> {
        Generator gen(31);
        nn::RecurrentOptions o{.num_layers = 2, .batch_first = true, .stateful = true, .dtype = dtype,
                               .generator = &gen};
        if (kind == Kind::Lstm) return std::make_shared<nn::LSTM>(3, 7, o);
        if (kind == Kind::Gru) return std::make_shared<nn::GRU>(3, 7, o);
        o.nonlinearity = kind == Kind::RnnRelu ? op::RnnActivation::Relu : op::RnnActivation::Tanh;
        return std::make_shared<nn::RNN>(3, 7, o);
      };
      Generator gen(37);
      const Tensor x1 = Tensor::randn({2, 5, 3}, gen, dtype);  // (B, T, I)
      const Tensor x2 = Tensor::randn({2, 4, 3}, gen, dtype);
      const Tensor h0 = Tensor::randn({2, 2, 7}, gen, dtype);  // (layers, B, H)
      const Tensor c0 = Tensor::randn({2, 2, 7}, gen, dtype);
      auto run = [&](nn::RecurrentBase& layer, Device device) {
        layer.to(device);
        std::vector<Tensor> out;
        for (const Tensor* x : {&x1, &x2}) {
          ModuleGraph g = layer.invoke(std::vector<NodeRef>{NodeRef(x->to(device))});
          out.push_back(g.value().cpu());
          REQUIRE(layer.carried_state().h.device() == device);
          out.push_back(layer.carried_state().h.cpu());
          if (kind == Kind::Lstm) out.push_back(layer.carried_state().c.cpu());
        }
        const bool lstm = kind == Kind::Lstm;
        Lambda f({"x", "h0", "c0"}, [&](std::span<const NodeRef> in) {
          NodeRef y;
          if (lstm) {
            y = static_cast<nn::LSTM&>(layer)(in[0], in[1], in[2]);
          } else if (kind == Kind::Gru) {
            y = static_cast<nn::GRU&>(layer)(in[0], in[1]);
          } else {
            y = static_cast<nn::RNN&>(layer)(in[0], in[1]);
          }
          // c0 joins the objective for RNN and GRU too, so that every input has a gradient.
          return op::add(op::sum(op::square(y)), op::sum(op::mult(in[2], 0.5)));
        });
        layer.zero_grad();
        ModuleGraph g = f(x1.to(device), h0.to(device), c0.to(device));
        g.back();
        out.push_back(g.value().cpu());
        for (const char* name : {"x", "h0", "c0"}) out.push_back(g.grad(f.input(name)).cpu());
        for (const auto& [name, p] : layer.named_parameters()) out.push_back(p.grad().cpu());
        return out;
      };
      const auto cpu_layer = build();
      const auto gpu_layer = build();
      const std::vector<Tensor> want = run(*cpu_layer, Device::cpu());
      const std::vector<Tensor> got = run(*gpu_layer, Device::cuda());
      REQUIRE(got.size() == want.size());
      const double rtol = dtype == DType::Float64 ? 1e-11 : 1e-4;
      for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("tensor " << i);
        CHECK(allclose(got[i], want[i], rtol, rtol));
      }
    }
  }
}

TEST_CASE("a stateful LSTM moved to CUDA between calls carries its state along", "[cuda][layers]") {
  // Module::to moves the parameters; the carried state follows at the next call.
  Generator gen(43);
  const Tensor x1 = Tensor::randn({3, 2, 4}, gen, DType::Float32);
  const Tensor x2 = Tensor::randn({5, 2, 4}, gen, DType::Float32);
  auto build = [] {
    Generator g(47);
    return std::make_shared<nn::LSTM>(4, 6, nn::RecurrentOptions{.num_layers = 2, .stateful = true, .generator = &g});
  };
  const auto cpu_layer = build();
  const auto gpu_layer = build();
  (*cpu_layer)(x1);
  (*gpu_layer)(x1);
  gpu_layer->to(Device::cuda());
  const Tensor want = (*cpu_layer)(x2).value();
  const Tensor got = (*gpu_layer)(x2.cuda()).value();
  REQUIRE(got.device() == Device::cuda());
  CHECK(gpu_layer->carried_state().c.device() == Device::cuda());
  CHECK(allclose(got.cpu(), want, 1e-5, 1e-5));
}

TEST_CASE("the recurrent kernels refuse operands on two devices, naming the operator", "[cuda][layers]") {
  Generator gen(41);
  const Tensor x = Tensor::randn({3, 2, 4}, gen, DType::Float32);
  const Tensor w_ih = Tensor::randn({15, 4}, gen, DType::Float32);
  const Tensor w_hh = Tensor::randn({15, 5}, gen, DType::Float32);
  CHECK_THROWS_WITH(op::gru(x.cuda(), NodeRef(), w_ih, w_hh.cuda()), Catch::Contains("gru"));
  CHECK_THROWS_WITH(op::gru(x.cuda(), NodeRef(), w_ih, w_hh.cuda()), Catch::Contains("devices"));
}
