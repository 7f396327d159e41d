// Send / Recv, Isend / Irecv / Wait and JoinDummies: values, gradients across ranks, the
// ring exchange without JoinDummies, and mismatched messages.
#include <zkynet/distributed/ops.h>
#include <zkynet/ops/ops.h>

#include "distributed/helpers.h"

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

int next() { return (rank() + 1) % size(); }
int prev() { return (rank() + size() - 1) % size(); }
double weight_of(int r) { return r + 1.0; }

}  // namespace

TEST_CASE("send delivers x to recv, and the receiver's gradient flows back to the sender") {
  const Tensor x = Tensor::full({3}, 10.0 + rank());
  // Rank 0's root does not depend on its send: the send is visited anyway.
  const Tensor g = rank_grad([](const NodeRef& v) -> NodeRef {
    if (rank() == 0) {
      dist::send(v, 1, 5);
      return op::sum(op::square(v));
    }
    if (rank() == 1) {
      const NodeRef y = dist::recv(v, 0, 5);
      CHECK(allclose(y.value(), Tensor::full({3}, 10.0)));
      return op::sum(op::mult(y, 3.0));
    }
    return op::sum(v);
  }, x);
  if (rank() == 0) CHECK(allclose(g, Tensor::full({3}, 2 * 10.0 + 3.0)));
  if (rank() == 1) CHECK(allclose(g, Tensor::zeros({3})));  // recv's x only gives the shape
}

TEST_CASE("the isend / recv / wait ring gives the right gradient without JoinDummies") {
  // Rank r weighs what it receives from r-1 by (r + 1): r's x gets weight_of(r + 1).
  const Tensor g = rank_grad([](const NodeRef& v) {
    const dist::WaitHandle h = dist::isend(v, next(), 1);
    const NodeRef y = dist::recv(v, prev(), 1);
    dist::wait(h);  // its result is unused: no path to the root
    return op::sum(op::mult(y, weight_of(rank())));
  }, Tensor::ones({2}));
  CHECK(allclose(g, Tensor::full({2}, weight_of(next()))));
}

TEST_CASE("a wait recorded after the root still takes part in backward") {
  const Tensor g = rank_grad([](const NodeRef& v) {
    const dist::WaitHandle h = dist::isend(v, next(), 2);
    const NodeRef y = dist::recv(v, prev(), 2);
    const NodeRef loss = op::sum(op::mult(y, weight_of(rank())));
    dist::wait(h);
    return loss;
  }, Tensor::ones({2}));
  CHECK(allclose(g, Tensor::full({2}, weight_of(next()))));
}

TEST_CASE("irecv and wait receive the value and send its gradient back") {
  const Tensor x = Tensor::full({2, 2}, rank());
  const Tensor g = rank_grad([](const NodeRef& v) {
    const dist::WaitHandle in = dist::irecv(v, prev(), 3);
    const dist::WaitHandle out = dist::isend(v, next(), 3);
    const NodeRef y = dist::wait(in);
    CHECK(allclose(y.value(), Tensor::full({2, 2}, prev())));
    dist::wait(out);
    return op::sum(op::mult(op::square(y), weight_of(rank())));
  }, x);
  // d/dx_r of weight_of(r+1) * sum(x_r^2)
  CHECK(allclose(g, Tensor::full({2, 2}, 2.0 * rank() * weight_of(next()))));
}

TEST_CASE("the ring's adjoints match finite differences across ranks") {
  const Tensor x = rank_tensor({3}, rank());
  require_dist_gradcheck([](const NodeRef& v) {
    const dist::WaitHandle h = dist::isend(op::tanh(v), next(), 4);
    const NodeRef y = dist::recv(v, prev(), 4);
    const NodeRef sent = dist::wait(h);
    return op::add(op::sum(op::mult(op::square(y), weight_of(rank()))), op::sum(sent));
  }, x, W());
}

TEST_CASE("join_dummies passes x through and gives the dummies zero gradients") {
  Lambda f({"x", "d"}, [](std::span<const NodeRef> in) { return op::sum(dist::join_dummies(op::mult(in[0], 2.0), {in[1]})); });
  const std::vector<NodeRef> args{NodeRef(Tensor::ones({2})), NodeRef(Tensor::ones({3}))};
  ModuleGraph g = f.invoke(args);
  CHECK(g.value().item() == 4.0);
  g.back();
  CHECK(allclose(g.grad(f.input("x")), Tensor::full({2}, 2.0)));
  CHECK(allclose(g.grad(f.input("d")), Tensor::zeros({3})));
}

TEST_CASE("join_dummies_handle orders a wait after other work") {
  const Tensor g = rank_grad([](const NodeRef& v) {
    const NodeRef before = op::mult(v, 2.0);
    const dist::WaitHandle h = dist::join_dummies_handle(dist::isend(v, next(), 6), {before});
    const NodeRef y = dist::recv(v, prev(), 6);
    return op::add(op::sum(dist::wait(h)), op::sum(op::mult(y, weight_of(rank()))));
  }, Tensor::ones({2}));
  CHECK(allclose(g, Tensor::full({2}, 1.0 + weight_of(next()))));
}

TEST_CASE("a message shorter than the receive buffer is a ShapeError naming both sizes") {
  std::string msg;
  if (rank() == 0) dist::send(Tensor::ones({2}), 1, 9);
  if (rank() == 1) msg = error_message<ShapeError>([] { dist::recv(Tensor::ones({3}), 0, 9); });
  if (rank() == 1) CHECK_THAT(msg, Contains("recv from 0 (tag 9, world)") && Contains("expected 3 float64 values") &&
                                       Contains("the message has 2"));
}

TEST_CASE("a message longer than the receive buffer is an error, not memory corruption") {
  bool threw = rank() != 1;
  if (rank() == 0) dist::send(Tensor::ones({4}), 1, 10);
  if (rank() == 1) {
    try {
      dist::recv(Tensor::ones({3}), 0, 10);
    } catch (const Error& e) {
      threw = std::string(e.what()).find("recv from 0") != std::string::npos;
    }
  }
  CHECK(threw);
}

TEST_CASE("a peer outside the communicator is an IndexError") {
  CHECK_THROWS_AS(dist::send(Tensor::ones({1}), size(), 0), IndexError);
  CHECK_THROWS_AS(dist::recv(Tensor::ones({1}), -1, 0), IndexError);
}

TEST_CASE("recv into a constant template still sends the receiver's gradient back") {
  Lambda f({"x"}, [](std::span<const NodeRef> in) -> NodeRef {
    if (rank() == 0) {
      dist::send(op::mult(in[0], 1.0), 1, 11);
      return op::sum(op::mult(in[0], 0.0));
    }
    if (rank() == 1) return op::sum(op::mult(dist::recv(Tensor::zeros({2}), 0, 11), 4.0));
    return op::sum(in[0]);
  });
  const std::vector<NodeRef> args{NodeRef(Tensor::ones({2}))};
  ModuleGraph g = f.invoke(args);
  g.back();
  if (rank() == 0) CHECK(allclose(g.grad(f.input("x")), Tensor::full({2}, 4.0)));
}
