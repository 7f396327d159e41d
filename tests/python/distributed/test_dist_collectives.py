"""Collectives from Python: values against numpy references computed from every rank's input,
mpi4torch's gradient tests, and finite differences across ranks."""
import numpy as np
import pytest

from dist_testing import COMM, RANK, SIZE, finite_difference_grad, rank_grad, rank_input
from zkynet import distributed as dist
from zkynet.framework import op

ALL_INPUTS = [rank_input(r, (2, 3)) for r in range(SIZE)]
REDUCTIONS = {
    dist.MPI_SUM: np.sum, dist.MPI_AVG: np.mean, dist.MPI_MAX: np.max, dist.MPI_MIN: np.min, dist.MPI_PROD: np.prod,
}


# ---- values -------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce_op", list(REDUCTIONS), ids=lambda o: o.name)
def test_allreduce_value_matches_numpy(reduce_op):
    y = dist.Allreduce(ALL_INPUTS[RANK], reduce_op)
    np.testing.assert_allclose(y.value, REDUCTIONS[reduce_op](np.stack(ALL_INPUTS), axis=0), rtol=1e-12)


def test_allreduce_of_numbers_and_int64():
    assert float(dist.Allreduce(1.5, dist.MPI_SUM).value) == 1.5 * SIZE
    y = dist.Allreduce(np.arange(3) + RANK, dist.MPI_MAX)
    assert y.value.dtype == np.int64
    np.testing.assert_array_equal(y.value, np.arange(3) + SIZE - 1)


def test_communicator_methods_and_module_functions_agree():
    np.testing.assert_array_equal(COMM.Allreduce(ALL_INPUTS[RANK], dist.MPI_SUM).value,
                                  dist.Allreduce(ALL_INPUTS[RANK], dist.MPI_SUM).value)
    assert (COMM.rank, COMM.size) == (RANK, SIZE)
    assert 0 <= RANK < SIZE


@pytest.mark.parametrize("root", sorted({0, SIZE - 1}))
def test_reduce_gives_root_the_sum_and_others_zeros(root):
    y = dist.Reduce_(ALL_INPUTS[RANK], dist.MPI_SUM, root)
    expected = np.sum(ALL_INPUTS, axis=0) if RANK == root else np.zeros((2, 3))
    np.testing.assert_allclose(y.value, expected, rtol=1e-12)


@pytest.mark.parametrize("root", sorted({0, SIZE - 1}))
def test_bcast_copies_root_value(root):
    np.testing.assert_array_equal(dist.Bcast_(ALL_INPUTS[RANK], root).value, ALL_INPUTS[root])


def parts_of_rank_sizes(axis):
    """Rank r's part has r + 1 entries along `axis` (gathers take parts of different sizes)."""
    return [rank_input(r, (2, r + 1) if axis == 1 else (r + 1, 2), seed=3) for r in range(SIZE)]


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_concatenates_on_root_in_rank_order(axis):
    parts = parts_of_rank_sizes(axis)
    y = dist.Gather(parts[RANK], axis, 0)
    if RANK == 0:
        np.testing.assert_array_equal(y.value, np.concatenate(parts, axis=axis))
    else:
        assert y.value.shape == ((2, 0) if axis == 1 else (0, 2))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_allgather_concatenates_on_every_rank(axis):
    parts = parts_of_rank_sizes(axis % 2)
    np.testing.assert_array_equal(dist.Allgather(parts[RANK], axis).value, np.concatenate(parts, axis=axis))


def test_scatter_cuts_root_tensor_and_gather_round_trips():
    total = SIZE * (SIZE + 1) // 2
    full = np.arange(3.0 * total).reshape(3, total)
    x = full if RANK == 0 else np.zeros((3, 1))
    part = dist.Scatter(x, 1, RANK + 1, 0)
    offset = RANK * (RANK + 1) // 2
    np.testing.assert_array_equal(part.value, full[:, offset:offset + RANK + 1])
    back = dist.Gather(part, 1, 0)
    if RANK == 0:
        np.testing.assert_array_equal(back.value, full)


def test_alltoall_exchanges_blocks_and_swapped_axes_undo_it():
    k = 2
    xs = [rank_input(r, (3, SIZE * k), seed=5) for r in range(SIZE)]
    y = dist.Alltoall(xs[RANK], 0, 1, k)
    # Rank j receives columns j*k:(j+1)*k of every rank's x, stacked along axis 0 in rank order.
    expected = np.concatenate([x[:, RANK * k:(RANK + 1) * k] for x in xs], axis=0)
    np.testing.assert_array_equal(y.value, expected)
    np.testing.assert_array_equal(dist.Alltoall(y, 1, 0, 3).value, xs[RANK])


def test_split_communicator_reduces_over_its_own_ranks():
    halves = COMM.split(RANK % 2, key=-RANK)  # key reverses the order inside each half
    members = [r for r in range(SIZE) if r % 2 == RANK % 2]
    assert halves.size == len(members)
    assert halves.rank == sorted(members, reverse=True).index(RANK)
    total = halves.Allreduce(np.array([RANK + 1.0]), dist.MPI_SUM)
    assert float(total.value[0]) == sum(r + 1.0 for r in members)
    halves.barrier()
    COMM.barrier()


# ---- gradients: mpi4torch's tests ---------------------------------------------------------

def test_allreduce_sum_backward_gives_size():
    g = rank_grad(lambda x: op.sum(dist.Allreduce(x, dist.MPI_SUM)), np.ones(3))
    np.testing.assert_array_equal(g, np.full(3, float(SIZE)))


def test_reduce_sum_backward_gives_one():
    g = rank_grad(lambda x: op.sum(dist.Reduce_(x, dist.MPI_SUM, 0)), np.ones(3))
    np.testing.assert_array_equal(g, np.ones(3))


def test_bcast_backward_gives_size_on_root_and_zero_elsewhere():
    g = rank_grad(lambda x: op.sum(dist.Bcast_(x, 0)), np.ones(3))
    np.testing.assert_array_equal(g, np.full(3, float(SIZE) if RANK == 0 else 0.0))


def test_allgather_backward_with_rank_weights_gives_triangular_number():
    g = rank_grad(lambda x: op.sum(op.mult(dist.Allgather(x, 0), RANK + 1.0)), np.ones(2))
    np.testing.assert_allclose(g, np.full(2, SIZE * (SIZE + 1) / 2))


def test_gather_backward_gives_each_rank_its_part_of_root_gradient():
    def body(x):
        everything = dist.Gather(x, 0, 0)
        return op.sum(op.square(everything))  # root: sum of squares of all parts; others: 0

    x = np.full(RANK + 1, RANK + 1.0)
    np.testing.assert_allclose(rank_grad(body, x), 2 * x)


def test_scatter_takes_roots_shape_from_a_one_element_anchor_as_mpi4torch():
    full = rank_input(0, (2, 3, SIZE, 5, 6), seed=8)
    x = full if RANK == 0 else np.random.default_rng(RANK).random(1)
    part = dist.Scatter(x, 2, 1, 0)
    np.testing.assert_array_equal(part.value, full[:, :, RANK:RANK + 1])
    g = rank_grad(lambda v: op.sum(dist.Scatter(v, 2, 1, 0)), x)
    assert g.shape == x.shape
    np.testing.assert_array_equal(g, np.ones_like(full) if RANK == 0 else np.zeros(1))


def test_scatter_backward_gathers_weights_to_root():
    x = np.ones(2 * SIZE) if RANK == 0 else np.ones(2)
    g = rank_grad(lambda v: op.sum(op.mult(dist.Scatter(v, 0, 2, 0), RANK + 1.0)), x)
    expected = np.repeat(np.arange(1.0, SIZE + 1), 2) if RANK == 0 else np.zeros(2)
    np.testing.assert_array_equal(g, expected)


def test_alltoall_backward_routes_each_block_gradient_back():
    k = 2
    weights = [rank_input(r, (3 * SIZE, k), seed=7) for r in range(SIZE)]
    x = rank_input(RANK, (3, SIZE * k), seed=6)
    g = rank_grad(lambda v: op.sum(op.mult(dist.Alltoall(v, 0, 1, k), weights[RANK])), x)
    # Columns j*k:(j+1)*k of this rank's x land in rows RANK*3:(RANK+1)*3 on rank j.
    expected = np.concatenate([weights[j][RANK * 3:(RANK + 1) * 3] for j in range(SIZE)], axis=1)
    np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize("reduce_op", list(REDUCTIONS), ids=lambda o: o.name)
def test_allreduce_gradient_matches_finite_differences(reduce_op):
    weights = rank_input(RANK, (2, 3), seed=9)

    def body(x):
        return op.sum(op.mult(op.tanh(dist.Allreduce(x, reduce_op)), weights))

    x = rank_input(RANK, (2, 3), seed=8)
    np.testing.assert_allclose(rank_grad(body, x), finite_difference_grad(body, x), rtol=1e-6, atol=1e-8)


def test_max_splits_gradient_between_tied_ranks():
    x = np.array([5.0 if RANK == 0 else 1.0, 2.0])
    g = rank_grad(lambda v: op.sum(dist.Allreduce(v, dist.MPI_MAX)), x)
    np.testing.assert_allclose(g, [SIZE if RANK == 0 else 0.0, 1.0])
