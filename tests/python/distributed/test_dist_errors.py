"""Misuse across ranks: checked mode turns calls that differ between ranks into the same
ValueError on every rank (instead of a hang), and bad arguments into Python exceptions."""
import importlib
import re
import sys

import numpy as np
import pytest

import zkynet
from dist_testing import RANK, RankBody, SIZE
from zkynet import distributed as dist
from zkynet.framework import op

needs_two_ranks = pytest.mark.skipif(SIZE < 2, reason="needs at least 2 ranks")


@needs_two_ranks
def test_shapes_that_differ_across_ranks_raise_value_error_on_every_rank():
    x = np.ones((2, 3 if RANK == 0 else 4))
    with pytest.raises(ValueError) as error:
        dist.Allreduce(x, dist.MPI_SUM)
    assert isinstance(error.value, zkynet._zkynet.ShapeError)
    message = str(error.value)
    assert re.search(r"rank 0: Allreduce SUM #\d+ @world float64 \(2,3\)", message), message
    assert re.search(r"rank 1: Allreduce SUM #\d+ @world float64 \(2,4\)", message), message


@needs_two_ranks
def test_a_mismatch_inside_a_module_call_raises_on_every_rank_and_the_next_call_works():
    module = RankBody(lambda x: op.sum(dist.Allreduce(x, dist.MPI_SUM)))
    with pytest.raises(ValueError, match="Allreduce SUM"):
        module(np.ones(RANK + 1))
    graph = module(np.ones(2))
    graph.back()
    np.testing.assert_array_equal(graph.grad(module.input("x")), np.full(2, float(SIZE)))


@needs_two_ranks
def test_different_operations_on_different_ranks_raise_value_error():
    with pytest.raises(ValueError, match="Allreduce"):
        dist.Allreduce(np.ones(2), dist.MPI_SUM if RANK == 0 else dist.MPI_MAX)


def test_scatter_counts_that_do_not_add_up_raise_value_error_on_every_rank():
    with pytest.raises(ValueError, match="Scatter from 0") as error:
        dist.Scatter(np.ones(2 * SIZE + 1), 0, 2, 0)
    # Every rank knows the root's shape and every count: all name the problem.
    assert "add up to" in str(error.value) and f"has {2 * SIZE + 1} on axis 0" in str(error.value)


def test_a_root_outside_the_communicator_is_an_index_error():
    with pytest.raises(IndexError, match=f"root {SIZE}"):
        dist.Bcast_(np.ones(1), SIZE)


def test_an_axis_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="axis 2"):
        dist.Allgather(np.ones((2, 2)), 2)


def test_checked_mode_can_be_turned_off_and_on():
    assert dist.checked()
    dist.set_checked(False)
    try:
        np.testing.assert_array_equal(dist.Allreduce(np.ones(2), dist.MPI_SUM).value, np.full(2, float(SIZE)))
    finally:
        dist.set_checked(True)
    assert dist.checked()


def test_set_timeout_takes_seconds_and_zero_turns_it_off():
    # What it does is tested from the single-process suite (test_distributed_faults.py).
    before = dist.timeout()  # ZKYNET_DIST_TIMEOUT's, or 0
    try:
        dist.set_timeout(2.5)
        assert dist.timeout() == 2.5
        with pytest.raises(RuntimeError, match="set_timeout: expected a number of seconds >= 0"):
            dist.set_timeout(-1)
        assert dist.timeout() == 2.5
        dist.set_timeout(0)
        assert dist.timeout() == 0
    finally:
        dist.set_timeout(before)


def test_importing_installs_the_job_aborting_excepthook_once():
    # What it does is tested from the single-process suite (test_distributed_faults.py).
    hook = sys.excepthook
    assert getattr(hook, "zkynet_aborts_job", False)
    importlib.reload(dist)
    assert sys.excepthook is hook
