// An MLP trained on the handwritten digits (8x8 images, 10 classes) from C++: a seeded 80/20
// split, minibatches from a DataLoader, SGD with momentum; prints the held-out accuracy and
// writes the model summary and one training step's graph (DOT, and PNG with Graphviz).
//
//   digits_mlp [output-dir] [--device cpu|cuda|cuda:N]     (default: zkynet-graphs, cpu)
//
// On a GPU (--device cuda) the model and each batch move to the device; the data stay on the
// host and only the accuracy's logits come back.
#include "data.h"

#include <zkynet/data/dataloader.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/summary.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

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
  std::filesystem::path out_dir = "zkynet-graphs";
  Device device = Device::cpu();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device = Device::parse(argv[++i]);
    } else {
      out_dir = argv[i];
    }
  }
  if (device.is_cuda() && !cuda::is_available()) {
    std::fprintf(stderr, "digits_mlp: --device %s, but no CUDA device answers on this machine\n", device.str().c_str());
    return 1;
  }
  std::filesystem::create_directories(out_dir);
  const auto start = std::chrono::steady_clock::now();

  const examples::Digits d = examples::load_digits(/*seed=*/0);
  std::cout << "digits: " << d.x_train.size(0) << " training, " << d.x_test.size(0) << " test images\n";

  nn::manual_seed(0);
  nn::Sequential model;
  model.add<nn::Linear>(64, 64);
  model.add<nn::ReLU>();
  model.add<nn::Linear>(64, 10);
  model.to(device);
  ClassifierLoss loss(model);
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});

  const std::string table = nn::summary(model, d.x_test.slice(0, 0, 8).to(device));
  std::cout << table;

  data::TensorDataset train({d.x_train, d.y_train});
  data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 0});
  const int epochs = 30;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double total = 0;
    for (const data::Batch& b : loader) {
      ModuleGraph g = loss(b[0].to(device), b[1].to(device));
      opt.zero_grad();
      g.back();
      opt.step();
      total += g.value().item() * static_cast<double>(b[0].size(0));
    }
    if (epoch % 5 == 0) std::printf("epoch %2d  loss %.4f\n", epoch, total / static_cast<double>(train.size()));
  }

  model.eval();
  double acc = 0;
  {
    NoGradGuard no_grad;
    acc = examples::accuracy(model(d.x_test.to(device)).value().cpu(), d.y_test);
  }
  std::printf("test accuracy %.4f (%lld images, %s)\n", acc, static_cast<long long>(d.x_test.size(0)),
              device.str().c_str());

  // The graph of one training step on 8 images, gradients included.
  std::ofstream(out_dir / "digits_mlp_summary.txt") << table;
  std::cout << "wrote " << (out_dir / "digits_mlp_summary.txt").string() << "\n";
  ModuleGraph step = loss(d.x_train.slice(0, 0, 8).to(device), d.y_train.slice(0, 0, 8).to(device));
  step.back();
  for (const auto& f : render_graph(step, (out_dir / "digits_mlp").string(), {.title = "digits MLP: one training step"})) {
    std::cout << "wrote " << f << "\n";
  }
  std::printf("%.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}
