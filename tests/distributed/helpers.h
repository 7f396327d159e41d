// Helpers for the distributed tests: gradients of a per-rank body, and a finite-difference
// check of the objective "sum over ranks of each rank's root" across ranks.
#pragma once

#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/module.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace zkynet::testing {

using RankBody = std::function<NodeRef(const NodeRef&)>;

// The world communicator of the test job, its rank and size.
inline const dist::Communicator& W() {
  static const dist::Communicator w = dist::world();
  return w;
}
inline int rank() { return W().rank(); }
inline int size() { return W().size(); }

// The gradient of this rank's scalar root f(x) with respect to x, after every rank's back().
inline Tensor rank_grad(const RankBody& f, const Tensor& x) {
  Lambda module({"x"}, [&](std::span<const NodeRef> in) { return f(in[0]); });
  const std::vector<NodeRef> args{NodeRef(x)};
  ModuleGraph g = module.invoke(args);
  g.back();
  return g.grad(module.input("x"));
}

// sum over ranks of f(x) on each rank, without a graph.
inline double objective(const RankBody& f, const Tensor& x, const dist::Communicator& comm) {
  Tensor local = Tensor::scalar(f(x).value().item());
  dist::allreduce_(local, dist::ReduceOp::Sum, comm);
  return local.item();
}

// Central differences of the global objective against every rank's reverse-mode gradient,
// one element of one rank at a time (every rank evaluates f each time). float64 x.
inline void require_dist_gradcheck(const RankBody& f, const Tensor& x, const dist::Communicator& comm,
                                   double h = 1e-6, double tol = 1e-6) {
  const Tensor analytic = rank_grad(f, x);
  for (int owner = 0; owner < comm.size(); ++owner) {
    Tensor n = Tensor::scalar(static_cast<double>(x.numel()), DType::Int64);
    dist::bcast_(n, owner, comm);
    const auto count = static_cast<std::int64_t>(n.item());
    for (std::int64_t i = 0; i < count; ++i) {
      Tensor plus = x.clone(), minus = x.clone();
      if (comm.rank() == owner) {
        plus.data<double>()[i] += h;
        minus.data<double>()[i] -= h;
      }
      const double numeric = (objective(f, plus, comm) - objective(f, minus, comm)) / (2 * h);
      if (comm.rank() == owner) {
        const double got = analytic.to_doubles()[static_cast<std::size_t>(i)];
        INFO("rank " << owner << ", element " << i << ": reverse mode " << got << ", finite differences " << numeric);
        CHECK(std::abs(got - numeric) <= tol * (1 + std::abs(numeric)));
      }
    }
  }
}

// A float64 tensor of `shape` with values depending on the rank and a seed.
inline Tensor rank_tensor(const Shape& shape, int rank, std::uint64_t seed = 1) {
  Generator gen(seed * 1000 + static_cast<std::uint64_t>(rank));
  return Tensor::randn(shape, gen);
}

}  // namespace zkynet::testing
