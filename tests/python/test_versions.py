"""In-place writes after the forward pass: back() refuses the stale values (PyTorch's version counter)."""
import numpy as np
import pytest

from zkynet import optim
from zkynet._zkynet import UsageError
from zkynet.framework import cg, op


class Scale(cg.Module):
    """f(x) = sum(x * w)."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", np.array([2.0, 3.0])),))

    def call(self, x):
        return op.sum(op.mult(x, self.param("w")))


def test_a_parameter_written_in_place_before_back_is_refused():
    m = Scale()
    g = m(np.array([1.0, 4.0]))
    m.param("w")._add_(np.array([100.0, 100.0]))  # what an optimizer step does to the buffer
    with pytest.raises(UsageError, match=r"operator 'mult' in Scale was modified in place.*input 1, 'w'"):
        g.back()


def test_optimizer_step_between_call_and_back_is_refused():
    m = Scale()
    opt = optim.SGD(m.parameters(), lr=0.1)
    m(np.array([1.0, 4.0])).back()  # gradients for the step
    g = m(np.array([1.0, 4.0]))
    opt.step()
    with pytest.raises(UsageError, match="modified in place"):
        g.back()


def test_back_then_step_gives_the_gradient_at_the_forward_point():
    m = Scale()
    g = m(np.array([1.0, 4.0]))
    g.back()
    np.testing.assert_allclose(g.grad(m.param("w")), [1.0, 4.0])
    m.param("w")._add_(np.array([1.0, 1.0]))
    np.testing.assert_allclose(m(np.array([1.0, 4.0])).value, 3.0 + 16.0)
