"""Python's operators on nodes, graphs and parameters; losses outside a module; the function
transforms (cg.grad & co.) and the Jacobian limit. Values are hand-computed or checked against
the op.* calls the operators stand for."""
import numpy as np
import pytest

from zkynet import nn
from zkynet.framework import cg, op


class Affine(cg.Module):
    """y = x * w + b, written with Python's operators."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),),
                         params=(cg.Parameter("w", np.array([1.0, 2.0, 3.0])), cg.Parameter("b", 0.5)))

    def call(self, x):
        return x * self.param("w") + self.param("b")


X = np.array([1.0, -2.0, 3.0])


def test_arithmetic_operators_record_the_op_functions():
    m = Affine()
    g = m(X)
    np.testing.assert_allclose(g.value, X * [1, 2, 3] + 0.5)
    assert g.root.label == "add"
    h = op.sum(g)
    graph = h.back()
    np.testing.assert_allclose(graph.grad(m.param("w")), X)
    np.testing.assert_allclose(graph.grad(m.param("b")), 3.0)


@pytest.mark.parametrize("expr, want", [
    (lambda a, b: a + b, lambda a, b: a + b),
    (lambda a, b: a - b, lambda a, b: a - b),
    (lambda a, b: a * b, lambda a, b: a * b),
    (lambda a, b: a / b, lambda a, b: a / b),
    (lambda a, b: a ** b, lambda a, b: a ** b),
    (lambda a, b: 2.0 - a, lambda a, b: 2.0 - a),
    (lambda a, b: 3.0 / a, lambda a, b: 3.0 / a),
    (lambda a, b: 2.0 ** a, lambda a, b: 2.0 ** a),
    (lambda a, b: a ** 2, lambda a, b: a ** 2),
    (lambda a, b: -a, lambda a, b: -a),
    (lambda a, b: +a, lambda a, b: +a),
    (lambda a, b: abs(a - 1.5), lambda a, b: abs(a - 1.5)),
    (lambda a, b: np.array([1.0, 2.0, 4.0]) * a, lambda a, b: np.array([1.0, 2.0, 4.0]) * a),
])
def test_operators_on_nodes_compute_as_numpy(expr, want):
    a = np.array([0.5, 1.0, 2.0])
    b = np.array([2.0, 3.0, 0.5])
    x = op.mult(a, 1.0)  # a constant node
    y = op.mult(b, 1.0)
    np.testing.assert_allclose(expr(x, y).value, want(a, b))


def test_matmul_and_transpose_operators():
    a = np.arange(6.0).reshape(2, 3)
    x = op.mult(a, 1.0)
    np.testing.assert_allclose((x @ x.T).value, a @ a.T)
    np.testing.assert_allclose((a.T @ x).value, a.T @ a)
    assert x.T.shape == (3, 2)


def test_comparisons_give_masks_in_the_values_dtype():
    x = op.mult(np.array([-1.0, 0.0, 2.0]), 1.0)
    np.testing.assert_array_equal((x > 0).value, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal((x >= 0).value, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal((x < 0).value, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal((x <= 0).value, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(op.equal(x, 0.0).value, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(op.not_equal(x, 0.0).value, [1.0, 0.0, 1.0])


def test_equality_of_nodes_stays_identity():
    x = op.mult(np.array([1.0]), 1.0)
    assert x == x
    assert not (x == op.mult(np.array([1.0]), 1.0))


def test_a_mask_passes_no_gradient():
    m = Affine()
    g = m(X)
    relu_like = op.sum(g * (g > 0))
    graph = relu_like.back()
    np.testing.assert_allclose(graph.grad(m.param("w")), np.where(X * [1, 2, 3] + 0.5 > 0, X, 0.0))


@pytest.mark.parametrize("key", [
    0, -1, slice(1, 3), (slice(None), 1), (0, slice(None, None, 2)), (Ellipsis, 1), (None, 0),
    [2, 0, 2], np.array([[1, 0], [0, 1]]), (slice(None), [3, 0]), (1, Ellipsis, None), (-2, [1, 1]),
])
def test_indexing_matches_numpy(key):
    a = np.arange(12.0).reshape(3, 4)
    x = op.mult(a, 1.0)
    np.testing.assert_array_equal(x[key].value, a[key])
    assert x[key].shape == a[key].shape


def test_indexing_differentiates_like_the_op_functions():
    class Pick(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return op.sum(x[:, 1:3] * 2.0) + op.sum(x[[0, 0]])

    m = Pick()
    g = m(np.arange(6.0).reshape(2, 3))
    g.back()
    np.testing.assert_allclose(g.grad(m.input("x")), [[2.0, 4.0, 4.0], [0.0, 2.0, 2.0]])


@pytest.mark.parametrize("key, error, text", [
    (5, IndexError, "index 5 is out of bounds for dimension 0 with size 3"),
    ((0, 0, 0), IndexError, "too many indices"),
    (np.array([True, False, True]), IndexError, "boolean masks"),
    (slice(None, None, -1), ValueError, "slice steps must be positive"),
    (([0], [1]), IndexError, "one integer-array index"),
    ([0, 7], IndexError, "index 7 is out of bounds"),
])
def test_bad_indices_are_refused_with_a_clear_error(key, error, text):
    x = op.mult(np.arange(12.0).reshape(3, 4), 1.0)
    with pytest.raises(error, match=text):
        x[key]


def test_shape_ndim_len_dtype_on_nodes_graphs_and_parameters():
    m = Affine()
    g = m(X)
    assert (g.shape, g.ndim, len(g), g.dtype) == ((3,), 1, 3, "float64")
    assert (g.root.ndim, len(g.root)) == (1, 3)
    w = m.param("w")
    assert (w.shape, w.ndim, len(w)) == ((3,), 1, 3)
    with pytest.raises(TypeError, match="0-d"):
        len(op.sum(g))


def test_a_loss_outside_the_module_extends_its_graph_and_back_reaches_the_parameters():
    net = nn.Linear(3, 2)
    x = np.ones((4, 3), dtype=np.float32)
    loss = op.mse_loss(net(x), np.zeros((4, 2), dtype=np.float32))
    graph = loss.back()
    assert isinstance(graph, cg.ModuleGraph)
    w = dict(net.named_parameters())["weight"]
    assert w.grad is not None and w.grad.shape == (2, 3)
    np.testing.assert_allclose(graph.grad(w), w.grad)


def test_a_graph_can_be_made_from_a_node_and_read_like_a_call():
    m = Affine()
    loss = op.sum(m(X) ** 2)
    graph = cg.ModuleGraph(loss)
    graph.back()
    np.testing.assert_allclose(graph.grad(m.param("w")), 2 * (X * [1, 2, 3] + 0.5) * X)
    assert graph.value == pytest.approx(float(np.sum((X * [1, 2, 3] + 0.5) ** 2)))


def test_a_graph_of_a_constant_is_refused():
    with pytest.raises(RuntimeError, match="constant"):
        cg.ModuleGraph(op.mult(np.ones(2), 2.0))


# ---- function transforms -----------------------------------------------------------------

def f(a, b):
    return op.sum(a * op.exp(b))


A, B = np.array([1.0, 2.0]), np.array([0.0, 1.0])


def test_grad_of_argument_0_by_default():
    np.testing.assert_allclose(cg.grad(f)(A, B), np.exp(B))


def test_grad_with_a_tuple_of_argnums_returns_a_tuple():
    da, db = cg.grad(f, argnums=(0, 1))(A, B)
    np.testing.assert_allclose(da, np.exp(B))
    np.testing.assert_allclose(db, A * np.exp(B))


def test_value_and_grad():
    value, db = cg.value_and_grad(f, argnums=1)(A, B)
    assert float(value) == pytest.approx(float(np.sum(A * np.exp(B))))
    np.testing.assert_allclose(db, A * np.exp(B))


def test_jacobian_has_the_output_then_the_argument_shape():
    j = cg.jacobian(lambda a: a ** 2)(np.array([1.0, -3.0]))
    np.testing.assert_allclose(j, [[2.0, 0.0], [0.0, -6.0]])


def test_vjp_returns_the_value_and_a_reusable_pullback():
    value, pullback = cg.vjp(lambda a, b: a * b, A, B)
    np.testing.assert_allclose(value, A * B)
    da, db = pullback(np.array([1.0, 2.0]))
    np.testing.assert_allclose(da, B * [1.0, 2.0])
    np.testing.assert_allclose(db, A * [1.0, 2.0])
    np.testing.assert_allclose(pullback(np.array([0.0, 1.0]))[0], [0.0, 1.0])


def test_grad_of_a_non_scalar_function_points_to_jacobian_and_vjp():
    with pytest.raises(Exception, match="jacobian"):
        cg.grad(lambda a: a * 2.0)(A)


def test_grad_names_a_missing_argument():
    with pytest.raises(ValueError, match="argnums names argument 3 of a call with 2 arguments"):
        cg.grad(f, argnums=3)(A, B)


def test_transforms_leave_parameters_gradients_alone():
    m = Affine()
    g = cg.grad(lambda x: op.sum(m(x)))(X)
    np.testing.assert_allclose(g, [1.0, 2.0, 3.0])
    assert m.param("w").grad is None


def test_a_python_exception_in_the_function_reaches_the_caller():
    def broken(a):
        raise KeyError("inside")
    with pytest.raises(KeyError, match="inside"):
        cg.grad(broken)(A)


def test_back_refuses_a_jacobian_over_the_limit_and_says_how_to_get_a_vjp():
    old = cg.jacobian_limit()
    try:
        cg.set_jacobian_limit(10)
        g = Affine()(X)
        with pytest.raises(RuntimeError, match=r"back\(seed\)"):
            g.back()
        g.back(np.ones(3))
        cg.set_jacobian_limit(0)
        g.back()
        assert g.grad(g.root).shape == (3, 3)
    finally:
        cg.set_jacobian_limit(old)
    assert cg.jacobian_limit() == 2 ** 26


def test_gradcheck_in_float32_and_its_explanation_for_float32_parameters():
    net = nn.Linear(2, 1)
    ok, message = cg.gradcheck(lambda x: net(x), [np.ones((1, 2), dtype=np.float32)], eps=1e-3, rtol=1e-2,
                               atol=1e-3, dtype="float32")
    assert ok, message
    with pytest.raises(TypeError, match="float64"):
        cg.gradcheck(lambda x: net(x), [np.ones((1, 2))])
