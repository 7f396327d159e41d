// Model summaries, as Keras's model.summary() and torchinfo print them: every registered
// submodule (dotted name and type), its output shape for an example input, its parameter
// count, then the totals.
//
//   nn::Sequential cnn;  cnn.add<nn::Conv2d>(1, 16, 3);  ...
//   std::cout << nn::summary(cnn, Tensor::zeros({64, 1, 28, 28}, DType::Float32));
//
//   Sequential: input (64,1,28,28) float32 -> output (64,10) float32
//   =======================================
//   Layer (type)    Output shape    Param #
//   ---------------------------------------
//   0 (Conv2d)      (64,16,26,26)       160
//   1 (ReLU)        (64,16,26,26)         0
//   ...
//   7 (Linear)      (64,10)           8,010
//   =======================================
//   Total params: 12,810
//   Trainable params: 12,810
//   Non-trainable params: 0
//
// The model runs once on the example input, in evaluation mode (each module's training flag is
// restored afterwards), recording its graph: the tape's module invocations give each
// submodule's output, the last node created while it ran. Rows follow the registration order,
// depth first (a Sequential's layers in order); a module called several times shows each
// distinct output shape and "[xN]"; one never called shows "-". "Param #" counts the
// parameters a module registers itself (its submodules have their own rows), so the column
// adds up to the total; the model itself has a row only when it registers parameters of its
// own or has no submodules. Shared parameters count once in the totals. Needs gradient
// recording: inside a NoGradGuard scope it is a UsageError.
#pragma once

#include <zkynet/framework/module.h>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace zkynet::nn {

struct SummaryRow {
  std::string name;                // dotted path from the model: "0", "features.conv1"
  std::string type;                // the module's functional_name: "Conv2d"
  std::vector<Shape> output_shapes;  // one per call in the example run; empty when not called
  std::int64_t params = 0;         // elements of the parameters the module registers itself
  int depth = 0;                   // 1 for the model's children, 0 for the model itself
};

struct ModelSummary {
  std::string model;                // the model's name
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  Shape output_shape;
  DType output_dtype = DType::Float32;
  std::vector<SummaryRow> rows;
  std::int64_t total_params = 0;      // elements of all parameters, shared ones once
  std::int64_t trainable_params = 0;  // those with requires_grad

  std::string str() const;  // the table
};

// Runs `model` on the example input(s) and describes it.
ModelSummary summarize(ModuleBase& model, const Tensor& example_input);
ModelSummary summarize(ModuleBase& model, const std::vector<Tensor>& example_inputs);
// summarize(...).str()
std::string summary(ModuleBase& model, const Tensor& example_input);
std::string summary(ModuleBase& model, const std::vector<Tensor>& example_inputs);
// Writes the table to `os` (std::cout when not given).
void print_summary(ModuleBase& model, const Tensor& example_input);
void print_summary(ModuleBase& model, const Tensor& example_input, std::ostream& os);

std::ostream& operator<<(std::ostream& os, const ModelSummary& summary);

}  // namespace zkynet::nn
