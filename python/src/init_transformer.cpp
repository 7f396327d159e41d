// The Transformer's operators and layers from Python, with torch's names and keywords:
// op.scaled_dot_product_attention, op.gelu; nn.GELU, nn.MultiheadAttention,
// nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.TransformerDecoderLayer, nn.TransformerDecoder,
// nn.SinusoidalPositionalEncoding,
// nn.LearnedPositionalEncoding. Masks arrive as arrays (numpy bool arrays become int64, which
// the C++ side reads as boolean).
#include "convert.h"

#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/transformer.h>
#include <zkynet/ops/attention.h>

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

namespace zkynet::python {
namespace {

DType dtype_named(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  throw TypeError("expected dtype 'float32' or 'float64', got '" + name + "'");
}

Tensor mask_of(py::handle m) { return m.is_none() ? Tensor() : tensor_from_python(m); }

template <class M>
py::class_<M, ModuleBase, std::shared_ptr<M>> layer(py::module_& m, const char* name, const char* doc) {
  return py::class_<M, ModuleBase, std::shared_ptr<M>>(m, name, doc);
}

void init_transformer_ops(py::module_& ops) {
  ops.def("scaled_dot_product_attention",
          [](py::handle query, py::handle key, py::handle value, py::handle attn_mask, double dropout_p,
             bool is_causal, std::optional<double> scale) {
            const NodeRef q = noderef_from_python(query), k = noderef_from_python(key), v = noderef_from_python(value);
            const Tensor mask = mask_of(attn_mask);
            Generator* gen = &nn::default_generator();
            py::gil_scoped_release release;  // converted above; nothing Python below
            return op::scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, scale, gen);
          },
          py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask") = py::none(),
          py::arg("dropout_p") = 0.0, py::arg("is_causal") = false, py::arg("scale") = py::none(),
          "torch.nn.functional.scaled_dot_product_attention: softmax(query key^T * scale + mask) value, query "
          "(..., L, E), key (..., S, E), value (..., S, Ev), leading axes broadcast; scale 1/sqrt(E) unless given. "
          "attn_mask broadcasts to (..., L, S): boolean (True: may attend) or float (added to the scores). "
          "is_causal masks keys after each query. dropout_p drops probabilities (pass 0 in evaluation), the mask "
          "drawn from nn.manual_seed's generator. One fused kernel (FlashAttention's scheme): memory linear in L "
          "and S. A row with every key masked gives NaN, as torch's math path");
  ops.def("gelu",
          [](py::handle input, const std::string& approximate) {
            return op::gelu(noderef_from_python(input), approximate);
          },
          py::arg("input"), py::arg("approximate") = "none",
          "torch.nn.functional.gelu: x Phi(x) (approximate='none') or its tanh approximation ('tanh')");
}

py::tuple mha_result(const nn::MhaOutput& r) {
  return py::make_tuple(r.output, r.weights.defined() ? py::cast(r.weights) : py::none());
}

}  // namespace

void init_transformer(py::module_& nn_module, py::module_& ops) {
  init_transformer_ops(ops);

  layer<nn::GELU>(nn_module, "GELU", "torch.nn.GELU: x Phi(x), or its tanh approximation (approximate='tanh')")
      .def(py::init<std::string>(), py::arg("approximate") = "none")
      .def_property_readonly("approximate", &nn::GELU::approximate);

  layer<nn::MultiheadAttention>(
      nn_module, "MultiheadAttention",
      "torch.nn.MultiheadAttention: parameters in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight, "
      "out_proj.bias, so a torch state_dict loads with nn.load_state_dict. Calling it returns (output, weights): "
      "weights averaged over heads (N, L, S) (per head with average_attn_weights=False) when need_weights, else "
      "None (and the fused attention kernel runs). Masks as torch's: boolean True = NOT allowed; float: added; "
      "attn_mask (L, S) or (N*num_heads, L, S), key_padding_mask (N, S)")
      .def(py::init([](std::int64_t embed_dim, std::int64_t num_heads, double dropout, bool bias, bool batch_first,
                       const std::string& dtype, py::handle device) {
             nn::MultiheadAttentionOptions o;
             o.dropout = dropout;
             o.bias = bias;
             o.batch_first = batch_first;
             o.dtype = dtype_named(dtype);
             return on_device(std::make_shared<nn::MultiheadAttention>(embed_dim, num_heads, o), device);
           }),
           py::arg("embed_dim"), py::arg("num_heads"), py::arg("dropout") = 0.0, py::arg("bias") = true,
           py::arg("batch_first") = false, py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def("__call__",
           [](nn::MultiheadAttention& m, py::handle query, py::handle key, py::handle value,
              py::handle key_padding_mask, bool need_weights, py::handle attn_mask, bool average_attn_weights,
              bool is_causal) {
             nn::MhaCall c;
             c.key_padding_mask = mask_of(key_padding_mask);
             c.need_weights = need_weights;
             c.attn_mask = mask_of(attn_mask);
             c.average_attn_weights = average_attn_weights;
             c.is_causal = is_causal;
             return mha_result(m.forward(noderef_from_python(query), noderef_from_python(key),
                                         noderef_from_python(value), c));
           },
           py::arg("query"), py::arg("key"), py::arg("value"), py::arg("key_padding_mask") = py::none(),
           py::arg("need_weights") = true, py::arg("attn_mask") = py::none(), py::arg("average_attn_weights") = true,
           py::arg("is_causal") = false,
           "(output, weights) as torch.nn.MultiheadAttention.forward (weights None unless need_weights)")
      .def_property_readonly("embed_dim", &nn::MultiheadAttention::embed_dim)
      .def_property_readonly("num_heads", &nn::MultiheadAttention::num_heads)
      .def_property_readonly("batch_first", [](nn::MultiheadAttention& m) { return m.options().batch_first; });

  layer<nn::TransformerEncoderLayer>(
      nn_module, "TransformerEncoderLayer",
      "torch.nn.TransformerEncoderLayer: self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2 "
      "(torch's parameter names); post-norm, or pre-norm with norm_first=True; activation 'relu' or 'gelu'")
      .def(py::init([](std::int64_t d_model, std::int64_t nhead, std::int64_t dim_feedforward, double dropout,
                       const std::string& activation, double layer_norm_eps, bool batch_first, bool norm_first,
                       bool bias, const std::string& dtype, py::handle device) {
             nn::TransformerEncoderLayerOptions o;
             o.dim_feedforward = dim_feedforward;
             o.dropout = dropout;
             o.activation = activation;
             o.layer_norm_eps = layer_norm_eps;
             o.batch_first = batch_first;
             o.norm_first = norm_first;
             o.bias = bias;
             o.dtype = dtype_named(dtype);
             return on_device(std::make_shared<nn::TransformerEncoderLayer>(d_model, nhead, o), device);
           }),
           py::arg("d_model"), py::arg("nhead"), py::arg("dim_feedforward") = 2048, py::arg("dropout") = 0.1,
           py::arg("activation") = "relu", py::arg("layer_norm_eps") = 1e-5, py::arg("batch_first") = false,
           py::arg("norm_first") = false, py::arg("bias") = true, py::arg("dtype") = "float32",
           py::arg("device") = py::none())
      .def("__call__",
           [](nn::TransformerEncoderLayer& l, py::handle src, py::handle src_mask, py::handle src_key_padding_mask,
              bool is_causal) {
             return l.forward(noderef_from_python(src), mask_of(src_mask), mask_of(src_key_padding_mask), is_causal);
           },
           py::arg("src"), py::arg("src_mask") = py::none(), py::arg("src_key_padding_mask") = py::none(),
           py::arg("is_causal") = false, "the layer on src (masks as MultiheadAttention's attn_mask, key_padding_mask)");

  layer<nn::TransformerEncoder>(
      nn_module, "TransformerEncoder",
      "torch.nn.TransformerEncoder(encoder_layer, num_layers, norm): num_layers layers configured as encoder_layer "
      "(layers.0, layers.1, ...; each freshly initialized, where torch deep-copies one) and, when norm is given (a "
      "LayerNorm or True), a final LayerNorm named norm")
      .def(py::init([](const nn::TransformerEncoderLayer& encoder_layer, std::int64_t num_layers, py::handle norm) {
             const bool final_norm = !norm.is_none() && !(py::isinstance<py::bool_>(norm) && !norm.cast<bool>());
             return std::make_shared<nn::TransformerEncoder>(encoder_layer.options(), num_layers, final_norm);
           }),
           py::arg("encoder_layer"), py::arg("num_layers"), py::arg("norm") = py::none())
      .def("__call__",
           [](nn::TransformerEncoder& e, py::handle src, py::handle mask, py::handle src_key_padding_mask,
              bool is_causal) {
             return e.forward(noderef_from_python(src), mask_of(mask), mask_of(src_key_padding_mask), is_causal);
           },
           py::arg("src"), py::arg("mask") = py::none(), py::arg("src_key_padding_mask") = py::none(),
           py::arg("is_causal") = false, "every layer on src in turn, then the final norm")
      .def_property_readonly("num_layers", &nn::TransformerEncoder::num_layers);

  auto decoder_masks = [](py::handle tgt_mask, py::handle memory_mask, py::handle tgt_key_padding_mask,
                          py::handle memory_key_padding_mask, bool tgt_is_causal, bool memory_is_causal) {
    nn::DecoderMasks m;
    m.tgt_mask = mask_of(tgt_mask);
    m.memory_mask = mask_of(memory_mask);
    m.tgt_key_padding_mask = mask_of(tgt_key_padding_mask);
    m.memory_key_padding_mask = mask_of(memory_key_padding_mask);
    m.tgt_is_causal = tgt_is_causal;
    m.memory_is_causal = memory_is_causal;
    return m;
  };
  layer<nn::TransformerDecoderLayer>(
      nn_module, "TransformerDecoderLayer",
      "torch.nn.TransformerDecoderLayer: self_attn, multihead_attn, linear1, dropout, linear2, norm1, norm2, norm3, "
      "dropout1, dropout2, dropout3 (torch's parameter names); post-norm, or pre-norm with norm_first=True")
      .def(py::init([](std::int64_t d_model, std::int64_t nhead, std::int64_t dim_feedforward, double dropout,
                       const std::string& activation, double layer_norm_eps, bool batch_first, bool norm_first,
                       bool bias, const std::string& dtype, py::handle device) {
             nn::TransformerEncoderLayerOptions o;
             o.dim_feedforward = dim_feedforward;
             o.dropout = dropout;
             o.activation = activation;
             o.layer_norm_eps = layer_norm_eps;
             o.batch_first = batch_first;
             o.norm_first = norm_first;
             o.bias = bias;
             o.dtype = dtype_named(dtype);
             return on_device(std::make_shared<nn::TransformerDecoderLayer>(d_model, nhead, o), device);
           }),
           py::arg("d_model"), py::arg("nhead"), py::arg("dim_feedforward") = 2048, py::arg("dropout") = 0.1,
           py::arg("activation") = "relu", py::arg("layer_norm_eps") = 1e-5, py::arg("batch_first") = false,
           py::arg("norm_first") = false, py::arg("bias") = true, py::arg("dtype") = "float32",
           py::arg("device") = py::none())
      .def("__call__",
           [decoder_masks](nn::TransformerDecoderLayer& l, py::handle tgt, py::handle memory, py::handle tgt_mask,
                           py::handle memory_mask, py::handle tgt_key_padding_mask, py::handle memory_key_padding_mask,
                           bool tgt_is_causal, bool memory_is_causal) {
             return l.forward(noderef_from_python(tgt), noderef_from_python(memory),
                              decoder_masks(tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                                            tgt_is_causal, memory_is_causal));
           },
           py::arg("tgt"), py::arg("memory"), py::arg("tgt_mask") = py::none(), py::arg("memory_mask") = py::none(),
           py::arg("tgt_key_padding_mask") = py::none(), py::arg("memory_key_padding_mask") = py::none(),
           py::arg("tgt_is_causal") = false, py::arg("memory_is_causal") = false,
           "the layer on tgt attending to memory (masks as MultiheadAttention's)");

  layer<nn::TransformerDecoder>(
      nn_module, "TransformerDecoder",
      "torch.nn.TransformerDecoder(decoder_layer, num_layers, norm): num_layers layers configured as decoder_layer "
      "(layers.0, ...; each freshly initialized) and, when norm is given (a LayerNorm or True), a final LayerNorm")
      .def(py::init([](const nn::TransformerDecoderLayer& decoder_layer, std::int64_t num_layers, py::handle norm) {
             const bool final_norm = !norm.is_none() && !(py::isinstance<py::bool_>(norm) && !norm.cast<bool>());
             return std::make_shared<nn::TransformerDecoder>(decoder_layer.options(), num_layers, final_norm);
           }),
           py::arg("decoder_layer"), py::arg("num_layers"), py::arg("norm") = py::none())
      .def("__call__",
           [decoder_masks](nn::TransformerDecoder& d, py::handle tgt, py::handle memory, py::handle tgt_mask,
                           py::handle memory_mask, py::handle tgt_key_padding_mask, py::handle memory_key_padding_mask,
                           bool tgt_is_causal, bool memory_is_causal) {
             return d.forward(noderef_from_python(tgt), noderef_from_python(memory),
                              decoder_masks(tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                                            tgt_is_causal, memory_is_causal));
           },
           py::arg("tgt"), py::arg("memory"), py::arg("tgt_mask") = py::none(), py::arg("memory_mask") = py::none(),
           py::arg("tgt_key_padding_mask") = py::none(), py::arg("memory_key_padding_mask") = py::none(),
           py::arg("tgt_is_causal") = false, py::arg("memory_is_causal") = false,
           "every layer on tgt (attending to memory) in turn, then the final norm")
      .def_property_readonly("num_layers", &nn::TransformerDecoder::num_layers);

  layer<nn::SinusoidalPositionalEncoding>(
      nn_module, "SinusoidalPositionalEncoding",
      "x + pe[:T], pe the sinusoidal table of 'Attention Is All You Need' (a buffer named pe, (max_len, d_model)); "
      "x (N, T, d_model) when batch_first, else (T, N, d_model)")
      .def(py::init([](std::int64_t d_model, std::int64_t max_len, bool batch_first, const std::string& dtype) {
             return std::make_shared<nn::SinusoidalPositionalEncoding>(d_model, max_len, batch_first, dtype_named(dtype));
           }),
           py::arg("d_model"), py::arg("max_len") = 5000, py::arg("batch_first") = true, py::arg("dtype") = "float32");

  layer<nn::LearnedPositionalEncoding>(
      nn_module, "LearnedPositionalEncoding",
      "x + weight[:T], weight (max_len, d_model) a learned parameter drawn from N(0, 1); x laid out as for "
      "SinusoidalPositionalEncoding")
      .def(py::init([](std::int64_t max_len, std::int64_t d_model, bool batch_first, const std::string& dtype) {
             return std::make_shared<nn::LearnedPositionalEncoding>(max_len, d_model, batch_first, dtype_named(dtype));
           }),
           py::arg("max_len"), py::arg("d_model"), py::arg("batch_first") = true, py::arg("dtype") = "float32");
}

}  // namespace zkynet::python
