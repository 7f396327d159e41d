"""cg.custom_vjp (JAX's interface), op.stop_gradient / detach and non-differentiable arguments
(Yota's @nodiff): values and gradients against hand-computed numbers and PyTorch, gradcheck,
the one node a rule records, and the errors that spell out the rule to write."""
import numpy as np
import pytest

from zkynet.framework import cg, op
from zkynet.visual import to_dot


def _stable_log1pexp(x):
    return op.relu(x) + op.log(op.exp(-op.abs(x)) + 1.0)


def make_log1pexp():
    @cg.custom_vjp
    def log1pexp(x):
        return op.log(op.exp(x) + 1.0)

    def fwd(x):
        return _stable_log1pexp(x), np.asarray(x.value)

    def bwd(x, grad):
        return (grad * np.exp(-np.logaddexp(0.0, -x)),)  # grad * sigmoid(x), without overflow

    log1pexp.defvjp(fwd, bwd)
    return log1pexp


def test_a_rule_gives_finite_gradients_where_the_plain_formula_gives_nan():
    log1pexp = make_log1pexp()
    x = np.array([-1000.0, 0.0, 1000.0])
    g = cg.grad(lambda a: op.sum(log1pexp(a)))(x)
    np.testing.assert_allclose(g, [0.0, 0.5, 1.0], atol=1e-15)
    with np.errstate(over="ignore", invalid="ignore"):
        plain = cg.grad(lambda a: op.sum(op.log(op.exp(a) + 1.0)))(x)
    assert np.isnan(plain[2])


def test_a_rule_matches_torch_softplus_in_value_and_gradient():
    torch = pytest.importorskip("torch")
    log1pexp = make_log1pexp()
    x = np.linspace(-30, 30, 13)
    value, g = cg.value_and_grad(lambda a: op.sum(log1pexp(a)))(x)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.softplus(t, threshold=1e9).sum()
    ref.backward()
    assert float(value) == pytest.approx(float(ref), rel=1e-14)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14, atol=1e-300)


def test_a_rule_passes_gradcheck():
    log1pexp = make_log1pexp()
    ok, message = cg.gradcheck(lambda a: log1pexp(a), [np.random.default_rng(2).normal(size=(3, 4))])
    assert ok, message


def test_a_rule_records_one_node_named_by_the_rule_in_dot():
    log1pexp = make_log1pexp()

    class Model(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return log1pexp(x)

    graph = Model()(np.array([1.0, 2.0]))
    dot = to_dot(graph)
    assert "log1pexp" in dot
    assert dot.count("exp") == dot.count("log1pexp")  # no exp/log nodes of fn: one node


def test_outside_a_graph_the_function_itself_runs():
    calls = []

    @cg.custom_vjp
    def square(x):
        calls.append(1)
        return op.square(x)

    square.defvjp(lambda x: (op.square(x), x), lambda x, g: (2 * g,))
    assert float(square(3.0).value) == 9.0
    assert calls == [1]


def test_straight_through_estimator():
    @cg.custom_vjp
    def binarize(x):
        return op.where(op.greater(x, 0.0), 1.0, -1.0)

    binarize.defvjp(lambda x: (binarize.fn(x), np.asarray(x.value)),
                    lambda x, g: (np.where(np.abs(x) <= 1, g, 0.0),))
    x = np.array([-2.0, -0.5, 0.25, 3.0])
    value, g = cg.value_and_grad(lambda a: op.sum(binarize(a) * 3.0))(x)
    assert float(value) == 0.0
    np.testing.assert_array_equal(g, [0.0, 3.0, 3.0, 0.0])


def test_a_rule_can_clip_the_gradient_in_the_backward_pass():
    clip = cg.custom_vjp(lambda x: x, name="clip_gradient")
    clip.defvjp(lambda x: (x, None), lambda _, g: (op.clamp(g, -1.0, 1.0),))  # a node works as a gradient
    g = cg.grad(lambda a: op.sum(op.square(clip(a)) * 5.0))(np.array([-2.0, 0.05, 3.0]))
    np.testing.assert_allclose(g, [-1.0, 0.5, 1.0])


def test_non_differentiable_arguments_of_a_rule_get_no_gradient():
    scaled = cg.custom_vjp(lambda a, b: a * b, name="scaled", nondiff_argnums=(1,))
    scaled.defvjp(lambda a, b: (a * b, (np.asarray(a.value), np.asarray(b.value))),
                  lambda r, g: (g * r[1], g * r[0]))
    ga, gb = cg.grad(lambda a, b: op.sum(scaled(a, b)), argnums=(0, 1))(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_array_equal(ga, [3.0, 4.0])
    np.testing.assert_array_equal(gb, [0.0, 0.0])


def test_a_python_operator_may_declare_non_differentiable_arguments():
    class Power(cg.Operator):
        nondiff = (1,)

        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"), cg.Variable("k")))

        def _op_impl(self, x, k):
            return np.power(x, k)

    power = Power()
    gx, gk = cg.grad(lambda x, k: op.sum(power(x, k)), argnums=(0, 1))(np.array([2.0, 3.0]), np.array([3.0, 2.0]))
    np.testing.assert_allclose(gx, [12.0, 6.0], rtol=1e-12)
    np.testing.assert_array_equal(gk, [0.0, 0.0])


def test_a_rule_used_in_a_graph_before_defvjp_spells_out_the_rule():
    @cg.custom_vjp
    def my_rule(x, y):
        return x * y

    with pytest.raises(Exception) as info:
        cg.grad(lambda a, b: op.sum(my_rule(a, b)))(np.array([1.0]), np.array([2.0]))
    message = str(info.value)
    assert "custom_vjp 'my_rule' has no derivative rule" in message
    assert "def my_rule_fwd(x, y):" in message
    assert "def my_rule_bwd(residuals, grad):" in message
    assert "return (grad_x, grad_y, )" in message


def test_a_backward_rule_with_the_wrong_number_of_gradients_is_refused():
    f = cg.custom_vjp(lambda a, b: a * b, name="short")
    f.defvjp(lambda a, b: (a * b, None), lambda r, g: (g,))
    with pytest.raises(Exception, match=r"custom_vjp 'short': bwd returned 1 gradient\(s\) for 2 argument\(s\)"):
        cg.grad(lambda a, b: op.sum(f(a, b)))(np.array([1.0]), np.array([2.0]))


def test_fwd_must_return_a_pair():
    f = cg.custom_vjp(lambda a: a * 2.0, name="unpaired")
    f.defvjp(lambda a: a * 2.0, lambda r, g: (g,))
    with pytest.raises(TypeError, match="unpaired: fwd must return a pair"):
        cg.grad(lambda a: op.sum(f(a)))(np.array([1.0]))


def test_a_non_analytic_python_operator_names_the_vjp_to_write():
    class Clip(cg.Operator):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")))

        def _op_impl(self, a, b):
            return np.maximum(a, b)

    clip = Clip()
    with pytest.raises(TypeError, match=r"def vjp\(self, grad, output, a, b\):\s+return \(grad_a, grad_b, \)"):
        cg.grad(lambda a, b: op.sum(clip(a, b)))(np.array([1.0]), np.array([2.0]))


def test_stop_gradient_and_detach_stop_the_gradient():
    x = np.array([1.5, -2.0])
    g = cg.grad(lambda a: op.sum(a * cg.stop_gradient(a)))(x)
    np.testing.assert_array_equal(g, x)
    g = cg.grad(lambda a: op.sum(a * a.detach()))(x)
    np.testing.assert_array_equal(g, x)
    g = cg.grad(lambda a: op.sum(op.detach(a) * 2.0))(x)
    np.testing.assert_array_equal(g, [0.0, 0.0])


def test_stop_gradient_matches_torch_detach():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=5)
    g = cg.grad(lambda a: op.sum(op.square(a) * op.stop_gradient(op.exp(a))))(x)
    t = torch.tensor(x, requires_grad=True)
    (t.square() * t.exp().detach()).sum().backward()
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-15)
