"""Pinned memory and DataLoader(pin_memory, device) where no CUDA device answers (this machine,
CI): torch's behaviour (a RuntimeError from pin_memory, a UserWarning from the loader) and the
same batches. With a GPU, the CUDA half runs here too (skipped otherwise) and in tests/cuda."""
import numpy as np
import pytest

import zkynet
from zkynet import cuda, data

needs_gpu = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device answers on this machine")
no_gpu = pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU")


def dataset(n=10):
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    return data.TensorDataset(x, y)


def epochs(loader, n=2):
    out = []
    for _ in range(n):
        for batch in loader:
            out.append([np.asarray(b.cpu() if isinstance(b, zkynet.Tensor) else b) for b in batch])
    return out


@no_gpu
def test_pin_memory_without_a_device_raises_like_torch():
    t = zkynet.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="^pin_memory needs a CUDA device: "):
        t.pin_memory()
    assert t.is_pinned() is False


def test_non_blocking_copy_to_the_same_device_is_the_tensor():
    t = zkynet.tensor([1.0, 2.0])
    assert np.array_equal(np.asarray(t.to("cpu", non_blocking=True)), [1.0, 2.0])


@no_gpu
def test_loader_pin_memory_without_a_device_warns_and_gives_the_same_batches():
    ds = dataset()
    with pytest.warns(UserWarning, match="pin_memory=True is ignored"):
        pinned = data.DataLoader(ds, batch_size=3, shuffle=True, seed=4, pin_memory=True)
    assert pinned.pins is False
    plain = data.DataLoader(ds, batch_size=3, shuffle=True, seed=4)
    got, want = epochs(pinned), epochs(plain)
    assert len(got) == len(want) == 8
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


def test_loader_device_cpu_gives_the_same_batches_as_tensors():
    ds = dataset(11)
    on_cpu = data.DataLoader(ds, batch_size=4, shuffle=True, seed=2, device="cpu")
    plain = data.DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    first = next(iter(on_cpu))
    assert all(isinstance(t, zkynet.Tensor) and t.device == "cpu" for t in first)
    on_cpu.set_epoch(0)
    got, want = epochs(on_cpu), epochs(plain)
    assert len(got) == len(want) == 6
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@no_gpu
def test_loader_on_a_missing_cuda_device_names_it():
    with pytest.raises(RuntimeError, match="DataLoader: device cuda:0 is not available"):
        data.DataLoader(dataset(), batch_size=2, device="cuda")


@needs_gpu
def test_loader_on_cuda_gives_the_cpu_batches():
    ds = dataset(13)
    gpu = data.DataLoader(ds, batch_size=4, shuffle=True, seed=1, pin_memory=True, device="cuda")
    plain = data.DataLoader(ds, batch_size=4, shuffle=True, seed=1)
    assert gpu.pins is True
    for batch in gpu:
        assert all(t.device == "cuda:0" for t in batch)
        break
    gpu.set_epoch(0)
    for g, w in zip(epochs(gpu), epochs(plain)):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


@needs_gpu
def test_pinned_round_trip_on_cuda():
    t = zkynet.tensor(np.arange(12.0).reshape(3, 4)).pin_memory()
    assert t.is_pinned()
    back = t.to("cuda", non_blocking=True).to("cpu", non_blocking=True)
    cuda.synchronize()
    assert back.is_pinned()
    np.testing.assert_array_equal(np.asarray(back), np.arange(12.0).reshape(3, 4))
