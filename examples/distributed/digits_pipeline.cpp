// The digits MLP trained pipeline-parallel: run under `mpiexec -n 2`, each rank holds one
// stage (rank 0: Linear(64,64)-ReLU, rank 1: Linear(64,10)), micro-batches flow on a GPipe
// schedule through differentiable send/recv. The last stage prints the held-out accuracy;
// every rank writes its graph of one step to <output-dir>/pipeline_rank<r>.dot, which
// tools/merge_rank_graphs.py joins into one picture.
//
//   mpiexec -n 2 digits_pipeline [output-dir]      (default: zkynet-graphs)
#include "../data.h"

#include <zkynet/data/dataloader.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/pipeline.h>
#include <zkynet/framework/dot.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include <cstdio>
#include <filesystem>

using namespace zkynet;

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const dist::Communicator world = dist::world();
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : "zkynet-graphs";
  std::filesystem::create_directories(out_dir);

  const examples::Digits d = examples::load_digits(/*seed=*/0);
  nn::manual_seed(0);  // every rank builds the same model and keeps its own stage
  nn::Sequential model;
  model.add<nn::Linear>(64, 64);
  model.add<nn::ReLU>();
  model.add<nn::Linear>(64, 10);
  dist::Pipeline pipe(model, {.micro_batches = 4, .stage_starts = {2}}, world);
  optim::SGD opt(pipe.parameters(), {.lr = 0.1, .momentum = 0.9});
  const auto loss = [](const NodeRef& logits, const NodeRef& y) { return op::cross_entropy(logits, y); };

  data::TensorDataset train({d.x_train, d.y_train});
  data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 0});
  for (int epoch = 1; epoch <= 30; ++epoch) {
    double total = 0;
    for (const data::Batch& b : loader) {
      opt.zero_grad();
      total += pipe.train_step(b[0], b[1], loss) * static_cast<double>(b[0].size(0));
      opt.step();
    }
    if (world.rank() == 0 && epoch % 10 == 0) {
      std::printf("epoch %2d  loss %.4f\n", epoch, total / static_cast<double>(train.size()));
    }
  }
  const auto files = render_graph(*pipe.last_graph(), (out_dir / ("pipeline_rank" + std::to_string(world.rank()))).string(),
                                  {.title = "pipeline stage " + std::to_string(pipe.stage())}, {});

  model.eval();
  const Tensor logits = pipe.predict(d.x_test);
  Tensor accuracy = Tensor::scalar(pipe.is_last() ? examples::accuracy(logits, d.y_test) : 0.0);
  dist::bcast_(accuracy, pipe.stages() - 1, world);
  if (world.rank() == 0) {
    std::printf("pipeline (%d stages): test accuracy %.4f (%lld images); stage graphs in %s/pipeline_rank*.dot\n",
                pipe.stages(), accuracy.item(), static_cast<long long>(d.x_test.size(0)), out_dir.c_str());
  }
  return accuracy.item() >= 0.9 ? 0 : 1;
}
