"""Data-parallel regression from Python: y = -2x^2 + x + 0.1 on 10 000 points split across
the ranks, parameters averaged with Allreduce inside the module's call, the loss summed over
ranks. The fit must not depend on the number of ranks."""
import numpy as np
import pytest

from dist_testing import RANK, SIZE
from zkynet import distributed as dist
from zkynet import optim
from zkynet.framework import cg, op

N = 10_000


def dataset():
    """Every rank draws the same points."""
    x = np.random.default_rng(42).uniform(-1.0, 1.0, N)
    return x, -2.0 * x ** 2 + x + 0.1


def this_rank_share():
    """The contiguous share of the points this rank fits."""
    x, y = dataset()
    begin, end = RANK * N // SIZE, (RANK + 1) * N // SIZE
    return x[begin:end], y[begin:end]


class QuadraticFit(cg.Module):
    """Mean squared error of a + b x + c x^2 over all ranks' points."""

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y")),
                         params=(cg.Parameter("a", 0.0), cg.Parameter("b", 0.0), cg.Parameter("c", 0.0)))

    def averaged(self, name):
        # Every rank's copy enters the model: each gets the gradient of the global loss.
        return op.div(dist.Allreduce(self.param(name), dist.MPI_SUM), float(SIZE))

    def call(self, x, y):
        a, b, c = (self.averaged(name) for name in "abc")
        prediction = op.add(a, op.mult(x, op.add(b, op.mult(c, x))))
        local_squared_errors = op.sum(op.square(op.sub(prediction, y)))
        return op.div(dist.Allreduce(local_squared_errors, dist.MPI_SUM), float(N))


def test_fit_recovers_the_coefficients_whatever_the_number_of_ranks():
    x, y = this_rank_share()
    model = QuadraticFit()
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    first = None
    for _ in range(300):
        loss = model(x, y)
        opt.zero_grad()
        loss.back()
        opt.step()
        first = float(loss.value) if first is None else first
    # The data are exact, so any share alone would give the same fit: the first loss shows
    # that the ranks' errors were summed over the whole dataset (all parameters start at 0).
    assert first == pytest.approx(np.mean(dataset()[1] ** 2), rel=1e-12)
    fitted = [float(np.asarray(p.value)) for p in model.parameters()]
    np.testing.assert_allclose(fitted, [0.1, 1.0, -2.0], atol=1e-2)
    assert float(loss.value) < 1e-4 * first
    # Every rank took the same steps: the copies of the parameters never drifted apart.
    np.testing.assert_allclose(dist.allreduce_array(np.array(fitted), dist.MPI_MAX),
                               dist.allreduce_array(np.array(fitted), dist.MPI_MIN), rtol=0, atol=1e-12)
