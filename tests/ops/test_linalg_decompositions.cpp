// op::linalg: values on small hand-computed cases, float64 gradchecks on random batched
// well-conditioned operands, and the errors (singular, not positive-definite, shapes).
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/linalg.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <limits>
#include <string>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;
namespace la = zkynet::op::linalg;

namespace {

// A random batch of well-conditioned matrices: randn + n I.
Tensor well_conditioned(const Shape& shape, Generator& gen) {
  const std::int64_t n = shape.back();
  return kernels::add(Tensor::randn(shape, gen), kernels::scale(Tensor::eye(n), double(n)));
}

// (x + x^T) / 2 + n I: symmetric positive-definite for the inputs used here, built in the graph
// so that gradcheck perturbs both triangles alike.
NodeRef spd(const NodeRef& x) {
  const std::int64_t n = x.shape().back();
  return op::add(op::mult(op::add(x, op::transpose(x)), 0.5), kernels::scale(Tensor::eye(n), 2.0 * double(n)));
}

NodeRef sym(const NodeRef& x) { return op::mult(op::add(x, op::transpose(x)), 0.5); }

void require_close(const Tensor& got, const Tensor& want, double tol = 1e-12) {
  INFO("got " << got << "\nwant " << want);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(allclose(got, want, 0, tol));
}

void check(const Body& f, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(f, inputs);
  INFO(r.message);
  REQUIRE(r.ok);
}

const Tensor k2x2{{2.0, 1.0}, {1.0, 3.0}};

// The upper triangle of a contiguous float64 matrix.
Tensor upper_of(const Tensor& a) {
  Tensor u = a.clone();
  const std::int64_t n = a.size(0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < i; ++j) u.data<double>()[i * n + j] = 0;
  return u;
}

}  // namespace

// ---- solve ---------------------------------------------------------------------------------

TEST_CASE("linalg.solve: a 2x2 system, a vector right-hand side and a matrix one", "[linalg]") {
  require_close(la::solve(k2x2, Tensor{3.0, 5.0}).value(), Tensor{0.8, 1.4});
  require_close(la::solve(k2x2, Tensor{{3.0, 1.0}, {5.0, 0.0}}).value(), Tensor{{0.8, 0.6}, {1.4, -0.2}});
}

TEST_CASE("linalg.solve: B shaped like A without its last axis is a batch of vectors", "[linalg]") {
  Generator gen(1);
  const Tensor a = well_conditioned({4, 3, 3}, gen), b = Tensor::randn({4, 3}, gen);
  const Tensor x = la::solve(a, b).value();
  REQUIRE(x.shape() == Shape{4, 3});
  require_close(kernels::matmul(a, x.reshape({4, 3, 1})).reshape({4, 3}), b, 1e-12);
}

TEST_CASE("linalg.solve: gradcheck, batched, with broadcast batch axes", "[linalg][gradcheck]") {
  Generator gen(2);
  const Body f = [](std::span<const NodeRef> x) { return la::solve(x[0], x[1]); };
  check(f, {well_conditioned({2, 3, 3}, gen), Tensor::randn({2, 3, 2}, gen)});
  check(f, {well_conditioned({3, 3}, gen), Tensor::randn({2, 3, 2}, gen)});
  check(f, {well_conditioned({2, 1, 3, 3}, gen), Tensor::randn({3, 3, 1}, gen)});
  check(f, {well_conditioned({2, 3, 3}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("linalg.solve: a singular matrix is a LinAlgError naming the batch element", "[linalg][errors]") {
  Tensor a = Tensor::zeros({2, 2, 2});
  a.slice(0, 0, 1).copy_(Tensor{{{1.0, 0.0}, {0.0, 1.0}}});
  a.slice(0, 1, 2).copy_(Tensor{{{1.0, 2.0}, {2.0, 4.0}}});
  const std::string msg = error_message<LinAlgError>([&] { la::solve(a, Tensor::ones({2, 2, 1})); });
  CHECK_THAT(msg, Contains("linalg.solve") && Contains("(2,2,2)") && Contains("batch element 1") &&
                      Contains("singular"));
}

TEST_CASE("linalg.solve: non-square A and mismatched rows are ShapeErrors naming both shapes", "[linalg][errors]") {
  CHECK_THAT(error_message<ShapeError>([] { la::solve(Tensor::ones({2, 3}), Tensor::ones({2, 1})); }),
             Contains("linalg.solve") && Contains("(2,3)") && Contains("square"));
  CHECK_THAT(error_message<ShapeError>([] { la::solve(Tensor::eye(3), Tensor::ones({2, 1})); }),
             Contains("(3,3)") && Contains("(2,1)"));
}

// ---- inv, det, slogdet ---------------------------------------------------------------------

TEST_CASE("linalg.inv: a 2x2 inverse", "[linalg]") {
  require_close(la::inv(k2x2).value(), Tensor{{0.6, -0.2}, {-0.2, 0.4}}, 1e-15);
}

TEST_CASE("linalg.inv: gradcheck, batched", "[linalg][gradcheck]") {
  Generator gen(3);
  check([](std::span<const NodeRef> x) { return la::inv(x[0]); }, {well_conditioned({2, 3, 3}, gen)});
}

TEST_CASE("linalg.inv: a singular matrix is a LinAlgError", "[linalg][errors]") {
  CHECK_THAT(error_message<LinAlgError>([] { la::inv(Tensor{{1.0, 2.0}, {2.0, 4.0}}); }),
             Contains("linalg.inv") && Contains("singular"));
}

TEST_CASE("linalg.det: values, a singular matrix's 0", "[linalg]") {
  require_close(la::det(k2x2).value(), Tensor(5.0), 1e-14);
  require_close(la::det(Tensor{{1.0, 2.0}, {2.0, 4.0}}).value(), Tensor(0.0), 1e-15);
}

TEST_CASE("linalg.det: gradcheck, batched", "[linalg][gradcheck]") {
  Generator gen(4);
  check([](std::span<const NodeRef> x) { return la::det(x[0]); }, {Tensor::randn({2, 3, 3}, gen)});
}

TEST_CASE("linalg.det: the gradient at a singular matrix is its cofactor matrix", "[linalg]") {
  // det [[a, b], [c, d]] = ad - bc: gradient [[d, -c], [-b, a]], finite where A is singular.
  const Tensor a{{1.0, 2.0}, {2.0, 4.0}};
  const std::vector<Tensor> g = vjp([](std::span<const NodeRef> x) { return la::det(x[0]); }, {a}, Tensor(1.0));
  require_close(g[0], Tensor{{4.0, -2.0}, {-2.0, 1.0}}, 1e-12);
  Tensor z = Tensor::zeros({3, 3});  // rank 1: every cofactor vanishes
  z.slice(0, 0, 1).copy_(Tensor{{1.0, 2.0, 3.0}});
  require_close(vjp([](std::span<const NodeRef> x) { return la::det(x[0]); }, {z}, Tensor(1.0))[0],
                Tensor::zeros({3, 3}), 1e-12);
}

TEST_CASE("linalg.slogdet: sign and log|det|, singular as (0, -inf), gradcheck of log|det|", "[linalg][gradcheck]") {
  const auto [s, l] = la::slogdet(Tensor{{0.0, 2.0}, {1.0, 0.0}});
  CHECK(s.value().item() == -1.0);
  CHECK(l.value().item() == Approx(std::log(2.0)));
  const auto [s0, l0] = la::slogdet(Tensor{{1.0, 2.0}, {2.0, 4.0}});
  CHECK(s0.value().item() == 0.0);
  CHECK(l0.value().item() == -std::numeric_limits<double>::infinity());
  Generator gen(5);
  check([](std::span<const NodeRef> x) { return la::slogdet(x[0]).logabsdet; }, {Tensor::randn({3, 4, 4}, gen)});
}

// ---- Cholesky ------------------------------------------------------------------------------

TEST_CASE("linalg.cholesky: a 2x2 factor, upper=True its transpose", "[linalg]") {
  const Tensor a{{4.0, 2.0}, {2.0, 5.0}};
  require_close(la::cholesky(a).value(), Tensor{{2.0, 0.0}, {1.0, 2.0}}, 1e-15);
  require_close(la::cholesky(a, true).value().contiguous(), Tensor{{2.0, 1.0}, {0.0, 2.0}}, 1e-15);
}

TEST_CASE("linalg.cholesky: gradcheck through a symmetric input, batched", "[linalg][gradcheck]") {
  Generator gen(6);
  check([](std::span<const NodeRef> x) { return la::cholesky(spd(x[0])); }, {Tensor::randn({2, 4, 4}, gen)});
}

TEST_CASE("linalg.cholesky: the gradient is symmetric, as PyTorch defines it", "[linalg]") {
  Generator gen(7);
  const Tensor x = Tensor::randn({4, 4}, gen);
  const Tensor a = kernels::add(kernels::matmul_t(x, false, x, true), Tensor::eye(4));
  const Tensor g = vjp([](std::span<const NodeRef> in) { return la::cholesky(in[0]); }, {a}, Tensor::randn({4, 4}, gen))[0];
  require_close(g, g.transpose(0, 1).contiguous(), 1e-12);
}

TEST_CASE("linalg.cholesky: not positive-definite names the leading minor", "[linalg][errors]") {
  Tensor a = Tensor::zeros({2, 3, 3});
  a.slice(0, 0, 1).copy_(Tensor::eye(3).reshape({1, 3, 3}));
  a.slice(0, 1, 2).copy_(Tensor{{{1.0, 0.0, 0.0}, {0.0, 1.0, 2.0}, {0.0, 2.0, 1.0}}});
  CHECK_THAT(error_message<LinAlgError>([&] { la::cholesky(a); }),
             Contains("linalg.cholesky") && Contains("batch element 1") &&
                 Contains("the leading minor of order 3 is not positive-definite"));
}

TEST_CASE("cholesky_solve: equals solve with L L^T, gradcheck in B and through L", "[linalg][gradcheck]") {
  Generator gen(8);
  const Tensor x = Tensor::randn({2, 3, 3}, gen), b = Tensor::randn({2, 3, 2}, gen);
  const NodeRef l = la::cholesky(spd(x));
  require_close(la::cholesky_solve(b, l).value(), la::solve(spd(x), b).value(), 1e-12);
  require_close(la::cholesky_solve(b, op::transpose(l), true).value(), la::solve(spd(x), b).value(), 1e-12);
  check([](std::span<const NodeRef> in) { return la::cholesky_solve(in[1], la::cholesky(spd(in[0]))); }, {x, b});
  check([](std::span<const NodeRef> in) { return la::cholesky_solve(in[1], la::cholesky(spd(in[0]), true), true); },
        {x, b});
}

// ---- solve_triangular ------------------------------------------------------------------------

TEST_CASE("linalg.solve_triangular: values, reading one triangle only", "[linalg]") {
  const Tensor a{{2.0, 99.0}, {1.0, 4.0}};  // lower: [[2, 0], [1, 4]]
  require_close(la::solve_triangular(a, Tensor{{2.0}, {9.0}}, false).value(), Tensor{{1.0}, {2.0}}, 1e-15);
  // unitriangular: [[1, 0], [1, 1]]
  require_close(la::solve_triangular(a, Tensor{{2.0}, {9.0}}, false, true, true).value(), Tensor{{2.0}, {7.0}},
                1e-15);
}

TEST_CASE("linalg.solve_triangular: gradcheck, upper, lower, unit, left=False", "[linalg][gradcheck]") {
  Generator gen(9);
  const Tensor a = well_conditioned({2, 3, 3}, gen);
  const Tensor b = Tensor::randn({2, 3, 2}, gen), bt = Tensor::randn({2, 2, 3}, gen);
  for (bool upper : {false, true})
    for (bool unit : {false, true}) {
      INFO("upper " << upper << " unit " << unit);
      check([=](std::span<const NodeRef> x) { return la::solve_triangular(x[0], x[1], upper, true, unit); }, {a, b});
      check([=](std::span<const NodeRef> x) { return la::solve_triangular(x[0], x[1], upper, false, unit); },
            {a, bt});
    }
}

TEST_CASE("linalg.solve_triangular: left=False solves X A = B", "[linalg]") {
  Generator gen(10);
  const Tensor a = well_conditioned({3, 3}, gen), b = Tensor::randn({2, 3}, gen);
  const Tensor x = la::solve_triangular(a, b, true, false).value();
  require_close(kernels::matmul(x, upper_of(a)), b, 1e-12);
}

// ---- eigh ----------------------------------------------------------------------------------

TEST_CASE("linalg.eigh: eigenvalues ascending, orthonormal eigenvectors", "[linalg]") {
  const auto [w, v] = la::eigh(Tensor{{2.0, 1.0}, {1.0, 2.0}});
  require_close(w.value(), Tensor{1.0, 3.0}, 1e-14);
  const Tensor vv = v.value();
  CHECK(std::abs(vv.at({0, 0})) == Approx(std::sqrt(0.5)));
  CHECK(vv.at({0, 0}) * vv.at({1, 0}) == Approx(-0.5));  // (1, -1) / sqrt 2 up to sign
  CHECK(vv.at({0, 1}) * vv.at({1, 1}) == Approx(0.5));
}

TEST_CASE("linalg.eigh: gradcheck of the eigenvalues and of V diag(c) V^T", "[linalg][gradcheck]") {
  Generator gen(11);
  const Tensor x = Tensor::randn({2, 4, 4}, gen);
  check([](std::span<const NodeRef> in) { return la::eigh(sym(in[0])).eigenvalues; }, {x});
  const Tensor c = Tensor{1.0, -2.0, 3.0, 0.5}.reshape({1, 4});
  check([c](std::span<const NodeRef> in) {
    const NodeRef v = la::eigh(sym(in[0])).eigenvectors;
    return op::matmul(op::mult(v, c), op::transpose(v));
  }, {x});
}

TEST_CASE("linalg.eigh: equal eigenvalues: eigenvalue gradients defined, eigenvector ones a LinAlgError",
          "[linalg][errors]") {
  const Tensor a = Tensor::eye(3);
  const std::vector<Tensor> g =
      vjp([](std::span<const NodeRef> x) { return la::eigh(x[0]).eigenvalues; }, {a}, Tensor{1.0, 2.0, 3.0});
  CHECK(std::isfinite(g[0].at({0, 0})));
  CHECK_THAT(error_message<LinAlgError>([&] {
               vjp([](std::span<const NodeRef> x) { return op::sum(la::eigh(x[0]).eigenvectors); }, {a}, Tensor(1.0));
             }),
             Contains("linalg.eigh") && Contains("equal"));
}

// ---- svd, qr -------------------------------------------------------------------------------

TEST_CASE("linalg.svd: U diag(S) Vh reproduces A, S descending", "[linalg]") {
  Generator gen(12);
  for (const Shape& shape : {Shape{2, 5, 3}, Shape{2, 3, 5}}) {
    const Tensor a = Tensor::randn(shape, gen);
    const auto [u, s, vh] = la::svd(a);
    const std::int64_t k = 3;
    const Tensor us = kernels::mul(u.value(), s.value().reshape({2, 1, k}));
    require_close(kernels::matmul(us, vh.value()), a, 1e-12);
    CHECK(s.value().at({0, 0}) >= s.value().at({0, 1}));
  }
  require_close(la::svdvals(Tensor{{3.0, 0.0}, {0.0, -4.0}}).value(), Tensor{4.0, 3.0}, 1e-14);
}

TEST_CASE("linalg.svd: gradcheck of S, U and Vh (sign-invariant), tall, wide and square", "[linalg][gradcheck]") {
  Generator gen(13);
  for (const Shape& shape : {Shape{2, 4, 3}, Shape{2, 3, 4}, Shape{3, 3}}) {
    INFO("shape " << shape_str(shape));
    const Tensor a = Tensor::randn(shape, gen);
    check([](std::span<const NodeRef> in) { return la::svd(in[0]).S; }, {a});
    check([](std::span<const NodeRef> in) { return op::square(la::svd(in[0]).U); }, {a});
    check([](std::span<const NodeRef> in) { return op::square(la::svd(in[0]).Vh); }, {a});
    check([](std::span<const NodeRef> in) {
      const auto r = la::svd(in[0]);
      const std::int64_t k = r.S.shape().back();
      const Tensor c = kernels::add(Tensor::arange(k), Tensor(1.0)).reshape({1, k});
      return op::matmul(op::mult(r.U, c), r.Vh);
    }, {a});
  }
}

TEST_CASE("linalg.qr: Q R reproduces A, Q orthonormal, gradcheck tall, wide and square", "[linalg][gradcheck]") {
  Generator gen(14);
  for (const Shape& shape : {Shape{2, 4, 3}, Shape{2, 3, 4}, Shape{3, 3}}) {
    INFO("shape " << shape_str(shape));
    const Tensor a = Tensor::randn(shape, gen);
    const auto [q, r] = la::qr(a);
    require_close(kernels::matmul(q.value(), r.value()), a, 1e-12);
    check([](std::span<const NodeRef> in) { return la::qr(in[0]).Q; }, {a});
    check([](std::span<const NodeRef> in) { return la::qr(in[0]).R; }, {a});
  }
}

// ---- matrix_exp ----------------------------------------------------------------------------

TEST_CASE("linalg.matrix_exp: a rotation generator and a diagonal matrix", "[linalg]") {
  const double t = 0.7;
  require_close(la::matrix_exp(Tensor{{0.0, t}, {-t, 0.0}}).value(),
                Tensor{{std::cos(t), std::sin(t)}, {-std::sin(t), std::cos(t)}}, 1e-15);
  // A large norm takes the squaring path: exp(diag(10, -3)).
  const Tensor e = la::matrix_exp(Tensor{{10.0, 0.0}, {0.0, -3.0}}).value();
  CHECK(e.at({0, 0}) == Approx(std::exp(10.0)).epsilon(1e-13));
  CHECK(e.at({1, 1}) == Approx(std::exp(-3.0)).epsilon(1e-13));
  CHECK(e.at({0, 1}) == 0.0);
}

TEST_CASE("linalg.matrix_exp: gradcheck, small and large norms, batched", "[linalg][gradcheck]") {
  Generator gen(17);
  const Body f = [](std::span<const NodeRef> x) { return la::matrix_exp(x[0]); };
  check(f, {kernels::scale(Tensor::randn({2, 3, 3}, gen), 0.3)});
  check(f, {kernels::scale(Tensor::randn({2, 4, 4}, gen), 3.0)});
}

// ---- norms ---------------------------------------------------------------------------------

TEST_CASE("linalg.vector_norm and matrix_norm: values", "[linalg]") {
  const Tensor v{3.0, -4.0};
  CHECK(la::vector_norm(v).value().item() == Approx(5.0));
  CHECK(la::vector_norm(v, 1).value().item() == Approx(7.0));
  CHECK(la::vector_norm(v, INFINITY).value().item() == Approx(4.0));
  CHECK(la::vector_norm(v, -INFINITY).value().item() == Approx(3.0));
  CHECK(la::vector_norm(v, 3).value().item() == Approx(std::cbrt(91.0)));
  const Tensor m{{1.0, -2.0}, {3.0, 4.0}};
  CHECK(la::matrix_norm(m).value().item() == Approx(std::sqrt(30.0)));
  CHECK(la::matrix_norm(m, 1).value().item() == Approx(6.0));
  CHECK(la::matrix_norm(m, INFINITY).value().item() == Approx(7.0));
  const Tensor s = la::svdvals(m).value();
  CHECK(la::matrix_norm(m, "nuc").value().item() == Approx(s.at({0}) + s.at({1})));
  CHECK(la::matrix_norm(m, 2).value().item() == Approx(s.at({0})));
  CHECK(la::norm(m).value().item() == Approx(std::sqrt(30.0)));
  CHECK(la::matrix_norm(Tensor::ones({2, 3, 3}), "fro", true).value().shape() == Shape{2, 1, 1});
}

TEST_CASE("linalg.vector_norm and matrix_norm: gradcheck", "[linalg][gradcheck]") {
  Generator gen(15);
  const Tensor x = Tensor::randn({2, 3, 4}, gen);
  for (double ord : {2.0, 1.0, 3.0, double(INFINITY)}) {
    INFO("ord " << ord);
    check([ord](std::span<const NodeRef> in) { return la::vector_norm(in[0], ord, {-1}); }, {x});
    check([ord](std::span<const NodeRef> in) { return la::vector_norm(in[0], ord, {0, 2}, true); }, {x});
  }
  check([](std::span<const NodeRef> in) { return la::matrix_norm(in[0], "fro"); }, {x});
  check([](std::span<const NodeRef> in) { return la::matrix_norm(in[0], "nuc"); }, {x});
  check([](std::span<const NodeRef> in) { return la::matrix_norm(in[0], 2.0); }, {x});
}

TEST_CASE("linalg: float32 operands give float32 results close to float64's", "[linalg]") {
  Generator gen(16);
  const Tensor a = well_conditioned({2, 3, 3}, gen), b = Tensor::randn({2, 3, 2}, gen);
  const Tensor x32 = la::solve(a.to(DType::Float32), b.to(DType::Float32)).value();
  CHECK(x32.dtype() == DType::Float32);
  REQUIRE(allclose(x32.to(DType::Float64), la::solve(a, b).value(), 1e-4, 1e-5));
  const Tensor w32 = la::eigvalsh(a.to(DType::Float32)).value();
  CHECK(w32.dtype() == DType::Float32);
}
