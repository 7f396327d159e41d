"""Send / Recv, Isend / Irecv / Wait and JoinDummies from Python: values and gradients across
ranks, the ring exchange without JoinDummies, and error mapping."""
import numpy as np
import pytest

from dist_testing import NEXT, PREV, RANK, SIZE, RankBody, rank_grad, rank_input
from zkynet import distributed as dist
from zkynet.framework import op

needs_two_ranks = pytest.mark.skipif(SIZE < 2, reason="needs at least 2 ranks")


def weight_of(rank):
    return rank + 1.0


@needs_two_ranks
def test_send_delivers_to_recv_and_gradient_flows_back():
    def body(x):
        if RANK == 0:
            dist.Send(op.mult(x, 2.0), 1, 5)  # the root does not use it: visited anyway
            return op.sum(op.square(x))
        if RANK == 1:
            y = dist.Recv(x, 0, 5)  # x gives the shape and dtype only
            np.testing.assert_array_equal(y.value, np.full(3, 20.0))
            return op.sum(op.mult(y, 3.0))
        return op.sum(x)

    g = rank_grad(body, np.full(3, 10.0 + RANK))
    expected = {0: 2 * 10.0 + 2 * 3.0, 1: 0.0}.get(RANK, 1.0)
    np.testing.assert_array_equal(g, np.full(3, expected))


@pytest.mark.parametrize("wait_after_root", [False, True])
def test_ring_isend_recv_wait_without_join_dummies(wait_after_root):
    # Rank r weighs what it receives from r-1 by (r + 1): r's x gets weight_of(r + 1).
    x = rank_input(RANK, (2,))

    def body(v):
        handle = dist.Isend(v, NEXT, 1)
        y = dist.Recv(v, PREV, 1)
        np.testing.assert_array_equal(y.value, rank_input(PREV, (2,)))
        if not wait_after_root:
            dist.Wait(handle)  # its result is unused: no path to the root
        loss = op.sum(op.mult(y, weight_of(RANK)))
        if wait_after_root:
            dist.Wait(handle)
        return loss

    np.testing.assert_array_equal(rank_grad(body, x), np.full(2, weight_of(NEXT)))


def test_irecv_and_wait_return_the_value_and_send_the_gradient_back():
    x = np.full((2, 2), float(RANK))

    def body(v):
        incoming = dist.Irecv(v, PREV, 3)
        outgoing = dist.Isend(v, NEXT, 3)
        assert isinstance(incoming, dist.WaitHandle)
        y = dist.Wait(incoming)
        np.testing.assert_array_equal(y.value, np.full((2, 2), float(PREV)))
        dist.Wait(outgoing)
        return op.sum(op.mult(op.square(y), weight_of(RANK)))

    # d/dx_r of weight_of(r + 1) * sum(x_r ** 2)
    np.testing.assert_array_equal(rank_grad(body, x), np.full((2, 2), 2.0 * RANK * weight_of(NEXT)))


def test_join_dummies_keeps_the_value_and_gives_dummies_zero_gradient():
    def body(x):
        joined = dist.JoinDummies(op.sum(x), [op.mult(x, 5.0), dist.Allreduce(x, dist.MPI_SUM)])
        np.testing.assert_array_equal(joined.value, np.sum(np.arange(3.0)))
        return joined

    np.testing.assert_array_equal(rank_grad(body, np.arange(3.0)), np.ones(3))


def test_join_dummies_handle_orders_a_wait_after_other_work():
    x = rank_input(RANK, (3,))

    def body(v):
        handle = dist.Isend(v, NEXT, 4)
        y = dist.Recv(v, PREV, 4)
        local = op.sum(op.mult(y, weight_of(RANK)))
        done = dist.Wait(dist.JoinDummiesHandle(handle, [local]))
        return dist.JoinDummies(local, [done, handle.dummy])

    np.testing.assert_array_equal(rank_grad(body, x), np.full(3, weight_of(NEXT)))


def test_a_handle_is_waited_once():
    handle = dist.Isend(np.ones(1), NEXT, 6)
    dist.Recv(np.ones(1), PREV, 6)
    dist.Wait(handle)
    with pytest.raises(RuntimeError, match="already waited"):
        dist.Wait(handle)


@needs_two_ranks
def test_a_message_of_another_shape_is_a_value_error_on_the_receiver():
    if RANK == 0:
        dist.Send(np.ones(3), 1, 8)
    elif RANK == 1:
        with pytest.raises(ValueError, match="expected 4 float64 values"):
            dist.Recv(np.ones(4), 0, 8)


def test_a_peer_outside_the_communicator_is_an_index_error():
    with pytest.raises(IndexError, match=f"rank {SIZE} is not in world"):
        dist.Send(np.ones(1), SIZE, 0)


def test_module_call_records_communication_in_its_graph():
    module = RankBody(lambda x: op.sum(dist.Allreduce(x, dist.MPI_SUM)))
    graph = module(np.ones(2))
    assert graph.num_nodes >= 3
    assert float(graph.value) == 2.0 * SIZE
