// A small CNN on the handwritten digits (8x8x1 images): two 3x3 convolutions with max pooling,
// then a linear head, trained with Adam on a seeded 80/20 split. Prints the held-out accuracy
// (exits 1 below 97 %) and writes the model summary and one training step's graph.
//
//   digits_cnn [output-dir] [--device cpu|cuda|cuda:N]     (default: zkynet-graphs, cpu)
//
// On a GPU (--device cuda) the model and each batch move to the device (.to(device)); the data
// stay on the host and only the accuracy's logits come back. The same seed gives the CPU's
// accuracy to within a few images (float32 sums in another order).
#include "args.h"
#include "data.h"

#include <zkynet/data/dataloader.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/summary.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/adam.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

using namespace zkynet;

// The training objective: cross entropy of the model's logits; labels get no gradient.
class ClassifierLoss : public Module<ClassifierLoss> {
 public:
  explicit ClassifierLoss(nn::Sequential& model)
      : Module({Variable("x").requires_grad(false), Variable("y").requires_grad(false)}), model_(model) {
    register_module("model", model);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(model_(x), y); }

 private:
  nn::Sequential& model_;
};

int main(int argc, char** argv) {
  examples::Args args;
  if (const int status = examples::parse_args("digits_cnn", argc, argv, args)) return status;
  const std::filesystem::path& out_dir = args.out_dir;
  const Device device = args.device;
  std::filesystem::create_directories(out_dir);
  const auto start = std::chrono::steady_clock::now();

  examples::Digits d = examples::load_digits(/*seed=*/0);
  d.x_train = d.x_train.reshape({-1, 1, 8, 8});  // NCHW
  d.x_test = d.x_test.reshape({-1, 1, 8, 8});

  nn::manual_seed(0);
  nn::Sequential cnn;
  cnn.add<nn::Conv2d>(1, 16, 3, nn::Conv2dOptions{.padding = 1});  // (N, 16, 8, 8)
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);                                       // (N, 16, 4, 4)
  cnn.add<nn::Conv2d>(16, 32, 3, nn::Conv2dOptions{.padding = 1}); // (N, 32, 4, 4)
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);                                       // (N, 32, 2, 2)
  cnn.add<nn::Flatten>();                                          // (N, 128)
  cnn.add<nn::Linear>(128, 10);
  cnn.to(device);
  ClassifierLoss loss(cnn);
  optim::Adam opt(cnn.parameters(), {.lr = 3e-3});

  const std::string table = nn::summary(cnn, d.x_test.slice(0, 0, 8).to(device));
  std::cout << table;

  data::TensorDataset train({d.x_train, d.y_train});
  data::DataLoader loader(train, {.batch_size = 32, .shuffle = true, .seed = 0});
  const int epochs = 15;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double total = 0;
    for (const data::Batch& b : loader) {
      ModuleGraph g = loss(b[0].to(device), b[1].to(device));
      opt.zero_grad();
      g.back();
      opt.step();
      total += g.value().item() * static_cast<double>(b[0].size(0));
    }
    std::printf("epoch %2d  loss %.4f\n", epoch, total / static_cast<double>(train.size()));
  }

  cnn.eval();
  double acc = 0;
  {
    NoGradGuard no_grad;
    acc = examples::accuracy(cnn(d.x_test.to(device)).value().cpu(), d.y_test);
  }
  std::printf("test accuracy %.4f (%lld images, %s)\n", acc, static_cast<long long>(d.x_test.size(0)),
              device.str().c_str());

  std::ofstream(out_dir / "digits_cnn_summary.txt") << table;
  std::cout << "wrote " << (out_dir / "digits_cnn_summary.txt").string() << "\n";
  ModuleGraph step = loss(d.x_train.slice(0, 0, 8).to(device), d.y_train.slice(0, 0, 8).to(device));
  step.back();
  for (const auto& f : render_graph(step, (out_dir / "digits_cnn").string(), {.title = "digits CNN: one training step"})) {
    std::cout << "wrote " << f << "\n";
  }
  std::printf("%.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (acc < 0.97) {
    std::fprintf(stderr, "digits_cnn: test accuracy %.4f is below 0.97\n", acc);
    return 1;
  }
  return 0;
}
