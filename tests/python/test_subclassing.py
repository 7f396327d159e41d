"""Python subclasses of cg.Module and cg.Operator: submodules as attributes, registered
parameters, operators with their own VJP or complex-step derivatives, gradcheck, and a
training loop written by hand."""
import numpy as np
import pytest

from zkynet.framework import cg, op


class Linear(cg.Module):
    def __init__(self, n_in, n_out, rng=None):
        super().__init__(inputs=(cg.Variable("x"),))
        rng = rng if rng is not None else np.random.default_rng(0)
        self.weight = self.register_parameter("weight", rng.normal(size=(n_in, n_out)))
        self.bias = self.register_parameter("bias", np.zeros(n_out))

    def call(self, x):
        return op.add(op.matmul(x, self.weight), self.bias)


class MLP(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.l1 = Linear(3, 4)
        self.l2 = Linear(4, 1)

    def call(self, x):
        return self.l2(op.tanh(self.l1(x)))


class Encoder(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("scale", 2.0),))
        self.mlp = MLP()

    def call(self, x):
        return op.mult(self.param("scale"), self.mlp(x))


class SquaredError(cg.Module):
    def __init__(self, model):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y")))
        self.model = model

    def call(self, x, y):
        return op.mean(op.square(op.sub(self.model(x), y)))


class OneInputModule(cg.Module):
    """Applies a given operator instance to its one input."""

    def __init__(self, operator):
        super().__init__(inputs=(cg.Variable("x"),))
        self.operator = operator

    def call(self, x):
        return self.operator(x)


def grad_of_input(operator, x, seed=None):
    m = OneInputModule(operator)
    result = m(x)
    result.back(seed)
    return result.grad(m.input("x"))


# ---- submodules and parameters -----------------------------------------------------------------

def test_named_parameters_of_submodule_attributes_are_dotted():
    assert [name for name, _ in MLP().named_parameters()] == ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]


def test_named_parameters_are_recursive_with_own_parameters_first():
    assert [name for name, _ in Encoder().named_parameters()] == [
        "scale", "mlp.l1.weight", "mlp.l1.bias", "mlp.l2.weight", "mlp.l2.bias"]


def test_parameters_lists_every_parameter_of_the_tree():
    params = MLP().parameters()
    assert [p.shape for p in params] == [(3, 4), (4,), (4, 1), (1,)]


def test_a_submodule_held_twice_lists_its_parameters_once():
    class Twice(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))
            self.first = Linear(2, 2)
            self.again = self.first

        def call(self, x):
            return self.again(self.first(x))

    assert len(Twice().parameters()) == 2


def test_submodule_parameters_are_the_ones_the_graph_differentiates():
    m = MLP()
    r = SquaredError(m)(np.ones((5, 3)), np.zeros((5, 1)))
    r.back()
    named = dict(m.named_parameters())
    assert named["l1.weight"].grad.shape == (3, 4)
    np.testing.assert_array_equal(named["l2.bias"].grad, r.grad(m.l2.param("bias")))


def test_register_parameter_returns_the_parameter_found_by_name():
    layer = Linear(2, 3)
    assert layer.weight == layer.param("weight")
    np.testing.assert_array_equal(layer.param("bias").value, np.zeros(3))


def test_register_parameter_copies_its_value():
    source = np.ones(3)

    class Holder(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))
            self.register_parameter("p", source)

        def call(self, x):
            return op.mult(x, self.param("p"))

    holder = Holder()
    source[:] = 7.
    np.testing.assert_array_equal(holder.param("p").value, np.ones(3))


def test_registered_parameter_receives_gradients():
    layer = Linear(2, 1)
    x = np.array([[1., 2.], [3., 4.]])
    result = layer(x)
    result.back(np.ones((2, 1)))
    np.testing.assert_allclose(layer.weight.grad, x.T @ np.ones((2, 1)))
    np.testing.assert_allclose(layer.bias.grad, [2.])


def test_registering_a_parameter_name_twice_is_refused():
    layer = Linear(2, 1)
    with pytest.raises(RuntimeError, match="registered twice"):
        layer.register_parameter("weight", np.zeros((2, 1)))


def test_module_functional_name_is_its_class_name():
    layer = Linear(2, 1)
    assert layer.functional_name == "Linear"
    assert layer.param("weight").functional_name == "Linear.weight"


def test_submodule_name_is_its_attribute_name():
    assert MLP().l2.name == "l2"


def test_a_module_cannot_contain_a_module_that_contains_it():
    outer, inner = MLP(), MLP()
    outer.inner = inner
    with pytest.raises(RuntimeError, match="contain itself"):
        inner.outer = outer


def test_reassigning_a_submodule_attribute_replaces_it():
    m = MLP()
    m.l2 = Linear(4, 2)
    assert [p.shape for p in m.parameters()] == [(3, 4), (4,), (4, 2), (2,)]


def test_zero_grad_clears_accumulated_gradients():
    m = MLP()
    loss = SquaredError(m)
    loss(np.ones((2, 3)), np.ones((2, 1))).back()
    m.zero_grad()
    for _, p in m.named_parameters():
        np.testing.assert_array_equal(p.grad, np.zeros(p.shape))


# ---- Python operators --------------------------------------------------------------------------

class ReluWithVjp(cg.Operator):
    """np.maximum is refused by the complex step; an own vjp makes it differentiable."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.vjp_calls = 0

    def _op_impl(self, x):
        return np.maximum(x, 0)

    def vjp(self, grad, output, x):
        self.vjp_calls += 1
        return (grad * (x > 0),)


class Cube(cg.Operator):
    """x^3, counting its evaluations."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.evaluations = 0

    def _op_impl(self, x):
        self.evaluations += 1
        return x * x * x


class ElementwiseCube(Cube):
    elementwise = True


class ScaledSin(cg.Operator):
    elementwise = True

    def __init__(self):
        super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")))

    def _op_impl(self, a, b):
        return b * np.sin(a)


class Softplus(cg.Operator):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def _op_impl(self, x):
        return np.log1p(np.exp(x))


class Bilinear(cg.Operator):
    """a^T M b with np.dot and np.sum: a non-elementwise operator of three inputs."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("a"), cg.Variable("m"), cg.Variable("b")))

    def _op_impl(self, a, m, b):
        return np.sum(np.dot(np.dot(a, m), b))


class WrongVjpSquare(cg.Operator):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def _op_impl(self, x):
        return x * x

    def vjp(self, grad, output, x):
        return (grad * x,)  # should be 2x


def non_analytic(impl, name):
    return type(name, (cg.Operator,), {
        "__init__": lambda self: cg.Operator.__init__(self, inputs=(cg.Variable("x"),)),
        "_op_impl": lambda self, x: impl(x),
    })


def test_operator_with_own_vjp_uses_it():
    relu = ReluWithVjp()
    grad = grad_of_input(relu, np.array([-1., 2., 3.]), seed=np.ones(3))
    assert relu.vjp_calls == 1
    np.testing.assert_array_equal(grad, [0., 1., 1.])


def test_operator_with_own_vjp_computes_its_forward():
    assert np.array_equal(ReluWithVjp()(np.array([-1., 2.])).value, [0., 2.])


def test_complex_step_derivative_is_exact():
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(grad_of_input(Softplus(), x, seed=np.ones(3)), 1 / (1 + np.exp(-x)),
                               rtol=1e-14, atol=0)


def test_non_elementwise_operator_evaluates_once_per_input_element():
    cube = Cube()
    grad = grad_of_input(cube, np.array([1., 2., 3., 4., 5.]), seed=np.ones(5))
    np.testing.assert_allclose(grad, 3 * np.array([1., 4., 9., 16., 25.]), rtol=1e-14)
    assert cube.evaluations == 1 + 5


def test_elementwise_operator_evaluates_once_per_input():
    cube = ElementwiseCube()
    grad = grad_of_input(cube, np.array([1., 2., 3., 4., 5.]), seed=np.ones(5))
    np.testing.assert_allclose(grad, 3 * np.array([1., 4., 9., 16., 25.]), rtol=1e-14)
    assert cube.evaluations == 1 + 1


def test_elementwise_operator_full_jacobian_is_diagonal():
    grad = grad_of_input(ElementwiseCube(), np.array([1., 2.]))
    np.testing.assert_allclose(grad, np.diag([3., 12.]), rtol=1e-14, atol=0)


def test_elementwise_operator_reduces_a_broadcast_operand_gradient():
    class M(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")))

        def call(self, a, b):
            return ScaledSin()(a, b)

    a, b = np.array([0.1, 0.2, 0.3]), 2.0
    m = M()
    result = m(a, b)
    result.back(np.ones(3))
    np.testing.assert_allclose(result.grad(m.input("a")), b * np.cos(a), rtol=1e-14)
    assert result.grad(m.input("b")).shape == ()
    assert result.grad(m.input("b")) == pytest.approx(np.sum(np.sin(a)), rel=1e-14)


def test_operator_of_three_inputs_gives_each_gradient():
    rng = np.random.default_rng(3)
    a, mat, b = rng.normal(size=3), rng.normal(size=(3, 2)), rng.normal(size=2)

    class M(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("a"), cg.Variable("m"), cg.Variable("b")))

        def call(self, a, m, b):
            return Bilinear()(a, m, b)

    m = M()
    result = m(a, mat, b)
    result.back()
    np.testing.assert_allclose(result.grad(m.input("a")), mat @ b, rtol=1e-13)
    np.testing.assert_allclose(result.grad(m.input("m")), np.outer(a, b), rtol=1e-13)
    np.testing.assert_allclose(result.grad(m.input("b")), a @ mat, rtol=1e-13)


def test_float32_operator_gets_float32_gradients():
    grad = grad_of_input(Softplus(), np.array([0.5, -1.0], dtype=np.float32), seed=np.ones(2, dtype=np.float32))
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-np.array([0.5, -1.0]))), rtol=1e-6)


def test_operator_called_at_top_level_grounds_its_own_graph():
    cube = Cube()
    result = cube(2.)
    result.back()
    assert result.value == 8.
    assert result.grad(cube.input("x")) == pytest.approx(12., rel=1e-14)


@pytest.mark.parametrize("impl, ufunc", [
    (np.abs, "absolute"),
    (lambda x: np.maximum(x, 0), "maximum"),
    (np.sign, "sign"),
    (lambda x: np.where(x > 0, x, 0 * x), "greater"),
    (np.floor, "floor"),
], ids=["abs", "maximum", "sign", "comparison", "floor"])
def test_non_analytic_operator_is_refused_when_differentiated(impl, ufunc):
    operator = non_analytic(impl, "Kinked")()
    with pytest.raises(TypeError, match=rf"Kinked: _op_impl uses numpy\.{ufunc}, which is not analytic.*define vjp"):
        grad_of_input(operator, np.array([1., -2.]), seed=np.ones(2))


def test_non_analytic_operator_still_computes_its_forward():
    m = OneInputModule(non_analytic(np.abs, "Abs")())
    np.testing.assert_array_equal(m(np.array([1., -2.])).value, [1., 2.])


def test_operator_dropping_the_imaginary_part_is_refused():
    operator = non_analytic(lambda x: np.real(x) * 2, "Real")()
    with pytest.raises(TypeError, match="Real: _op_impl dropped the imaginary part"):
        grad_of_input(operator, np.array([1., 2.]), seed=np.ones(2))


def test_gradcheck_passes_on_a_python_operator():
    ok, message = cg.gradcheck(lambda a, m, b: Bilinear()(a, m, b),
                               [np.array([1., -2.]), np.array([[0.5, 1.], [2., -1.]]), np.array([3., 0.25])])
    assert ok, message


def test_gradcheck_passes_on_a_python_operator_with_own_vjp():
    ok, message = cg.gradcheck(lambda x: ReluWithVjp()(x), [np.array([-1.5, 0.5, 2.0])])
    assert ok, message


def test_gradcheck_fails_on_a_wrong_vjp():
    ok, message = cg.gradcheck(lambda x: WrongVjpSquare()(x), [np.array([1., 2.])])
    assert not ok
    assert message


# ---- training loop -----------------------------------------------------------------------------

def test_hand_written_sgd_recovers_linear_regression_weights():
    rng = np.random.default_rng(0)
    true_w, true_b = np.array([[1.5], [-2.0], [0.5]]), np.array([0.25])
    x = rng.normal(size=(200, 3))
    y = x @ true_w + true_b
    model = Linear(3, 1, rng)
    loss_module = SquaredError(model)
    lr = 0.1
    losses = []
    for _ in range(300):
        r = loss_module(x, y)
        model.zero_grad()
        r.back()
        for p in model.parameters():
            p._add_(-lr * p.grad)
        losses.append(float(r.value))
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(model.weight.value, true_w, atol=1e-3)
    np.testing.assert_allclose(model.bias.value, true_b, atol=1e-3)


def test_hand_written_sgd_decreases_the_loss_of_an_mlp():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3))
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:2]
    model = MLP()
    loss_module = SquaredError(model)
    first = None
    for _ in range(200):
        r = loss_module(x, y)
        model.zero_grad()
        r.back()
        for p in model.parameters():
            p._add_(-0.05 * p.grad)
        first = float(r.value) if first is None else first
    assert float(r.value) < 0.5 * first
