// Pipeline parallel: a Sequential cut into one stage per rank, micro-batches on a GPipe
// schedule; gradients and training equal single-process full-batch results.
#include <zkynet/distributed/pipeline.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include "distributed/helpers.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;

namespace {

// Seven layers, so 2, 3 and 4 ranks all get non-empty stages.
std::unique_ptr<nn::Sequential> make_model() {
  Generator gen(3);
  const nn::LinearOptions o{.dtype = DType::Float64, .generator = &gen};
  auto m = std::make_unique<nn::Sequential>();
  m->add<nn::Linear>(5, 8, o);
  m->add<nn::Tanh>();
  m->add<nn::Linear>(8, 8, o);
  m->add<nn::Tanh>();
  m->add<nn::Linear>(8, 8, o);
  m->add<nn::Tanh>();
  m->add<nn::Linear>(8, 4, o);
  return m;
}

struct Batch {
  Tensor x, y;
};

Batch make_batch(std::int64_t rows) {
  Generator gen(8);
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < rows; ++i) labels.push_back((i * 5) % 4);
  return {Tensor::randn({rows, 5}, gen), Tensor::from_vector(labels, {rows})};
}

const auto kLoss = [](const NodeRef& out, const NodeRef& y) { return op::cross_entropy(out, y); };
const auto kSumLoss = [](const NodeRef& out, const NodeRef& y) {
  return op::cross_entropy(out, y, op::Reduction::Sum);
};

double reference_step(nn::Sequential& model, const Batch& b, const dist::Pipeline::Loss& loss = kLoss) {
  Lambda objective({"x"}, [&](std::span<const NodeRef> in) {
    const std::array<NodeRef, 1> args{in[0]};
    return loss(model.invoke(args).root(), NodeRef(b.y));
  });
  ModuleGraph g = objective(b.x);
  g.back();
  return g.value().item();
}

}  // namespace

TEST_CASE("pipeline loss and gradients equal single-process ones, whatever the micro-batching and reduction") {
  const Batch batch = make_batch(12);
  // A sum-reduced loss was once divided by the number of micro-batches (-0.853 became -0.427
  // with 2): the loss must be the plain model's whatever its reduction.
  const std::vector<std::pair<const char*, dist::Pipeline::Loss>> losses{{"mean", kLoss}, {"sum", kSumLoss}};
  for (const auto& [reduction, loss_fn] : losses) {
    for (std::int64_t micro : {1, 2, 3, 5}) {
      INFO(reduction << "-reduced loss, micro-batches " << micro);
      auto model = make_model();
      auto reference = make_model();
      dist::Pipeline pipe(*model, {.micro_batches = micro}, W());
      const double loss = pipe.train_step(batch.x, batch.y, loss_fn);
      const double ref_loss = reference_step(*reference, batch, loss_fn);
      CHECK(loss == Approx(ref_loss).epsilon(1e-12));
      const auto [begin, end] = pipe.layers();
      CHECK(end > begin);
      for (std::size_t i = begin; i < end; ++i) {
        const auto ours = (*model)[i].named_parameters();
        const auto theirs = (*reference)[i].named_parameters();
        for (std::size_t k = 0; k < ours.size(); ++k) {
          INFO("layer " << i << " " << ours[k].first);
          INFO("ours " << ours[k].second.grad() << " theirs " << theirs[k].second.grad());
          CHECK(allclose(ours[k].second.grad(), theirs[k].second.grad(), 1e-10, 1e-12));
        }
      }
    }
  }
}

TEST_CASE("pipeline training steps follow single-process training") {
  const Batch batch = make_batch(16);
  auto model = make_model();
  auto reference = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 4}, W());
  optim::SGD opt(pipe.parameters(), {.lr = 0.5});
  optim::SGD ref_opt(reference->parameters(), {.lr = 0.5});
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    ref_opt.zero_grad();
    last = pipe.train_step(batch.x, batch.y, kLoss);
    if (step == 0) first = last;
    CHECK(last == Approx(reference_step(*reference, batch)).epsilon(1e-10));
    opt.step();
    ref_opt.step();
  }
  CHECK(last < first);
  const Tensor out = pipe.predict(batch.x);
  if (pipe.is_last()) {
    NoGradGuard no_grad;
    CHECK(allclose(out, (*reference)(batch.x).value(), 1e-10, 1e-12));
  } else {
    CHECK_FALSE(out.defined());
  }
}

TEST_CASE("a pipeline with more stages than layers is refused") {
  nn::Sequential tiny;
  tiny.add<nn::Tanh>();
  if (W().size() > 1) CHECK_THROWS_AS(dist::Pipeline(tiny, {}, W()), UsageError);
}

TEST_CASE("a batch with fewer rows than micro-batches trains like the full batch") {
  const Batch batch = make_batch(3);
  auto model = make_model();
  auto reference = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 4}, W());
  const double loss = pipe.train_step(batch.x, batch.y, kLoss);
  CHECK(loss == Approx(reference_step(*reference, batch)).epsilon(1e-12));
}

// ---- the step's picture (to_dot of last_graph()) ----------------------------------------------

TEST_CASE("a pipeline step's picture is one call per stage: no dangling input, no anonymous Lambda") {
  const Batch batch = make_batch(12);
  auto model = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 2}, W());
  pipe.train_step(batch.x, batch.y, kLoss);
  const std::string dot = to_dot(*pipe.last_graph());
  CHECK(dot.find("label=\"stage " + std::to_string(pipe.stage()) + " (Pipeline) #0\"") != std::string::npos);
  CHECK(dot.find("unused") == std::string::npos);
  CHECK(dot.find("Lambda") == std::string::npos);
}

TEST_CASE("a pipeline step's picture draws its micro-batches as calls, in order") {
  const Batch batch = make_batch(12);
  auto model = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 3}, W());
  pipe.train_step(batch.x, batch.y, kLoss);
  const std::string dot = to_dot(*pipe.last_graph());
  CHECK(dot.find("mclimit=") != std::string::npos);  // Graphviz keeps the calls' order
  // Micro-batch m is invocation 1 + m * (1 + layers of the stage); each is labelled.
  const auto [begin, end] = pipe.layers();
  for (int m = 0; m < 3; ++m) {
    const auto inv = 1 + m * (1 + static_cast<int>(end - begin));
    INFO("micro-batch " << m);
    CHECK(dot.find("label=\"micro-batch " + std::to_string(m) + " (MicroBatch) #" + std::to_string(inv) + "\"") !=
          std::string::npos);
  }
}

TEST_CASE("a pipeline stage's parameters are labelled with their paths in the Sequential") {
  const Batch batch = make_batch(12);
  auto model = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 2}, W());
  pipe.train_step(batch.x, batch.y, kLoss);
  const std::string dot = to_dot(*pipe.last_graph());
  const auto [begin, end] = pipe.layers();
  for (std::size_t i = begin; i < end; ++i) {
    if ((*model)[i].named_parameters().empty()) continue;  // Tanh
    INFO("layer " << i);
    CHECK(dot.find("label=\"" + std::to_string(i) + ".weight\\n") != std::string::npos);
    CHECK(dot.find("label=\"" + std::to_string(i) + ".bias\\n") != std::string::npos);
  }
  CHECK(dot.find("Linear.weight\\n") == std::string::npos);
}
