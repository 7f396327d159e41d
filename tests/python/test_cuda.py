"""zkynet.cuda without a GPU (this machine): the answers and errors a CPU-only user sees. The
GPU side runs in tests/cuda (C++) on a GPU machine."""
import numpy as np
import pytest

import zkynet
from zkynet import cuda, nn


def test_no_device_answers_here():
    if cuda.is_available():
        pytest.skip("this machine has a GPU: tests/cuda covers it")
    assert cuda.device_count() == 0
    assert isinstance(cuda.is_built(), bool)


def test_tf32_is_off_by_default():
    assert cuda.allow_tf32() is False


def test_moving_a_model_to_a_missing_device_names_it():
    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="cuda:0"):
        nn.Linear(3, 2).to("cuda")


def test_unknown_device_names_are_refused():
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        nn.Linear(3, 2).to("gpu")


def test_to_cpu_is_a_no_op_that_returns_the_module():
    layer = nn.Linear(3, 2)
    assert layer.to("cpu") is layer
    assert layer(np.ones((1, 3), dtype=np.float32)).value.shape == (1, 2)


def test_the_package_exports_cuda():
    assert "cuda" in zkynet.__all__
