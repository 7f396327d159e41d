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

struct ReferenceStep {
  double loss;
  Tensor input_grad;  // graph.grad(x) of the plain model
};

ReferenceStep reference_step_with_input_grad(nn::Sequential& model, const Batch& b,
                                             const dist::Pipeline::Loss& loss = kLoss) {
  Lambda objective({"x"}, [&](std::span<const NodeRef> in) {
    const std::array<NodeRef, 1> args{in[0]};
    return loss(model.invoke(args).root(), NodeRef(b.y));
  });
  ModuleGraph g = objective(b.x);
  g.back();
  return {g.value().item(), g.grad(objective.input("x"))};
}

double reference_step(nn::Sequential& model, const Batch& b, const dist::Pipeline::Loss& loss = kLoss) {
  return reference_step_with_input_grad(model, b, loss).loss;
}

// Batches of whole micro-batches, of uneven ones (rows not divisible by micro_batches), and of
// fewer rows than micro-batches.
struct Split {
  std::int64_t rows, micro_batches;
};
const std::vector<Split> kSplits{{12, 1}, {12, 3}, {11, 3}, {7, 2}, {3, 4}};

// The plain model's parameters' gradients after a reference step, keyed as named_parameters().
void check_gathered_gradients(const dist::Pipeline::NamedGradients& gathered, const nn::Sequential& reference) {
  const auto expected = reference.named_parameters();
  REQUIRE(gathered.size() == expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    INFO("parameter " << expected[k].first);
    CHECK(gathered[k].first == expected[k].first);
    CHECK(gathered[k].second.shape() == expected[k].second.value().shape());
    CHECK(allclose(gathered[k].second, expected[k].second.grad(), 1e-10, 1e-12));
  }
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

// ---- DaggerFlux parity: the input's gradient, gathered gradients, delivered outputs -----------

TEST_CASE("with input_requires_grad, input_grad on the first stage is the plain model's graph.grad(x)") {
  for (const Split split : kSplits) {
    INFO(split.rows << " rows, " << split.micro_batches << " micro-batches");
    const Batch batch = make_batch(split.rows);
    auto model = make_model();
    auto reference = make_model();
    dist::Pipeline pipe(*model, {.micro_batches = split.micro_batches, .input_requires_grad = true}, W());
    const double loss = pipe.train_step(batch.x, batch.y, kLoss);
    const ReferenceStep expected = reference_step_with_input_grad(*reference, batch);
    CHECK(loss == Approx(expected.loss).epsilon(1e-12));
    const Tensor dx = pipe.input_grad();
    if (pipe.is_first()) {
      REQUIRE(dx.defined());
      CHECK(dx.shape() == batch.x.shape());
      CHECK(allclose(dx, expected.input_grad, 1e-10, 1e-12));
    } else {
      CHECK_FALSE(dx.defined());
    }
  }
}

TEST_CASE("the input's gradient follows each train_step, not their sum") {
  const Batch first = make_batch(8), second = make_batch(5);
  auto model = make_model();
  auto reference = make_model();
  dist::Pipeline pipe(*model, {.micro_batches = 2, .input_requires_grad = true}, W());
  pipe.train_step(first.x, first.y, kLoss);
  pipe.train_step(second.x, second.y, kLoss);
  reference_step(*reference, first);
  const Tensor expected = reference_step_with_input_grad(*reference, second).input_grad;
  if (pipe.is_first()) CHECK(allclose(pipe.input_grad(), expected, 1e-10, 1e-12));
}

TEST_CASE("gradients(root) gathers every parameter's gradient on root, keyed as the plain model's") {
  for (const Split split : kSplits) {
    const Batch batch = make_batch(split.rows);
    auto model = make_model();
    auto reference = make_model();
    dist::Pipeline pipe(*model, {.micro_batches = split.micro_batches}, W());
    pipe.train_step(batch.x, batch.y, kLoss);
    reference_step(*reference, batch);
    for (int root = 0; root < size(); ++root) {
      INFO(split.rows << " rows, " << split.micro_batches << " micro-batches, root " << root);
      const auto gathered = pipe.gradients(root);
      if (rank() == root) {
        REQUIRE(gathered.has_value());
        check_gathered_gradients(*gathered, *reference);
      } else {
        CHECK_FALSE(gathered.has_value());
      }
    }
  }
}

TEST_CASE("gradients(kAllRanks) gathers every parameter's gradient on every rank") {
  for (const Split split : kSplits) {
    INFO(split.rows << " rows, " << split.micro_batches << " micro-batches");
    const Batch batch = make_batch(split.rows);
    auto model = make_model();
    auto reference = make_model();
    dist::Pipeline pipe(*model, {.micro_batches = split.micro_batches}, W());
    pipe.train_step(batch.x, batch.y, kLoss);
    reference_step(*reference, batch);
    const auto gathered = pipe.gradients(dist::Pipeline::kAllRanks);
    REQUIRE(gathered.has_value());
    check_gathered_gradients(*gathered, *reference);
  }
}

TEST_CASE("gradients() of parameters without a gradient are zeros of their shapes") {
  auto model = make_model();
  dist::Pipeline pipe(*model, {}, W());
  const auto gathered = pipe.gradients();  // before any train_step
  REQUIRE(gathered.has_value());
  const auto named = model->named_parameters();
  REQUIRE(gathered->size() == named.size());
  for (std::size_t k = 0; k < named.size(); ++k) {
    INFO("parameter " << named[k].first);
    CHECK((*gathered)[k].first == named[k].first);
    CHECK(allclose((*gathered)[k].second, Tensor::zeros(named[k].second.value().shape()), 0, 0));
  }
}

TEST_CASE("predict delivers the output to a chosen rank, undefined on the others") {
  for (const Split split : kSplits) {
    const Batch batch = make_batch(split.rows);
    auto model = make_model();
    auto reference = make_model();
    dist::Pipeline pipe(*model, {.micro_batches = split.micro_batches}, W());
    Tensor expected;
    {
      NoGradGuard no_grad;
      expected = (*reference)(batch.x).value();
    }
    for (int to = 0; to < size(); ++to) {
      INFO(split.rows << " rows, delivered to rank " << to);
      const Tensor out = pipe.predict(batch.x, to);
      if (rank() == to) {
        REQUIRE(out.defined());
        CHECK(allclose(out, expected, 1e-10, 1e-12));
      } else {
        CHECK_FALSE(out.defined());
      }
    }
  }
}

TEST_CASE("predict with kAllRanks delivers the output to every rank") {
  for (const Split split : kSplits) {
    INFO(split.rows << " rows");
    const Batch batch = make_batch(split.rows);
    auto model = make_model();
    auto reference = make_model();
    dist::Pipeline pipe(*model, {.micro_batches = split.micro_batches}, W());
    NoGradGuard no_grad;
    const Tensor out = pipe.predict(batch.x, dist::Pipeline::kAllRanks);
    REQUIRE(out.defined());
    CHECK(allclose(out, (*reference)(batch.x).value(), 1e-10, 1e-12));
  }
}

TEST_CASE("predict by default returns the output on the last stage only") {
  const Batch batch = make_batch(6);
  auto model = make_model();
  dist::Pipeline pipe(*model, {}, W());
  CHECK(pipe.predict(batch.x).defined() == pipe.is_last());
}

TEST_CASE("input_grad without input_requires_grad is refused on every rank, saying how to ask for it") {
  const Batch batch = make_batch(6);
  auto model = make_model();
  dist::Pipeline pipe(*model, {}, W());
  pipe.train_step(batch.x, batch.y, kLoss);
  const std::string message = error_message<UsageError>([&] { pipe.input_grad(); });
  CHECK_THAT(message, Catch::Contains("Pipeline.input_grad") && Catch::Contains("input_requires_grad"));
}

TEST_CASE("input_grad before any train_step is refused on every rank") {
  auto model = make_model();
  dist::Pipeline pipe(*model, {.input_requires_grad = true}, W());
  CHECK_THAT(error_message<UsageError>([&] { pipe.input_grad(); }),
             Catch::Contains("Pipeline.input_grad") && Catch::Contains("no train_step"));
}

TEST_CASE("a root or destination that is not a rank is refused on every rank, naming it") {
  const Batch batch = make_batch(6);
  auto model = make_model();
  dist::Pipeline pipe(*model, {}, W());
  const int beyond = size();
  CHECK_THAT(error_message<UsageError>([&] { pipe.gradients(beyond); }),
             Catch::Contains("Pipeline.gradients: root " + std::to_string(beyond) + " is not a rank") &&
                 Catch::Contains(std::to_string(size()) + " ranks"));
  CHECK_THAT(error_message<UsageError>([&] { pipe.gradients(-5); }), Catch::Contains("root -5"));
  CHECK_THAT(error_message<UsageError>([&] { pipe.predict(batch.x, beyond); }),
             Catch::Contains("Pipeline.predict: deliver_to " + std::to_string(beyond) + " is not a rank"));
  // Nothing was sent: the pipeline still works.
  CHECK(pipe.predict(batch.x).defined() == pipe.is_last());
}
