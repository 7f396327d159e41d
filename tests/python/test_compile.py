"""cg.compile: capture and replay from Python. Replays equal dynamic calls bit for bit, run no
Python, capture again for a new signature; the footguns (control flow on values, frozen
constants, overwritten outputs, item() during capture, state outside the graph) each a test."""
import numpy as np
import pytest

from zkynet import nn, optim
from zkynet.framework import cg, op
from zkynet.visual import to_dot


class SimpleModel(cg.Module):
    def __init__(self, w0=1.0):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", w0),))

    def call(self, x):
        return op.mult(op.add(x, self.param("w")), op.square(x))


class Regression(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y")))
        self.model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
        self.calls = 0

    def call(self, x, y):
        self.calls += 1  # Python runs only when a call is traced
        return op.cross_entropy(self.model(x), y)


def test_a_compiled_module_replays_with_values_and_gradients_as_documented():
    m = SimpleModel()
    fast = cg.compile(m)
    g = fast(3.0)
    g.back()
    assert float(g.value) == 36 and float(g.grad(m.param("w"))) == 9 and float(g.grad(m.input("x"))) == 33
    g2 = fast(x=4.0)
    g2.back()
    assert float(g2.value) == 80 and float(g2.grad(m.param("w"))) == 16 and float(g2.grad(fast.input("x"))) == 56
    assert g2.call_id == g.call_id  # the same tape
    assert fast.stats == {"captures": 1, "replays": 1, "dynamic": 0, "evictions": 0}


def test_replays_run_no_python_and_equal_dynamic_calls_bit_for_bit_over_training_steps():
    nn.manual_seed(3)
    rng = np.random.default_rng(3)
    m = Regression()
    fast = cg.compile(m)
    opt = optim.SGD(m.parameters(), lr=0.1)
    names = [n for n, _ in m.named_parameters()]
    for step in range(5):
        x = rng.standard_normal((8, 5)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        d = m(x, y)
        d.back()
        dynamic = [np.array(d.value)] + [np.array(d.grad(m.param(n))) for n in names]
        calls = m.calls
        r = fast(x, y)
        opt.zero_grad()
        r.back()
        assert m.calls == calls + (1 if step == 0 else 0)
        replay = [np.array(r.value)] + [np.array(r.grad(m.param(n))) for n in names]
        for a, b in zip(dynamic, replay):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        opt.step()
    assert fast.stats["captures"] == 1 and fast.stats["replays"] == 4


def test_a_function_of_nodes_compiles():
    fast = cg.compile(lambda a, b: op.sum(a * op.exp(b)))
    a, b = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    g = fast(a, b)
    g = fast(a * 2, b)
    g.back()
    np.testing.assert_allclose(float(g.value), np.sum(2 * a * np.exp(b)))
    np.testing.assert_allclose(g.grad(fast.input("a")), np.exp(b))
    np.testing.assert_allclose(g.grad(fast.input("b")), 2 * a * np.exp(b))
    assert fast.stats["replays"] == 1
    with pytest.raises(TypeError, match="fixed positional"):
        cg.compile(lambda *xs: xs[0])


def test_a_new_signature_captures_again():
    m = SimpleModel()
    fast = cg.compile(m, cache_size=2)
    fast(3.0)
    fast(np.array([1.0, 2.0]))            # shape
    fast(np.float32(3.0))                 # dtype
    assert fast.stats["captures"] == 3 and fast.stats["evictions"] == 1
    m.eval()                              # mode
    fast(3.0)
    m.child = SimpleModel()               # structure: a submodule assigned
    fast(3.0)
    assert fast.stats["captures"] == 5
    assert "eval" in fast.last.signature


def test_the_schedule_prints_and_draws():
    m = SimpleModel()
    fast = cg.compile(m)
    fast(np.array([3.0, 4.0]))
    text = fast.last.text()
    assert "%2 = add(%0, %1)  (2,) float64" in text
    assert len(text.splitlines()) == fast.last.size + 1
    assert str(fast.last) == text
    assert "digraph" in to_dot(fast.last.graph)


def test_footgun_control_flow_on_values_replays_the_captured_branch_unless_check():
    def branchy(x):
        return x * x if float(x.value) > 0 else x + x

    fast = cg.compile(branchy)
    assert float(fast(2.0).value) == 4
    assert float(fast(-3.0).value) == 9   # the captured branch, silently
    checked = cg.compile(branchy, check=True)
    checked(2.0)
    checked(5.0)
    with pytest.raises(RuntimeError, match=r"differs from the captured schedule at node %1"):
        checked(-3.0)


def test_footgun_python_constants_are_frozen_at_capture():
    class Scaled(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))
            self.scale = 2.0

        def call(self, x):
            return x * self.scale

    m = Scaled()
    fast = cg.compile(m)
    assert float(fast(3.0).value) == 6
    m.scale = 5.0
    assert float(fast(3.0).value) == 6   # frozen
    fast.clear()
    assert float(fast(3.0).value) == 15
    checked = cg.compile(m, check=True)
    checked(3.0)
    m.scale = 7.0
    with pytest.raises(RuntimeError, match="value frozen at capture differs"):
        checked(3.0)


def test_footgun_outputs_are_overwritten_by_the_next_replay_unless_copied():
    fast = cg.compile(SimpleModel())
    first = fast(3.0)
    kept = np.array(first.value)          # a copy
    fast(4.0)
    assert float(first.value) == 80       # the first graph now shows the second call
    assert float(kept) == 36


def test_footgun_item_during_capture_is_frozen():
    fast = cg.compile(lambda x: x * float(x.value))
    assert float(fast(2.0).value) == 4
    assert float(fast(3.0).value) == 6    # 3 * 2, not 9


def test_footgun_state_outside_the_graph_is_refused():
    x = np.zeros((4, 2, 3), np.float32)
    lstm = nn.LSTM(3, 5, stateful=True)
    with pytest.raises(RuntimeError, match="is stateful"):
        cg.compile(lstm)(x)
    drop = nn.Dropout(0.5)
    with pytest.raises(RuntimeError, match="fresh random mask"):
        cg.compile(drop)(x)


def test_footgun_a_loss_outside_the_compiled_module_is_refused():
    m = SimpleModel()
    fast = cg.compile(m)
    g = fast(np.array([1.0, 2.0]))
    op.sum(g).back()
    with pytest.raises(RuntimeError, match="compile a module that computes the loss too|Compile a module"):
        fast(np.array([1.0, 2.0]))


def test_calls_under_no_grad_run_dynamically():
    fast = cg.compile(SimpleModel())
    with cg.no_grad():
        assert float(fast(3.0).value) == 36
    assert fast.stats["dynamic"] == 1 and fast.last is None


def test_the_compiled_object_exposes_its_module_options_and_schedules():
    m = SimpleModel(2.0)
    fast = cg.compile(m, check=True, cache_size=3)
    assert fast.module is m or fast.module.functional_name == "SimpleModel"
    assert fast.check is True and fast.cache_size == 3
    assert float(fast.param("w").value) == 2.0
    fast(1.0)
    fast(np.array([1.0, 2.0]))
    shapes = [s.signature.split(";")[0] for s in fast.schedules]
    assert shapes == ["x: (2,) float64 cpu", "x: () float64 cpu"]   # most recently used first
    assert fast.last.size == 5


def test_python_operators_and_custom_rules_are_replayed_by_running_their_forward_again():
    @cg.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, np.asarray(x.value)), lambda saved, g: (2 * saved * g,))

    class Cube(cg.Operator):
        elementwise = True

        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def _op_impl(self, x):
            return x ** 3

    cube = Cube()
    fast = cg.compile(lambda x: op.sum(square(x) + cube(x)))
    for v in ([1.0, 2.0], [3.0, -1.0], [0.5, 4.0]):
        x = np.array(v)
        g = fast(x)
        g.back()
        np.testing.assert_allclose(float(g.value), np.sum(x ** 2 + x ** 3))
        np.testing.assert_allclose(g.grad(fast.input("x")), 2 * x + 3 * x ** 2, rtol=1e-12)
    assert fast.stats["captures"] == 1 and fast.stats["replays"] == 2
