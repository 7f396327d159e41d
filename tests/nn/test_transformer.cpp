// The Transformer layers from C++: torch's parameter names and shapes, the fused and unfused
// attention paths agreeing, masks, float64 gradient checks through MultiheadAttention and an
// encoder layer, Embedding's padding_idx and the positional encodings. The comparisons with
// torch's own modules (values and gradients, state dicts both ways) are in
// tests/python/test_transformer.py.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/transformer.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace zkynet;

namespace {

Tensor randn(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, g);
}

std::vector<std::string> names_of(const ModuleBase& m) {
  std::vector<std::string> out;
  for (const auto& [name, p] : m.named_parameters()) out.push_back(name);
  return out;
}

}  // namespace

TEST_CASE("MultiheadAttention: torch's parameter names, shapes and results", "[transformer]") {
  nn::MultiheadAttention mha(8, 2, {.batch_first = true, .dtype = DType::Float64});
  REQUIRE(names_of(mha) == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  REQUIRE(mha.param("in_proj_weight").value().shape() == Shape{24, 8});
  const Tensor x = randn({3, 5, 8}, 1), kv = randn({3, 7, 8}, 2);
  const nn::MhaOutput with = mha.forward(x, kv, kv);
  REQUIRE(with.output.value().shape() == Shape{3, 5, 8});
  REQUIRE(with.weights.value().shape() == Shape{3, 5, 7});  // averaged over the heads
  const nn::MhaOutput fused = mha.forward(x, kv, kv, {.need_weights = false});
  REQUIRE_FALSE(fused.weights.defined());
  REQUIRE(allclose(fused.output.value(), with.output.value(), 1e-12, 1e-12));
  // Causal: the fused kernel's mask and the unfused path's additive one agree.
  const nn::MhaOutput c1 = mha.forward(x, x, x, {.need_weights = false, .is_causal = true});
  const nn::MhaOutput c2 = mha.forward(x, x, x, {.need_weights = true, .is_causal = true});
  REQUIRE(allclose(c1.output.value(), c2.output.value(), 1e-12, 1e-12));
  // key_padding_mask (nonzero: ignored) equals attn_mask masking the same keys.
  std::vector<std::int64_t> pad(3 * 7, 0);
  pad[6] = pad[13] = pad[20] = 1;
  std::vector<std::int64_t> am(5 * 7, 0);
  for (int i = 0; i < 5; ++i) am[static_cast<std::size_t>(i * 7 + 6)] = 1;
  const nn::MhaOutput p1 = mha.forward(x, kv, kv, {.key_padding_mask = Tensor::from_vector(pad, {3, 7})});
  const nn::MhaOutput p2 = mha.forward(x, kv, kv, {.need_weights = false, .attn_mask = Tensor::from_vector(am, {5, 7})});
  REQUIRE(allclose(p1.output.value(), p2.output.value(), 1e-12, 1e-12));
  REQUIRE(p1.weights.value().at({0, 0, 6}) == 0.0);
  REQUIRE_THROWS_AS(nn::MultiheadAttention(10, 3), ShapeError);
}

TEST_CASE("MultiheadAttention and TransformerEncoderLayer: float64 gradient checks", "[transformer]") {
  nn::manual_seed(0);
  nn::MultiheadAttention mha(4, 2, {.dtype = DType::Float64});  // (L, N, E)
  GradcheckResult r = gradcheck(
      [&](std::span<const NodeRef> in) {
        return NodeRef(mha.forward(in[0], in[1], in[1], {.need_weights = false, .is_causal = false}).output);
      },
      {randn({3, 2, 4}, 1), randn({5, 2, 4}, 2)});
  INFO(r.message);
  REQUIRE(r.ok);
  for (bool norm_first : {false, true}) {
    nn::TransformerEncoderLayer layer(4, 2, {.dim_feedforward = 6, .dropout = 0.0, .activation = "gelu",
                                             .batch_first = true, .norm_first = norm_first, .dtype = DType::Float64});
    GradcheckResult lr = gradcheck(
        [&](std::span<const NodeRef> in) { return NodeRef(layer.forward(in[0], Tensor(), Tensor(), true)); },
        {randn({2, 3, 4}, 3)});
    INFO(lr.message);
    REQUIRE(lr.ok);
  }
}

TEST_CASE("TransformerEncoder: torch's state_dict names", "[transformer]") {
  nn::TransformerEncoderLayerOptions o{.d_model = 8, .nhead = 2, .dim_feedforward = 16};
  nn::TransformerEncoder enc(o, 2, true);
  const auto names = names_of(enc);
  REQUIRE(names.size() == 2 * 12 + 2);
  REQUIRE(names.front() == "layers.0.self_attn.in_proj_weight");
  REQUIRE(std::find(names.begin(), names.end(), "layers.1.linear2.bias") != names.end());
  REQUIRE(names.back() == "norm.bias");
  enc.eval();
  REQUIRE(enc(randn({4, 2, 8}, 1).to(DType::Float32)).value().shape() == Shape{4, 2, 8});
}

TEST_CASE("Embedding: padding_idx starts at zero and gets no gradient", "[transformer]") {
  nn::Embedding emb(5, 3, {.dtype = DType::Float64, .padding_idx = -2});
  REQUIRE(*emb.padding_idx() == 3);
  REQUIRE(allclose(emb.param("weight").value().slice(0, 3, 4), Tensor::zeros({1, 3}), 0.0, 0.0));
  ModuleGraph g = emb(Tensor::from_vector(std::vector<std::int64_t>{3, 1, 3}, {3}));
  g.back(Tensor::ones({3, 3}));
  const Tensor grad = g.grad(emb.param("weight"));
  REQUIRE(allclose(grad.slice(0, 3, 4), Tensor::zeros({1, 3}), 0.0, 0.0));
  REQUIRE(allclose(grad.slice(0, 1, 2), Tensor::ones({1, 3}), 0.0, 0.0));
}

TEST_CASE("Positional encodings", "[transformer]") {
  nn::SinusoidalPositionalEncoding pe(4, 10, true, DType::Float64);
  const Tensor y = pe(Tensor::zeros({1, 3, 4})).value();
  REQUIRE(y.at({0, 2, 0}) == Approx(std::sin(2.0)));
  REQUIRE(y.at({0, 2, 3}) == Approx(std::cos(2.0 / 100.0)));
  nn::LearnedPositionalEncoding learned(10, 4, false, DType::Float64);
  REQUIRE(learned(Tensor::zeros({3, 2, 4})).value().shape() == Shape{3, 2, 4});
  REQUIRE_THROWS_AS(pe(Tensor::zeros({1, 11, 4})), ShapeError);
}

TEST_CASE("TransformerDecoderLayer and TransformerDecoder: torch's names, masks", "[transformer]") {
  nn::TransformerDecoderLayer layer(8, 2, {.dim_feedforward = 12, .dropout = 0.0, .batch_first = true,
                                           .dtype = DType::Float64});
  const auto names = names_of(layer);
  REQUIRE(names.size() == 18);
  REQUIRE(names[4] == "multihead_attn.in_proj_weight");
  REQUIRE(names.back() == "norm3.bias");
  const Tensor tgt = randn({2, 4, 8}, 1), memory = randn({2, 6, 8}, 2);
  std::vector<std::int64_t> causal(16, 0);
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) causal[static_cast<std::size_t>(i * 4 + j)] = 1;
  }
  const Tensor a = layer.forward(tgt, memory, {.tgt_is_causal = true}).value();
  const Tensor b = layer.forward(tgt, memory, {.tgt_mask = Tensor::from_vector(causal, {4, 4})}).value();
  REQUIRE(allclose(a, b, 1e-12, 1e-12));
  nn::TransformerDecoder dec(layer.options(), 2, true);
  REQUIRE(names_of(dec).size() == 2 * 18 + 2);
  REQUIRE(dec.forward(tgt, memory).value().shape() == Shape{2, 4, 8});
}
