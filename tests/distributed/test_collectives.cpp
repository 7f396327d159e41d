// Collectives as operators: values, mpi4torch's gradient tests, and finite-difference
// checks of every adjoint across ranks. Runs under mpiexec with 2, 3 and 4 ranks.
#include <zkynet/distributed/ops.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>

#include "distributed/helpers.h"

using namespace zkynet;
using namespace zkynet::testing;
using dist::ReduceOp;
using Catch::Matchers::Contains;

namespace {

double r1() { return rank() + 1.0; }

Tensor ones(const Shape& s) { return Tensor::ones(s); }

}  // namespace

// ---- values ---------------------------------------------------------------------------

TEST_CASE("allreduce sums, averages and takes extremes over ranks") {
  const double n = size();
  const Tensor x = Tensor::full({2, 3}, r1());
  CHECK(allclose(dist::allreduce(x).value(), Tensor::full({2, 3}, n * (n + 1) / 2)));
  CHECK(allclose(dist::allreduce(x, ReduceOp::Avg).value(), Tensor::full({2, 3}, (n + 1) / 2)));
  CHECK(allclose(dist::allreduce(x, ReduceOp::Max).value(), Tensor::full({2, 3}, n)));
  CHECK(allclose(dist::allreduce(x, ReduceOp::Min).value(), Tensor::full({2, 3}, 1.0)));
  double factorial = 1;
  for (int r = 1; r <= size(); ++r) factorial *= r;
  CHECK(allclose(dist::allreduce(x, ReduceOp::Prod).value(), Tensor::full({2, 3}, factorial)));
}

TEST_CASE("reduce gives the root the sum and other ranks zeros") {
  const double n = size();
  const Tensor y = dist::reduce(Tensor::full({3}, r1()), ReduceOp::Sum, 0).value();
  CHECK(allclose(y, Tensor::full({3}, rank() == 0 ? n * (n + 1) / 2 : 0.0)));
}

TEST_CASE("bcast copies the root's value to every rank") {
  const int root = size() - 1;
  CHECK(allclose(dist::bcast(Tensor::full({2}, r1()), root).value(), Tensor::full({2}, root + 1.0)));
}

TEST_CASE("gather concatenates parts of different sizes on the root in rank order") {
  // Rank r contributes r+1 rows of value r along axis 1.
  const Tensor x = Tensor::full({2, rank() + 1}, rank());
  const Tensor y = dist::gather(x, 1, 0).value();
  if (rank() == 0) {
    REQUIRE(y.shape() == Shape{2, size() * (size() + 1) / 2});
    std::int64_t at = 0;
    for (int r = 0; r < size(); ++r) {
      for (int k = 0; k <= r; ++k, ++at) CHECK(y.at({1, at}) == r);
    }
  } else {
    CHECK(y.shape() == Shape{2, 0});
  }
}

TEST_CASE("allgather gives every rank the concatenation") {
  const Tensor y = dist::allgather(Tensor::full({rank() + 1, 2}, rank()), 0).value();
  REQUIRE(y.shape() == Shape{size() * (size() + 1) / 2, 2});
  CHECK(y.at({0, 1}) == 0);
  CHECK(y.at({y.size(0) - 1, 0}) == size() - 1);
}

TEST_CASE("scatter then gather round-trips the root's tensor, with per-rank counts") {
  const std::int64_t total = size() * (size() + 1) / 2;
  const Tensor full = Tensor::arange(3 * total).reshape({3, total});
  const Tensor x = rank() == 0 ? full : Tensor::zeros({3, 1});
  const Tensor part = dist::scatter(x, 1, rank() + 1, 0).value();
  REQUIRE(part.shape() == Shape{3, rank() + 1});
  const std::int64_t offset = rank() * (rank() + 1) / 2;
  CHECK(allclose(part, full.slice(1, offset, offset + rank() + 1).contiguous()));
  const Tensor back = dist::gather(part, 1, 0).value();
  if (rank() == 0) CHECK(allclose(back, full));
}

TEST_CASE("alltoall exchanges blocks and its swapped form undoes it") {
  // x: (2 rows per rank along axis 0, size*1 columns along axis 1); rank j keeps column j.
  const Tensor x = op::add(Tensor::full({2, size()}, 100.0 * rank()), Tensor::arange(size()).reshape({1, size()})).value();
  const Tensor y = dist::alltoall(x, 0, 1, 1).value();
  REQUIRE(y.shape() == Shape{2 * size(), 1});
  for (int src = 0; src < size(); ++src) CHECK(y.at({2 * src + 1, 0}) == 100.0 * src + rank());
  const Tensor back = dist::alltoall(y, 1, 0, 2).value();
  CHECK(allclose(back, x));
}

// ---- Scatter as in mpi4torch: a non-root x only anchors the gradient -------------------------

namespace {

// The root's x (every rank can make it) and rank r's anchor: a 1-d tensor of r elements,
// another shape on every rank and none with the scatter axis (mpi4torch passes rand(1)).
Tensor scatter_source() { return rank_tensor({2, 3, size(), 5, 6}, 0, 21); }
Tensor scatter_input() { return rank() == 0 ? scatter_source() : Tensor::ones({rank()}); }
// Rank r's seed for the gradient of its part.
Tensor scatter_seed(int r) { return rank_tensor({2, 3, 1, 5, 6}, r, 22); }

// Scatter(Gather(x, g, 0), s, 1, 0) against Alltoall(x, g, s, 1), for every pair of axes of a
// 4-d x (mpi4torch's equivalence test), and for its 5-d case gather 2, scatter 4.
void require_scatter_gather_is_alltoall() {
  for (std::int64_t g = 0; g < 4; ++g) {
    for (std::int64_t s = 0; s < 4; ++s) {
      if (g == s) continue;
      Shape shape{2, 3, 4, 5};
      shape[static_cast<std::size_t>(s)] = size();
      const Tensor x = rank_tensor(shape, rank(), 23);
      INFO("gather axis " << g << ", scatter axis " << s);
      const Tensor via_root = dist::scatter(dist::gather(x, g, 0), s, 1, 0).value();
      const Tensor direct = dist::alltoall(x, g, s, 1).value();
      REQUIRE(via_root.shape() == direct.shape());
      CHECK(allclose(via_root, direct));
    }
  }
  const Tensor x = rank_tensor({2, 3, rank() + 1, 5, size()}, rank(), 24);
  const Tensor via_root = dist::scatter(dist::gather(x, 2, 0), 4, 1, 0).value();
  const Tensor direct = dist::alltoall(x, 2, 4, 1).value();
  REQUIRE(via_root.shape() == Shape{2, 3, size() * (size() + 1) / 2, 5, 1});
  REQUIRE(direct.shape() == via_root.shape());
  CHECK(allclose(via_root, direct));
}

struct CheckedMode {
  bool before = dist::checked();
  explicit CheckedMode(bool on) { dist::set_checked(on); }
  ~CheckedMode() { dist::set_checked(before); }
};

}  // namespace

TEST_CASE("Scatter takes the root's shape: non-root 1-element anchors of other shapes are ignored") {
  const Tensor part = dist::scatter(scatter_input(), 2, 1, 0).value();
  REQUIRE(part.shape() == Shape{2, 3, 1, 5, 6});
  CHECK(allclose(part, scatter_source().slice(2, rank(), rank() + 1).contiguous()));
}

TEST_CASE("Scatter counts a negative axis from the root's last dimension, whatever the anchor's") {
  const Tensor part = dist::scatter(scatter_input(), -3, 1, 0).value();
  REQUIRE(part.shape() == Shape{2, 3, 1, 5, 6});
  CHECK(allclose(part, scatter_source().slice(2, rank(), rank() + 1).contiguous()));
}

TEST_CASE("Scatter's gradient: the root gets the gathered seeds, other ranks zeros of their anchor's shape") {
  const Tensor seed = scatter_seed(rank());
  const Tensor g = rank_grad([&](const NodeRef& v) { return op::sum(op::mult(dist::scatter(v, 2, 1, 0), seed)); },
                             scatter_input());
  if (rank() == 0) {
    REQUIRE(g.shape() == Shape{2, 3, size(), 5, 6});
    for (int r = 0; r < size(); ++r) {
      INFO("rank " << r << "'s part");
      CHECK(allclose(g.slice(2, r, r + 1).contiguous(), scatter_seed(r)));
    }
  } else {
    REQUIRE(g.shape() == Shape{rank()});
    CHECK(allclose(g, Tensor::zeros({rank()})));
  }
}

TEST_CASE("Scatter(Gather(x, g, 0), s, 1, 0) equals Alltoall(x, g, s, 1) in checked mode") {
  const CheckedMode mode(true);
  require_scatter_gather_is_alltoall();
}

TEST_CASE("Scatter(Gather(x, g, 0), s, 1, 0) equals Alltoall(x, g, s, 1) unchecked") {
  const CheckedMode mode(false);
  require_scatter_gather_is_alltoall();
}

TEST_CASE("Scatter from a root that is not rank 0 takes that root's shape") {
  const int root = size() - 1;
  const Tensor full = rank_tensor({2 * size(), 3}, root, 25);
  const Tensor x = rank() == root ? full : Tensor::ones({1});
  const Tensor part = dist::scatter(x, 0, 2, root).value();
  REQUIRE(part.shape() == Shape{2, 3});
  CHECK(allclose(part, full.slice(0, 2 * rank(), 2 * rank() + 2).contiguous()));
}

TEST_CASE("Scatter refuses a non-root input of another dtype on every rank, naming the dtypes and the ranks") {
  const Tensor x = rank() == 0 ? scatter_source() : Tensor::ones({1}, rank() == 1 ? DType::Float32 : DType::Float64);
  const std::string msg = error_message<TypeError>([&] { dist::scatter(x, 2, 1, 0); });
  CHECK_THAT(msg, Contains("Scatter from 0") && Contains("root's dtype float64 (rank 0)") &&
                      Contains("rank 1's x is float32") && !Contains("rank 2's"));
  // Every rank learnt of it: the ranks go on together.
  CHECK(allclose(dist::allreduce(Tensor::ones({2})).value(), Tensor::full({2}, size())));
}

TEST_CASE("Scatter refuses ranks that pass different axes, on every rank") {
  const std::int64_t axis = rank() == 1 ? 1 : 2;
  const std::string msg = error_message<ShapeError>([&] { dist::scatter(scatter_input(), axis, 1, 0); });
  CHECK_THAT(msg, Contains("scatter axes differ") && Contains("rank 1 passes 1"));
}

// ---- gradients (mpi4torch's tests) ----------------------------------------------------------

TEST_CASE("allreduce SUM backward gives size * 1") {
  const Tensor g = rank_grad([](const NodeRef& x) { return op::sum(dist::allreduce(x)); }, ones({3}));
  CHECK(allclose(g, Tensor::full({3}, size())));
}

TEST_CASE("reduce SUM backward gives 1 on every rank") {
  const Tensor g = rank_grad([](const NodeRef& x) { return op::sum(dist::reduce(x, ReduceOp::Sum, 0)); }, ones({3}));
  CHECK(allclose(g, ones({3})));
}

TEST_CASE("bcast backward gives size * 1 on the root and 0 elsewhere") {
  const Tensor g = rank_grad([](const NodeRef& x) { return op::sum(dist::bcast(x, 0)); }, ones({3}));
  CHECK(allclose(g, Tensor::full({3}, rank() == 0 ? size() : 0.0)));
}

TEST_CASE("allgather backward is a correct reduce-scatter for any number of ranks") {
  // Each rank's root weighs the gathered tensor by (rank + 1): every part's gradient is
  // the sum over ranks, size (size + 1) / 2 (mpi4torch gives 5 instead of 6 on 3 ranks).
  const double w = r1();
  const Tensor g = rank_grad([w](const NodeRef& x) { return op::sum(op::mult(dist::allgather(x, 0), w)); }, ones({2}));
  CHECK(allclose(g, Tensor::full({2}, size() * (size() + 1) / 2.0)));
}

TEST_CASE("scatter backward gathers to the root; other ranks get zeros") {
  const Tensor x = rank() == 0 ? Tensor::ones({2 * size()}) : Tensor::ones({2});
  const double w = r1();
  const Tensor g = rank_grad([w](const NodeRef& v) { return op::sum(op::mult(dist::scatter(v, 0, 2, 0), w)); }, x);
  if (rank() == 0) {
    for (int r = 0; r < size(); ++r) CHECK(g.at({2 * r + 1}) == r + 1.0);
  } else {
    CHECK(allclose(g, Tensor::zeros({2})));
  }
}

TEST_CASE("gather backward scatters each rank its own part of the root's gradient") {
  const Tensor g = rank_grad([](const NodeRef& v) {
    const NodeRef all = dist::gather(v, 0, 0);
    return op::sum(op::mult(all, all));  // root: sum of squares of everything; others: 0
  }, Tensor::full({rank() + 1}, r1()));
  CHECK(allclose(g, Tensor::full({rank() + 1}, 2 * r1())));
}

// ---- finite differences across ranks --------------------------------------------------------

TEST_CASE("every collective's adjoint matches finite differences across ranks") {
  const Tensor x = rank_tensor({2, 3}, rank());
  const Tensor w = rank_tensor({2, 3}, rank(), 7);
  const auto weighted = [w](const NodeRef& y) { return op::sum(op::mult(op::tanh(y), w)); };
  SECTION("allreduce SUM") { require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::allreduce(v)); }, x, W()); }
  SECTION("allreduce AVG") {
    require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::allreduce(v, ReduceOp::Avg)); }, x, W());
  }
  SECTION("allreduce MAX") {
    require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::allreduce(v, ReduceOp::Max)); }, x, W());
  }
  SECTION("allreduce MIN") {
    require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::allreduce(v, ReduceOp::Min)); }, x, W());
  }
  SECTION("allreduce PROD") {
    require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::allreduce(v, ReduceOp::Prod)); }, x, W());
  }
  SECTION("reduce SUM, AVG, MAX, PROD") {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Prod}) {
      INFO(dist::reduce_op_name(op));
      require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::reduce(v, op, size() - 1)); }, x, W());
    }
  }
  SECTION("bcast") { require_dist_gradcheck([&](const NodeRef& v) { return weighted(dist::bcast(v, 0)); }, x, W()); }
  SECTION("allgather") {
    const Tensor wg = rank_tensor({2, 3 * size()}, rank(), 9);
    require_dist_gradcheck([&](const NodeRef& v) { return op::sum(op::mult(op::tanh(dist::allgather(v, 1)), wg)); }, x,
                           W());
  }
  SECTION("gather") {
    const Tensor wg = rank_tensor({2 * size(), 3}, rank(), 9);
    require_dist_gradcheck([&](const NodeRef& v) {
      const NodeRef all = dist::gather(v, 0, 0);
      return rank() == 0 ? op::sum(op::mult(op::tanh(all), wg)) : op::sum(all);
    }, x, W());
  }
  SECTION("scatter") {
    const Tensor xs = rank() == 0 ? rank_tensor({2, 2 * size()}, 0) : rank_tensor({2, 2}, rank());
    const Tensor ws = rank_tensor({2, 2}, rank(), 5);
    require_dist_gradcheck([&](const NodeRef& v) { return op::sum(op::mult(op::tanh(dist::scatter(v, 1, 2, 0)), ws)); },
                           xs, W());
  }
  SECTION("scatter from 1-element anchors (mpi4torch's rand(1))") {
    const int root = size() - 1;
    const Tensor xs = rank() == root ? rank_tensor({2, 2 * size()}, root) : rank_tensor({1}, rank());
    const Tensor ws = rank_tensor({2, 2}, rank(), 5);
    require_dist_gradcheck(
        [&](const NodeRef& v) { return op::sum(op::mult(op::tanh(dist::scatter(v, 1, 2, root)), ws)); }, xs, W());
  }
  SECTION("alltoall") {
    const Tensor xa = rank_tensor({2, 2 * size()}, rank());
    const Tensor wa = rank_tensor({2 * size(), 2}, rank(), 3);
    require_dist_gradcheck([&](const NodeRef& v) { return op::sum(op::mult(op::tanh(dist::alltoall(v, 0, 1, 2)), wa)); },
                           xa, W());
  }
}

TEST_CASE("MAX splits the gradient evenly between tied ranks") {
  const Tensor g = rank_grad([](const NodeRef& v) { return op::sum(dist::allreduce(v, ReduceOp::Max)); },
                             Tensor{rank() == 0 ? 5.0 : 1.0, 2.0});
  // Element 0: rank 0 wins alone, gets size (every rank's root counts it once). Element 1: all tie.
  CHECK(g.at({0}) == (rank() == 0 ? size() : 0.0));
  CHECK(g.at({1}) == Approx(1.0));
}

TEST_CASE("PROD's gradient handles zeros exactly") {
  // One zero (on rank 0): only rank 0 gets a non-zero gradient, the product of the others.
  const Tensor x{rank() == 0 ? 0.0 : 2.0};
  const Tensor g = rank_grad([](const NodeRef& v) { return op::sum(dist::allreduce(v, ReduceOp::Prod)); }, x);
  CHECK(g.at({0}) == (rank() == 0 ? size() * std::pow(2.0, size() - 1) : 0.0));
}

// ---- bad input ----------------------------------------------------------------------------

TEST_CASE("checked mode reports shapes that differ across ranks on every rank") {
  const Tensor x = Tensor::ones({2, rank() == 0 ? 3 : 4});
  std::string msg = error_message<ShapeError>([&] { dist::allreduce(x); });
  CHECK_THAT(msg, Contains("collective calls on world differ") && Contains("rank 0: Allreduce SUM #") &&
                      Contains("@world float64 (2,3)") && Contains("rank 1: Allreduce SUM #") &&
                      Contains("@world float64 (2,4)"));
}

TEST_CASE("scatter counts that do not add up are refused on every rank") {
  const Tensor x = Tensor::ones({3});
  CHECK_THROWS_AS(dist::scatter(x, 0, 2, 0), ShapeError);
}

TEST_CASE("a root outside the communicator is an IndexError") {
  CHECK_THROWS_WITH(dist::bcast(Tensor::ones({1}), size()), Contains("root " + std::to_string(size())));
}

TEST_CASE("checked mode reports dtypes that differ across ranks") {
  const Tensor x = Tensor::ones({2}, rank() == 0 ? DType::Float32 : DType::Float64);
  const std::string msg = error_message<ShapeError>([&] { dist::bcast(x, 0); });
  CHECK_THAT(msg, Contains("float32 (2,)") && Contains("float64 (2,)"));
}

TEST_CASE("the regression example fits the same parameters whatever the number of ranks") {
  // y = -2x^2 + x + 0.1 on 10 000 points, split across ranks; parameters averaged by an
  // allreduce inside the graph, loss = allreduce of the local squared errors.
  const std::int64_t n = 10000;
  Generator gen(42);
  const Tensor x_all = Tensor::uniform({n}, -1.0, 1.0, gen);
  const std::int64_t begin = n * rank() / size(), end = n * (rank() + 1) / size();
  const Tensor x = x_all.slice(0, begin, end).contiguous();
  const Tensor y = op::add(op::add(op::mult(op::square(x), -2.0), x), 0.1).value();
  Lambda objective({"coef"}, [&](std::span<const NodeRef> in) {
    const NodeRef c = dist::allreduce(op::mult(in[0], 1.0 / size()), ReduceOp::Sum);  // averaged over ranks
    const NodeRef pred = op::add(op::add(op::slice(c, 0, 0, 1), op::mult(op::slice(c, 0, 1, 2), x)),
                                 op::mult(op::slice(c, 0, 2, 3), op::square(x)));
    return op::div(dist::allreduce(op::sum(op::square(op::sub(pred, y)))), static_cast<double>(n));
  }, "Regression");
  Tensor coef{0.0, 0.0, 0.0};
  for (int step = 0; step < 600; ++step) {
    const std::vector<NodeRef> args{NodeRef(coef)};
    ModuleGraph g = objective.invoke(args);
    g.back();
    // Plain gradient descent; every rank holds the same coefficients.
    coef = op::sub(coef, op::mult(g.grad(objective.input("coef")), 0.5)).value();
  }
  const std::vector<double> c = coef.to_doubles();
  CHECK(c[0] == Approx(0.1).margin(1e-2));
  CHECK(c[1] == Approx(1.0).margin(1e-2));
  CHECK(c[2] == Approx(-2.0).margin(1e-2));
}

TEST_CASE("replicated_sum counts a replicated loss once; copy_to_ranks sums gradients") {
  // Each rank's root is the same global sum; with replicated_sum the objective is that sum,
  // so d/dx_r = 1 (allreduce would give size).
  const Tensor g = rank_grad([](const NodeRef& v) { return op::sum(dist::replicated_sum(v)); }, Tensor::ones({2}));
  CHECK(allclose(g, Tensor::ones({2})));
  const Tensor h = rank_grad([](const NodeRef& v) { return op::sum(op::mult(dist::copy_to_ranks(v), r1())); },
                             Tensor::ones({2}));
  CHECK(allclose(h, Tensor::full({2}, size() * (size() + 1) / 2.0)));
  CHECK(allclose(dist::replicated_sum(Tensor::full({2}, r1())).value(), Tensor::full({2}, size() * (size() + 1) / 2.0)));
}

TEST_CASE("copy_to_ranks's adjoint matches finite differences of a variable shared by all ranks") {
  // x is one variable replicated on every rank: perturb it everywhere at once; the objective
  // is the sum over ranks of each rank's root.
  const Tensor x = rank_tensor({3}, 0);
  const Tensor w = rank_tensor({3}, rank(), 4);
  const RankBody f = [&](const NodeRef& v) { return op::sum(op::mult(op::tanh(dist::copy_to_ranks(v)), w)); };
  const Tensor g = rank_grad(f, x);
  for (std::int64_t i = 0; i < 3; ++i) {
    Tensor plus = x.clone(), minus = x.clone();
    plus.data<double>()[i] += 1e-6;
    minus.data<double>()[i] -= 1e-6;
    const double numeric = (objective(f, plus, W()) - objective(f, minus, W())) / 2e-6;
    CHECK(g.to_doubles()[static_cast<std::size_t>(i)] == Approx(numeric).epsilon(1e-6));
  }
}

TEST_CASE("AVG of an integer tensor is refused, eagerly and in the graph") {
  Tensor t = Tensor::arange(3, DType::Int64);
  CHECK_THROWS_AS(dist::allreduce_(t, ReduceOp::Avg), TypeError);
  CHECK_THROWS_AS(dist::allreduce(Tensor::arange(3, DType::Int64), ReduceOp::Avg), TypeError);
}

TEST_CASE("checked mode catches ranks that disagree on the operation or the root") {
  Tensor t = Tensor::ones({2});
  CHECK_THROWS_AS(dist::allreduce_(t, rank() == 0 ? ReduceOp::Sum : ReduceOp::Max), ShapeError);
  CHECK_THROWS_AS(dist::bcast_(t, rank() == 0 ? 0 : 1), ShapeError);
  CHECK_THROWS_AS(dist::allreduce(Tensor::ones({2}), rank() == 0 ? ReduceOp::Sum : ReduceOp::Min), ShapeError);
}

TEST_CASE("checked mode compares barrier and split with the other collectives") {
  Tensor t = Tensor::ones({2});
  const std::string msg = error_message<ShapeError>([&] {
    if (rank() == 0) {
      W().barrier();
    } else {
      dist::allreduce_(t);
    }
  });
  CHECK_THAT(msg, Contains("rank 0: Barrier @world [call ") && Contains("rank 1: allreduce_ SUM @world float64 (2,)"));
  CHECK_THROWS_AS(rank() == 0 ? (void)W().split(0) : W().barrier(), ShapeError);
  W().barrier();  // and the next calls match again
}

TEST_CASE("checked mode catches a rank whose backward skips a collective, and the ranks go on") {
  // Rank 0 differentiates its step; the others skip back() and start the next step. The
  // collective numbers drift apart (a backward against a forward); they agree again after.
  Lambda step({"x"}, [](std::span<const NodeRef> in) { return op::sum(op::mult(dist::allreduce(in[0]), in[0])); },
              "Step");
  const std::vector<NodeRef> args{NodeRef(Tensor::ones({3}))};
  ModuleGraph first = step.invoke(args);
  const std::string msg = error_message<ShapeError>([&] {
    if (rank() == 0) {
      first.back();
    } else {
      step.invoke(args);
    }
  });
  CHECK_THAT(msg, Contains("rank 0: backward of Allreduce SUM #") && Contains("at Step (Step)") &&
                      Contains("rank 1: Allreduce SUM #"));
  ModuleGraph g = step.invoke(args);
  g.back();
  CHECK(allclose(g.grad(step.input("x")), Tensor::full({3}, 2.0 * size())));
}

TEST_CASE("set_timeout takes seconds; 0 turns it off; a negative value is refused") {
  const double before = dist::timeout();  // ZKYNET_DIST_TIMEOUT's, or 0
  dist::set_timeout(2.5);
  CHECK(dist::timeout() == 2.5);
  CHECK_THROWS_WITH(dist::set_timeout(-1), Contains("expected a number of seconds >= 0"));
  CHECK(dist::timeout() == 2.5);
  dist::set_timeout(before);
}
