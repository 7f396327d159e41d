"""zkynet.Tensor, its factories, devices and DLPack (issue 12, GPU part 1, section 4).

Everything runs on the CPU here; the CUDA cases at the end need a device that both zkynet and
torch see and report skipped otherwise. Zero-copy claims are checked by data pointers and by
writes through the other side.
"""
import gc
import pathlib
import re

import numpy as np
import pytest

import zkynet
from zkynet import cuda, nn, optim
from zkynet.framework import cg, op

try:
    import torch
except ImportError:  # pragma: no cover: Debian's python3-torch is installed on our machines
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")
no_gpu = pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU: the no-device errors do not apply")
needs_cuda = pytest.mark.skipif(
    not cuda.is_available() or torch is None or not torch.cuda.is_available(),
    reason="needs a CUDA device that both zkynet and torch see")


class Identity(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def call(self, x):
        return x


class Square(cg.Operator):
    elementwise = True

    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def _op_impl(self, x):
        return x * x


# ---- factories ------------------------------------------------------------------------------

def test_zeros_takes_sizes_as_arguments_or_one_sequence():
    for t in (zkynet.zeros(2, 3), zkynet.zeros((2, 3)), zkynet.zeros([2, 3])):
        assert isinstance(t, zkynet.Tensor)
        assert t.shape == (2, 3) and t.dtype == "float32" and t.device == "cpu"
        np.testing.assert_array_equal(t.numpy(), np.zeros((2, 3), np.float32))


def test_zeros_of_an_empty_shape_is_a_scalar():
    t = zkynet.zeros(())
    assert t.shape == () and t.ndim == 0 and t.item() == 0.0


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64"), zkynet.float64])
def test_factories_take_dtype_in_every_spelling(dtype):
    assert zkynet.ones(3, dtype=dtype).dtype == "float64"


@needs_torch
def test_factories_take_torch_dtypes_and_devices():
    t = zkynet.ones(2, dtype=torch.int64, device=torch.device("cpu"))
    assert t.dtype == "int64" and t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), [1, 1])


def test_ones_full_and_empty():
    np.testing.assert_array_equal(zkynet.ones(2, dtype="int64").numpy(), [1, 1])
    assert zkynet.full((2, 2), 7).dtype == "int64"
    np.testing.assert_array_equal(zkynet.full((2, 2), 7).numpy(), [[7, 7], [7, 7]])
    assert zkynet.full(3, 1.5).dtype == "float32"
    np.testing.assert_array_equal(zkynet.full(3, 1.5).numpy(), [1.5] * 3)
    assert zkynet.full(1, 2**62 + 1).item() == 2**62 + 1  # exact: no detour through a double
    assert zkynet.empty(4, 5, dtype="float64").shape == (4, 5)


def test_arange_infers_its_dtype_like_torch():
    a = zkynet.arange(5)
    assert a.dtype == "int64"
    np.testing.assert_array_equal(a.numpy(), np.arange(5))
    b = zkynet.arange(0, 1, 0.25)
    assert b.dtype == "float32"
    np.testing.assert_array_equal(b.numpy(), [0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(zkynet.arange(10, 0, -3).numpy(), [10, 7, 4, 1])
    assert zkynet.arange(3, dtype="float64").dtype == "float64"
    with pytest.raises(ValueError, match="step"):
        zkynet.arange(0, 3, 0)


def test_eye_square_and_rectangular():
    np.testing.assert_array_equal(zkynet.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(zkynet.eye(2, 3, dtype="int64").numpy(), np.eye(2, 3, dtype=np.int64))


def test_randn_and_rand_follow_nn_manual_seed():
    nn.manual_seed(7)
    a, u = zkynet.randn(100), zkynet.rand(100)
    nn.manual_seed(7)
    b, v = zkynet.randn(100), zkynet.rand(100)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert a.dtype == "float32" and abs(float(a.numpy().mean())) < 0.5 and a.numpy().std() > 0.5
    assert u.numpy().min() >= 0 and u.numpy().max() < 1
    with pytest.raises(TypeError, match="float32 or float64"):
        zkynet.randn(2, dtype="int64")


def test_unknown_dtypes_are_refused_by_name():
    with pytest.raises(TypeError, match="unknown dtype 'int32'"):
        zkynet.zeros(2, dtype=np.int32)
    with pytest.raises(TypeError, match="unknown dtype 'half'"):
        zkynet.zeros(2, dtype="half")


def test_zeros_like_and_ones_like_keep_shape_dtype_and_device():
    base = zkynet.arange(6).to("float64")
    z = zkynet.zeros_like(base)
    assert (z.shape, z.dtype, z.device) == ((6,), "float64", "cpu")
    assert zkynet.ones_like(np.zeros((2, 2), np.float32)).dtype == "float32"
    np.testing.assert_array_equal(zkynet.ones_like(base, dtype="int64").numpy(), [1] * 6)


# ---- tensor(), as_tensor() and the Tensor's attributes -----------------------------------------

def test_tensor_copies_its_data_and_as_tensor_shares_it():
    source = np.arange(4.)
    copied, shared = zkynet.tensor(source), zkynet.as_tensor(source)
    source[0] = 42.
    assert copied.numpy()[0] == 0.
    assert shared.numpy()[0] == 42.
    assert shared.data_ptr() == source.ctypes.data
    assert copied.data_ptr() != source.ctypes.data


def test_tensor_keeps_zkynets_conversions_and_takes_dtype():
    assert zkynet.tensor([1.0, 2.0]).dtype == "float64"
    assert zkynet.tensor([1, 2]).dtype == "int64"
    assert zkynet.tensor(np.ones(2, np.float32)).dtype == "float32"
    t = zkynet.tensor([[1, 2], [3, 4]], dtype="float32")
    assert t.dtype == "float32" and t.shape == (2, 2)
    np.testing.assert_array_equal(t.numpy(), [[1, 2], [3, 4]])


def test_tensor_of_a_tensor_is_a_copy():
    a = zkynet.arange(3)
    b = zkynet.tensor(a)
    assert b.data_ptr() != a.data_ptr()
    np.testing.assert_array_equal(b.numpy(), a.numpy())
    assert zkynet.as_tensor(a).data_ptr() == a.data_ptr()


def test_shape_ndim_len_numel_and_size():
    t = zkynet.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3 and len(t) == 2
    assert t.numel() == 24 and t.size() == (2, 3, 4) and t.size(-1) == 4 and t.is_cuda is False
    with pytest.raises(TypeError, match="0-d"):
        len(zkynet.zeros(()))


def test_repr_shows_values_shape_dtype_and_device():
    text = repr(zkynet.tensor([[1.5, 2.0]], dtype="float32"))
    assert text.startswith("Tensor([[1.5, 2. ]]")
    assert "shape=(1, 2)" in text and "dtype=float32" in text and "device='cpu'" in text


def test_numpy_is_a_read_only_view_and_force_gives_a_writable_copy():
    t = zkynet.arange(4)
    view = t.numpy()
    assert not view.flags.writeable
    assert view.ctypes.data == t.data_ptr()
    copy = t.numpy(force=True)
    assert copy.flags.writeable and copy.ctypes.data != t.data_ptr()
    copy[0] = 9
    assert t.numpy()[0] == 0


def test_array_protocol_item_and_tolist():
    t = zkynet.tensor([[1., 2.], [3., 4.]])
    np.testing.assert_array_equal(np.asarray(t), [[1, 2], [3, 4]])
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert type(np.asarray(t)) is np.ndarray
    assert t.tolist() == [[1., 2.], [3., 4.]]
    assert zkynet.tensor(3).item() == 3 and isinstance(zkynet.tensor(3).item(), int)
    with pytest.raises(ValueError, match="not one"):
        t.item()


# ---- to(), cpu(), cuda() -------------------------------------------------------------------------

def test_to_the_same_device_or_dtype_is_the_same_memory():
    t = zkynet.arange(4).to("float32")
    assert t.to("cpu").data_ptr() == t.data_ptr()
    assert t.cpu().data_ptr() == t.data_ptr()
    assert t.to("float32").data_ptr() == t.data_ptr()
    assert t.to("cpu", copy=True).data_ptr() != t.data_ptr()


def test_to_a_dtype_converts():
    t = zkynet.tensor([1.7, -2.2])
    for converted in (t.to("int64"), t.to(dtype="int64"), t.to(np.int64), t.to("cpu", "int64"),
                      t.to(zkynet.zeros(1, dtype="int64"))):
        assert converted.dtype == "int64"
        np.testing.assert_array_equal(converted.numpy(), [1, -2])


def test_to_refuses_unknown_devices_by_name():
    t = zkynet.zeros(2)
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        t.to("gpu")
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        t.to(device="gpu")
    with pytest.raises(TypeError, match="unknown device 'cuda:x'"):
        zkynet.zeros(2, device="cuda:x")
    with pytest.raises(TypeError, match="unknown device 'tpu'"):
        zkynet.tensor([1.], device="tpu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        t.to(devise="cpu")


@no_gpu
@pytest.mark.parametrize("move", [
    lambda t: t.to("cuda"), lambda t: t.to("cuda:0"), lambda t: t.to(0), lambda t: t.cuda(),
    lambda t: t.to(device="cuda"), lambda t: zkynet.tensor(t, device="cuda"),
])
def test_moving_to_a_missing_gpu_raises_naming_it(move):
    with pytest.raises(RuntimeError, match="cuda:0"):
        move(zkynet.ones(2))


@no_gpu
@pytest.mark.parametrize("factory", [zkynet.zeros, zkynet.ones, zkynet.empty, zkynet.randn, zkynet.rand])
def test_factories_on_a_missing_gpu_raise_naming_it(factory):
    with pytest.raises(RuntimeError, match="cuda:0"):
        factory(2, device="cuda")


@no_gpu
def test_the_other_factories_and_a_second_gpu_name_the_device_too():
    with pytest.raises(RuntimeError, match="cuda:1"):
        zkynet.arange(3, device="cuda:1")
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.eye(2, device="cuda")
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.full(2, 1, device="cuda")
    with pytest.raises(RuntimeError, match="cuda:2"):
        zkynet.ones(2).cuda(2)


def test_cuda_refuses_a_cpu_device():
    with pytest.raises(TypeError, match="expected a CUDA device"):
        zkynet.ones(2).cuda("cpu")


# ---- DLPack --------------------------------------------------------------------------------------

def test_dlpack_device_of_a_cpu_tensor():
    assert zkynet.zeros(2).__dlpack_device__() == (1, 0)


def test_from_dlpack_shares_a_numpy_arrays_memory():
    source = np.arange(6.).reshape(2, 3)
    t = zkynet.from_dlpack(source)
    assert t.data_ptr() == source.ctypes.data and t.dtype == "float64" and t.shape == (2, 3)
    source[1, 2] = -5.
    assert t.numpy()[1, 2] == -5.


def test_from_dlpack_keeps_strides():
    source = np.arange(12.).reshape(3, 4)[:, 1::2]
    t = zkynet.from_dlpack(source)
    assert t.data_ptr() == source.ctypes.data and not t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), source)


def test_numpy_reads_a_tensor_through_dlpack_without_a_copy():
    t = zkynet.arange(5)
    back = np.from_dlpack(t)
    assert back.ctypes.data == t.data_ptr()
    np.testing.assert_array_equal(back, np.arange(5))


@needs_torch
def test_from_dlpack_shares_a_torch_cpu_tensors_memory():
    source = torch.arange(6.).reshape(2, 3)
    t = zkynet.from_dlpack(source)
    assert t.data_ptr() == source.data_ptr() and t.dtype == "float32" and t.device == "cpu"
    source[0, 1] = 42.
    assert t.numpy()[0, 1] == 42.


@needs_torch
def test_from_dlpack_honours_torch_strides_and_storage_offsets():
    base = torch.arange(12.).reshape(3, 4)
    for view in (base.t(), base[1:], base[:, 2:], base[1:, ::2]):
        t = zkynet.from_dlpack(view)
        assert t.data_ptr() == view.data_ptr()
        np.testing.assert_array_equal(t.numpy(), view.numpy())


@needs_torch
def test_torch_reads_and_writes_a_tensor_through_dlpack_without_a_copy():
    t = zkynet.zeros(2, 3)
    shared = torch.from_dlpack(t)
    assert shared.data_ptr() == t.data_ptr() and shared.dtype == torch.float32 and shared.device.type == "cpu"
    shared[1, 1] = 3.
    assert t.numpy()[1, 1] == 3.


@needs_torch
def test_torch_to_zkynet_to_torch_is_one_memory():
    source = torch.randn(4, 5, dtype=torch.float64)
    again = torch.from_dlpack(zkynet.from_dlpack(source))
    assert again.data_ptr() == source.data_ptr()
    assert torch.equal(again, source)


@needs_torch
def test_dlpack_keeps_memory_alive_both_ways():
    t = zkynet.from_dlpack(torch.arange(4.))
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), [0, 1, 2, 3])
    exported = torch.from_dlpack(zkynet.arange(3).to("float64"))
    gc.collect()
    assert exported.tolist() == [0., 1., 2.]


@needs_torch
def test_dlpack_converts_other_torch_dtypes_on_the_cpu():
    t = zkynet.from_dlpack(torch.tensor([1, 2, 3], dtype=torch.int32))
    assert t.dtype == "int64"
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])


@needs_torch
def test_a_capsule_is_used_once():
    capsule = zkynet.arange(3).__dlpack__()
    assert torch.utils.dlpack.from_dlpack(capsule).tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        torch.utils.dlpack.from_dlpack(capsule)


def test_dlpack_export_arguments_on_the_cpu():
    t = zkynet.arange(3)
    with pytest.raises(ValueError, match="stream=None"):
        t.__dlpack__(stream=5)
    # dl_device and copy (array API 2023): the same device is fine; copy=True detaches the memory.
    assert np.from_dlpack(_Capsule(t.__dlpack__(dl_device=(1, 0)), (1, 0))).ctypes.data == t.data_ptr()
    copied = np.from_dlpack(_Capsule(t.__dlpack__(copy=True), (1, 0)))
    assert copied.ctypes.data != t.data_ptr()
    np.testing.assert_array_equal(copied, [0, 1, 2])
    with pytest.raises(BufferError, match="copy=False"):
        t.__dlpack__(dl_device=(2, 0), copy=False)
    with pytest.raises(BufferError, match="device type 4"):
        t.__dlpack__(dl_device=(4, 0))


@no_gpu
def test_dlpack_export_to_a_missing_gpu_raises_naming_it():
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.arange(3).__dlpack__(dl_device=(2, 0))


class _Capsule:
    """A DLPack producer around an existing capsule (numpy's from_dlpack asks an object)."""

    def __init__(self, capsule, device):
        self._capsule, self._device = capsule, device

    def __dlpack__(self, stream=None):
        return self._capsule

    def __dlpack_device__(self):
        return self._device


class _FakeCuda:
    """A producer that claims CUDA memory: zkynet must refuse it cleanly without a GPU."""

    def __init__(self):
        self.asked = []

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        self.asked.append(stream)
        return np.zeros(2).__dlpack__()


@no_gpu
def test_a_cuda_producer_without_a_gpu_raises_naming_the_device_before_exporting():
    producer = _FakeCuda()
    with pytest.raises(RuntimeError, match="cuda:0"):
        zkynet.from_dlpack(producer)
    assert producer.asked == []


def test_a_producer_on_an_unknown_device_type_is_refused():
    class Vulkan(_FakeCuda):
        def __dlpack_device__(self):
            return (7, 0)

    with pytest.raises(TypeError, match="device type 7"):
        zkynet.from_dlpack(Vulkan())


# ---- module calls, operators and results ---------------------------------------------------------

def test_a_module_call_uses_a_tensor_without_a_copy():
    x = zkynet.randn(3, 2)
    graph = Identity()(x)
    assert graph.tensor.data_ptr() == x.data_ptr()
    assert graph.device == "cpu"


def test_a_layer_gives_the_same_values_for_a_tensor_and_for_numpy():
    layer = nn.Linear(3, 2)
    x = zkynet.randn(4, 3)
    from_tensor = layer(x)
    np.testing.assert_array_equal(from_tensor.value, layer(x.numpy()).value)
    result = from_tensor.tensor
    assert isinstance(result, zkynet.Tensor) and result.shape == (4, 2) and result.device == "cpu"
    # .value is a view of the same memory on the CPU
    assert from_tensor.value.ctypes.data == result.data_ptr()


@needs_torch
def test_a_torch_cpu_tensor_goes_into_a_module_call_without_a_copy():
    x = torch.randn(3, 2)
    assert Identity()(x).tensor.data_ptr() == x.data_ptr()
    layer = nn.Linear(2, 5)
    np.testing.assert_array_equal(layer(x).value, layer(x.numpy()).value)


def test_operators_take_tensors_and_nodes_give_them_back():
    a, b = zkynet.arange(3).to("float64"), zkynet.ones(3, dtype="float64")
    node = op.add(a, b)
    assert isinstance(node.tensor, zkynet.Tensor) and node.device == "cpu"
    np.testing.assert_array_equal(node.tensor.numpy(), [1., 2., 3.])
    assert node.value.ctypes.data == node.tensor.data_ptr()


def test_a_python_operator_takes_a_tensor():
    node = Square()(zkynet.tensor([1., 2., 3.]))
    assert node.tensor.device == "cpu"
    np.testing.assert_array_equal(node.value, [1., 4., 9.])


def test_gradients_as_tensors_match_the_numpy_ones():
    layer = nn.Linear(3, 2, dtype="float64")
    graph = layer(zkynet.randn(4, 3, dtype="float64"))
    graph.back(zkynet.ones(4, 2, dtype="float64"))
    w = layer.weight
    g = graph.grad_tensor(w)
    assert isinstance(g, zkynet.Tensor) and g.shape == (2, 3) and g.device == "cpu"
    np.testing.assert_array_equal(g.numpy(), graph.grad(w))
    assert g.data_ptr() == graph.grad(w).ctypes.data
    assert w.tensor.data_ptr() == w.value.ctypes.data
    assert w.device == "cpu" and w.dtype == "float64"


def test_a_parameters_tensor_follows_optimizer_steps_in_place():
    layer = nn.Linear(2, 1, dtype="float64")
    w = layer.weight
    before = w.tensor.numpy(force=True)
    pointer = w.tensor.data_ptr()
    graph = layer(zkynet.ones(1, 2, dtype="float64"))
    graph.back(zkynet.ones(1, 1, dtype="float64"))
    assert w.grad_tensor is not None and w.grad_tensor.shape == (1, 2)
    optim.SGD(layer.parameters(), lr=0.5).step()
    assert w.tensor.data_ptr() == pointer
    np.testing.assert_allclose(w.tensor.numpy(), before - 0.5 * w.grad_tensor.numpy())


def test_a_parameter_made_from_a_tensor_owns_a_copy():
    source = zkynet.ones(2, dtype="float64")
    p = cg.Parameter("w", source)
    assert p.tensor.data_ptr() != source.data_ptr()
    assert p.grad_tensor is None


# ---- layers on a device --------------------------------------------------------------------------

LAYERS = [
    lambda **kw: nn.Linear(3, 2, **kw),
    lambda **kw: nn.Conv2d(1, 2, 3, **kw),
    lambda **kw: nn.BatchNorm1d(4, **kw),
    lambda **kw: nn.BatchNorm2d(4, **kw),
    lambda **kw: nn.LayerNorm(4, **kw),
    lambda **kw: nn.Embedding(5, 3, **kw),
    lambda **kw: nn.RNN(3, 4, **kw),
    lambda **kw: nn.LSTM(3, 4, **kw),
    lambda **kw: nn.GRU(3, 4, **kw),
]


@pytest.mark.parametrize("make", LAYERS)
def test_layers_take_a_cpu_device(make):
    layer = make(device="cpu")
    assert all(p.device == "cpu" for p in layer.parameters())
    layer = make(device=None)
    assert len(layer.parameters()) > 0


@no_gpu
@pytest.mark.parametrize("make", LAYERS)
def test_layers_on_a_missing_gpu_raise_naming_it(make):
    with pytest.raises(RuntimeError, match="cuda:0"):
        make(device="cuda")


@pytest.mark.parametrize("make", LAYERS)
def test_layers_refuse_unknown_devices_by_name(make):
    with pytest.raises(TypeError, match="unknown device 'gpu'"):
        make(device="gpu")


@no_gpu
def test_module_to_takes_indices_and_torch_devices():
    layer = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="cuda:1"):
        layer.to(1)
    assert layer.to("cpu") is layer
    if torch is not None:
        assert layer.to(torch.device("cpu")) is layer
        with pytest.raises(RuntimeError, match="cuda:0"):
            layer.to(torch.device("cuda", 0))


@no_gpu
def test_a_module_without_parameters_still_refuses_a_missing_gpu():
    with pytest.raises(RuntimeError, match="cuda:0"):
        nn.ReLU().to("cuda")


# ---- the README's example ------------------------------------------------------------------------

def _readme_block(heading):
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_torch
def test_the_readme_example_on_devices_and_dlpack_runs(capsys):
    exec(compile(_readme_block("### Tensors, devices and DLPack (Python)"), "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("(8, 3) float32 cpu")


# ---- CUDA (skipped without a device) -------------------------------------------------------------

@needs_cuda
def test_cuda_factories_and_round_trips():
    nn.manual_seed(3)
    host = zkynet.randn(5, 4)
    nn.manual_seed(3)
    dev = zkynet.randn(5, 4, device="cuda")
    assert dev.device == "cuda:0" and dev.is_cuda and dev.__dlpack_device__() == (2, 0)
    np.testing.assert_array_equal(dev.numpy(), host.numpy())  # drawn on the host: same values
    np.testing.assert_array_equal(zkynet.zeros(2, 3, device="cuda").numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(zkynet.arange(4, device="cuda").cpu().numpy(), np.arange(4))
    moved = host.to("cuda")
    assert moved.device == "cuda:0" and moved.cuda().data_ptr() == moved.data_ptr()
    np.testing.assert_array_equal(moved.cpu().numpy(), host.numpy())
    np.testing.assert_array_equal(moved.to("float64").numpy(), host.numpy().astype(np.float64))
    assert "device='cuda:0'" in repr(moved)
    assert not moved.numpy().flags.writeable


@needs_cuda
def test_a_torch_cuda_tensor_comes_in_without_a_copy():
    source = torch.arange(6., device="cuda").reshape(2, 3)
    t = zkynet.from_dlpack(source)
    assert t.device == "cuda:0" and t.data_ptr() == source.data_ptr()
    source.mul_(2)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(t.numpy(), [[0, 2, 4], [6, 8, 10]])
    view = source.t()
    strided = zkynet.from_dlpack(view)
    assert strided.data_ptr() == view.data_ptr()
    np.testing.assert_array_equal(strided.numpy(), view.cpu().numpy())


@needs_cuda
def test_a_cuda_tensor_goes_out_to_torch_without_a_copy():
    t = zkynet.ones(2, 3, device="cuda")
    shared = torch.from_dlpack(t)
    assert shared.device == torch.device("cuda", 0) and shared.data_ptr() == t.data_ptr()
    shared[0, 0] = 5.
    torch.cuda.synchronize()
    assert t.numpy()[0, 0] == 5.
    assert torch.from_dlpack(zkynet.from_dlpack(shared)).data_ptr() == shared.data_ptr()


@needs_cuda
def test_cuda_dlpack_refuses_dtypes_zkynet_cannot_hold():
    with pytest.raises(TypeError, match="int32"):
        zkynet.from_dlpack(torch.zeros(2, dtype=torch.int32, device="cuda"))


@needs_cuda
def test_a_cuda_model_fed_a_torch_cuda_tensor_keeps_it_on_the_device():
    layer = nn.Linear(3, 2, device="cuda")
    assert all(p.device == "cuda:0" for p in layer.parameters())
    x = torch.randn(4, 3, device="cuda")
    graph = layer(x)
    assert graph.tensor.device == "cuda:0"
    expected = x.cpu().numpy() @ layer.weight.value.T + layer.bias.value
    np.testing.assert_allclose(graph.value, expected, rtol=1e-5, atol=1e-6)
    assert Identity()(x).tensor.data_ptr() == x.data_ptr()
    graph.back(zkynet.ones(4, 2, device="cuda"))
    assert graph.grad_tensor(layer.weight).device == "cuda:0"


@needs_cuda
def test_a_cuda_value_meets_a_cpu_value_with_a_device_error():
    with pytest.raises(TypeError, match="cuda:0"):
        op.add(zkynet.ones(2, device="cuda"), zkynet.ones(2))


@needs_cuda
def test_a_model_on_cuda_trains_one_step_like_on_the_cpu():
    class Loss(cg.Module):
        def __init__(self, model):
            super().__init__(inputs=(cg.Variable("x"), cg.Variable("y").requires_grad(False)))
            self.model = model

        def call(self, x, y):
            return op.cross_entropy(self.model(x), y)

    def make():
        nn.manual_seed(11)
        return nn.Sequential(nn.Linear(4, 8, dtype="float64"), nn.Tanh(), nn.Linear(8, 3, dtype="float64"))

    nn.manual_seed(5)
    x = zkynet.randn(16, 4, dtype="float64")
    y = zkynet.tensor(np.arange(16) % 3)
    on_cpu, on_gpu = make(), make().to("cuda")
    for model, xs, ys in ((on_cpu, x, y), (on_gpu, x.to("cuda"), y.to("cuda"))):
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        graph = Loss(model)(xs, ys)
        opt.zero_grad()
        graph.back()
        opt.step()
    for (name, p), (_, q) in zip(on_cpu.named_parameters(), on_gpu.named_parameters()):
        assert q.device == "cuda:0", name
        np.testing.assert_allclose(q.value, p.value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_float_and_int_of_a_one_element_tensor():
    assert float(zkynet.tensor([2.5])) == 2.5
    assert int(zkynet.tensor([[7]])) == 7
    with pytest.raises(ValueError, match="not one"):
        float(zkynet.zeros(2))


def test_a_cpu_tensor_has_no_cuda_array_interface():
    assert not hasattr(zkynet.zeros(2), "__cuda_array_interface__")


@needs_cuda
def test_torch_as_tensor_reads_the_cuda_array_interface_without_a_copy():
    t = zkynet.arange(6, device="cuda").to("float64")
    info = t.__cuda_array_interface__
    assert info["typestr"] == "<f8" and info["shape"] == (6,) and info["data"][0] == t.data_ptr()
    assert info["stream"] == cuda.stream(0)
    shared = torch.as_tensor(t, device="cuda")
    assert shared.data_ptr() == t.data_ptr()
    assert shared.cpu().tolist() == [0., 1., 2., 3., 4., 5.]
    with pytest.raises(ValueError, match="cuda:0"):
        t.__array__(copy=False)
