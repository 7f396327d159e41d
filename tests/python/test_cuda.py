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


# ---- zkynet.Tensor and layers on a device (tests/python/test_tensors_devices.py has the rest) ----

needs_gpu = pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA device")


def test_tensors_on_a_missing_device_name_it():
    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.zeros(3, device="cuda")
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.ones(3).cuda()
    with pytest.raises(RuntimeError, match="cuda:0"):
        nn.Linear(3, 2, device="cuda")
    with pytest.raises(RuntimeError, match="cuda:0"):
        cuda.stream()


def test_unknown_device_names_are_refused_for_tensors_too():
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        zkynet.ones(3).to("gpu")
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        zkynet.zeros(3, device="gpu")


@needs_gpu
def test_the_stream_is_one_per_device():
    assert cuda.stream() == cuda.stream(0) != 0


@needs_gpu
def test_a_cuda_tensor_is_counted_by_the_allocator():
    before = cuda.memory_stats()["allocated_bytes"]
    t = zkynet.zeros(1 << 20, device="cuda")
    assert t.device == "cuda:0"
    assert cuda.memory_stats()["allocated_bytes"] >= before + (1 << 22)


@needs_gpu
def test_a_model_moved_to_cuda_and_back_keeps_its_values():
    layer = nn.Linear(3, 2, dtype="float64")
    before = [p.value.copy() for p in layer.parameters()]
    layer.to("cuda")
    assert all(p.device == "cuda:0" for p in layer.parameters())
    x = np.arange(6.).reshape(2, 3)
    on_gpu = layer(zkynet.tensor(x, device="cuda"))
    assert on_gpu.tensor.device == "cuda:0"
    layer.to("cpu")
    assert all(p.device == "cpu" for p in layer.parameters())
    for p, b in zip(layer.parameters(), before):
        np.testing.assert_array_equal(p.value, b)
    np.testing.assert_allclose(on_gpu.value, layer(x).value, rtol=1e-12)
