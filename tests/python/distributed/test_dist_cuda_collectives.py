"""The backend of CUDA tensors' collectives from Python (Communicator.cuda_collectives): staged by
default, 'nccl' where the build has it, a clear error otherwise; CPU arrays stay on MPI."""
import numpy as np
import pytest

import zkynet
from dist_testing import RANK
from zkynet import distributed as dist


def test_the_default_is_staged_on_the_world_and_on_a_split():
    assert dist.COMM_WORLD.cuda_collectives == "staged"
    assert dist.COMM_WORLD.split(RANK % 2).cuda_collectives == "staged"


def test_choosing_nccl_is_kept_where_built_and_refused_by_name_elsewhere():
    half = dist.COMM_WORLD.split(RANK % 2)
    if dist.nccl_built():
        half.cuda_collectives = "nccl"
        assert half.cuda_collectives == "nccl"
        assert dist.COMM_WORLD.cuda_collectives == "staged"
        half.cuda_collectives = "staged"
    else:
        with pytest.raises(zkynet._zkynet.UsageError, match=r"set_cuda_collectives\(nccl\) on world/split.*has no NCCL"):
            half.cuda_collectives = "nccl"
        assert half.cuda_collectives == "staged"


def test_an_unknown_backend_name_is_a_value_error():
    with pytest.raises(ValueError, match="expected 'staged' or 'nccl', got 'mpi'"):
        dist.COMM_WORLD.cuda_collectives = "mpi"


def test_cpu_arrays_stay_on_mpi_whatever_the_choice():
    half = dist.COMM_WORLD.split(RANK % 2)
    if dist.nccl_built():
        half.cuda_collectives = "nccl"
    x = np.arange(3.0) + RANK
    expected = sum(np.arange(3.0) + r for r in range(RANK % 2, dist.COMM_WORLD.size, 2))
    np.testing.assert_allclose(half.Allreduce(x, dist.MPI_SUM).value, expected)
