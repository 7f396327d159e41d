"""Shared by the tests run under mpiexec: this rank, per-rank inputs that every rank can
recompute (for numpy references), and the gradient of a per-rank body after every rank's back()."""
import numpy as np

from zkynet import distributed as dist
from zkynet.framework import cg

COMM = dist.COMM_WORLD
RANK = COMM.rank
SIZE = COMM.size
NEXT = (RANK + 1) % SIZE
PREV = (RANK - 1) % SIZE


def rank_input(rank, shape, seed=0):
    """Rank `rank`'s input for a test: any rank can compute any other rank's."""
    return np.random.default_rng(1000 * seed + rank).standard_normal(shape)


class RankBody(cg.Module):
    """A module whose call is a given function of its one input."""

    def __init__(self, body):
        super().__init__(inputs=(cg.Variable("x"),))
        self.body = body

    def call(self, x):
        return self.body(x)


def rank_grad(body, x):
    """The gradient with respect to this rank's x of the sum over ranks of each rank's scalar
    root body(x) (mpi4torch's convention), after every rank's back()."""
    module = RankBody(body)
    graph = module(x)
    graph.back()
    return np.array(graph.grad(module.input("x")))


def global_objective(body, x):
    """The sum over ranks of body(x), without a graph."""
    return float(dist.allreduce_array(np.array(float(np.asarray(body(x).value))))[()])


def finite_difference_grad(body, x, h=1e-6):
    """Central differences of global_objective, one element of one rank at a time (every rank
    evaluates body each time): this rank's entries of the global gradient."""
    grad = np.zeros_like(x)
    for owner in range(SIZE):
        count = int(dist.bcast_array(np.array(x.size), owner))
        for i in range(count):
            plus, minus = x.copy(), x.copy()
            if RANK == owner:
                plus.flat[i] += h
                minus.flat[i] -= h
            numeric = (global_objective(body, plus) - global_objective(body, minus)) / (2 * h)
            if RANK == owner:
                grad.flat[i] = numeric
    return grad
