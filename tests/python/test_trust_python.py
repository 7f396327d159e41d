"""Issue 9 ("Trust"), the Python side: every case is a correct result or a clear Python
exception, never a crash, a hang or a silently wrong value.

  * bindings that release the GIL convert their Python arguments first (a list axis on a big
    tensor used to be read without the GIL: a segfault);
  * numpy arrays of non-native byte order are converted (they recursed without end);
  * integers beyond int64 (uint64 values >= 2**63, Python ints) are refused with the range in
    the message instead of wrapping or pybind11's "Unable to cast";
  * modules and parameters assigned before super().__init__() raise, as in PyTorch;
  * torch tensors of other dtypes than float32/float64/int64 arriving by DLPack are converted
    like the numpy arrays of those dtypes.
"""
import numpy as np
import pytest

from zkynet import nn
from zkynet._zkynet import DTypeError, UsageError
from zkynet.framework import cg, op

torch = pytest.importorskip("torch")

BIG = 1 << 15  # above the size from which operators release the GIL (1 << 14)


# ---- 1. no Python object touched without the GIL -----------------------------------------------

def big_matrix(dtype=np.float64):
    return np.arange(BIG, dtype=dtype).reshape(2, BIG // 2) / BIG


@pytest.mark.parametrize("axis", [[0], (0,), [1], (0, 1), [-1, 0], np.array([0, 1])])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_of_a_big_tensor_over_a_list_or_tuple_axis(axis, keepdim):
    x = big_matrix()
    np_axis = tuple(int(a) for a in axis)
    np.testing.assert_allclose(op.sum(x, axis, keepdim).value, np.sum(x, axis=np_axis, keepdims=keepdim), rtol=1e-12)


@pytest.mark.parametrize("axis", [[0], (0, 1), [1], (-1,)])
def test_mean_of_a_big_tensor_over_a_list_or_tuple_axis(axis):
    x = big_matrix(np.float32)
    np.testing.assert_allclose(op.mean(x, axis).value, np.mean(x, axis=tuple(axis)), rtol=1e-6)


def test_keyword_axis_of_a_big_tensor():
    x = big_matrix()
    np.testing.assert_allclose(op.sum(x, axis=[0, 1], keepdim=True).value, x.sum(keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(op.mean(x=x, axis=(1,)).value, x.mean(axis=1), rtol=1e-12)


def test_big_reductions_inside_a_module_with_list_axes():
    class Reduce(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return op.sum(op.mean(x, [1], True), (0, 1))

    m = Reduce()
    x = big_matrix()
    result = m(x)
    result.back()
    np.testing.assert_allclose(result.value, x.mean(axis=1).sum(), rtol=1e-12)
    np.testing.assert_allclose(result.grad(m.input("x")), np.full(x.shape, 2 / BIG), rtol=1e-12)


def test_list_arguments_of_every_binding_on_big_tensors():
    # The audit: sum and mean released the GIL with their axis list unread; the others keep it,
    # or take converted arguments.
    x = big_matrix()
    np.testing.assert_allclose(op.sum(x, [1]).value, x.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(op.mean(x, (0,)).value, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(op.var(x, [1]).value, x.var(axis=1, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(op.std(x, (0, 1)).value, x.std(ddof=1), rtol=1e-10)
    np.testing.assert_allclose(op.logsumexp(x, [1]).value, np.log(np.exp(x).sum(axis=1)), rtol=1e-12)
    np.testing.assert_array_equal(op.reshape(x, [BIG]).value, x.reshape(-1))
    np.testing.assert_array_equal(op.reshape(x, (4, -1)).value, x.reshape(4, -1))
    parts = op.split(x, [BIG // 4, BIG // 4], 1)
    np.testing.assert_array_equal(parts[1].value, x[:, BIG // 4:])
    np.testing.assert_allclose(op.layer_norm(x, [BIG // 2]).value,
                               (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(op.add(x, x).value, 2 * x)
    np.testing.assert_allclose(op.exp(x).value, np.exp(x))
    w = np.ones((3, BIG // 2))
    np.testing.assert_allclose(op.linear(x, w, np.zeros(3)).value, x @ w.T, rtol=1e-12)


# ---- 2. byte order -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, native", [(">f8", np.float64), (">f4", np.float32), (">i8", np.int64)])
def test_arrays_of_any_byte_order_convert_to_the_native_values(dtype, native):
    values = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    result = op.add(values, 0).value
    assert result.dtype == native
    np.testing.assert_array_equal(result, values.astype(native))


def test_byte_swapped_strided_views_and_scalars():
    base = np.arange(24.).reshape(4, 6).astype(">f8")
    view = base[::-2, 1::2]
    np.testing.assert_array_equal(op.mult(view, 2).value, 2 * view.astype(np.float64))
    scalar = op.neg(np.array(3.5, dtype=">f8")).value
    assert scalar.shape == () and scalar == -3.5  # 0-d stays 0-d (the first fix made it (1,))
    assert op.sum(np.zeros((0, 3), dtype=">f4")).value == 0
    # Byte-swapped dtypes that are converted anyway (to int64, float64) were fine and stay so.
    for dtype, native in [(">i4", np.int64), (">u2", np.int64), (">f2", np.float64), (">u8", np.int64)]:
        result = op.reshape(np.arange(12).reshape(3, 4).astype(dtype)[:, ::-1], [12]).value
        assert result.dtype == native
        np.testing.assert_array_equal(result, np.arange(12).reshape(3, 4)[:, ::-1].reshape(-1))


def test_byte_swapped_module_input_and_parameter_give_gradients():
    class Simple(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", np.array([1.0], dtype=">f8")),))

        def call(self, x):
            return op.mult(op.add(x, self.param("w")), op.square(x))

    m = Simple()
    result = m(np.array([3., 4., 5.], dtype=">f8"))
    result.back(np.ones(3))
    np.testing.assert_array_equal(result.value, [36., 80., 150.])
    np.testing.assert_array_equal(result.grad(m.input("x")), [33., 56., 85.])


# ---- 3. integers beyond int64 ------------------------------------------------------------------

def test_uint64_values_beyond_int64_are_refused():
    with pytest.raises(TypeError, match=r"9223372036854775808.*int64"):
        op.add(np.array([1, 2**63], dtype=np.uint64), 0)
    with pytest.raises(DTypeError, match="int64"):
        op.sum(np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(TypeError, match="int64"):
        op.neg(np.uint64(2**63))
    # Within int64's range they convert exactly.
    values = np.array([0, 2**63 - 1, 12345], dtype=np.uint64)
    result = op.reshape(values, [3]).value
    assert result.dtype == np.int64
    assert result.tolist() == [0, 2**63 - 1, 12345]
    assert op.sum(np.zeros(0, dtype=np.uint64)).value == 0


def test_python_ints_are_exact_int64_values():
    # Used to go through a double: 2**62 + 1 became 2**62, 2**63 - 1 wrapped to -2**63.
    assert int(op.add(2**62 + 1, 0).value) == 2**62 + 1
    assert int(op.add(2**63 - 1, 0).value) == 2**63 - 1
    assert int(op.add(-2**63, 0).value) == -2**63


@pytest.mark.parametrize("value", [2**64, 2**63, -2**63 - 1, 2**70])
def test_python_ints_beyond_int64_are_refused_with_the_range(value):
    with pytest.raises(TypeError, match=rf"int64 range.*got {value}"):
        op.add(np.ones(2), value)


def test_shapes_and_axes_beyond_int64_are_refused_with_the_value():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match=r"reshape.*int64 range.*got 1180591620717411303424"):
        op.reshape(x, [2**70])
    with pytest.raises(TypeError, match=r"sum.*int64 range.*got 18446744073709551616"):
        op.sum(x, [2**64])
    with pytest.raises(TypeError, match=r"mean.*int64 range"):
        op.mean(x, 2**64)
    with pytest.raises(TypeError, match=r"logsumexp.*int64 range"):
        op.logsumexp(x, [2**64])
    with pytest.raises(TypeError, match=r"reshape.*expects an integer, got 'float'"):
        op.reshape(x, [2.0, 3])
    with pytest.raises(TypeError, match=r"normalized_shape.*int64 range"):
        nn.LayerNorm([2**70])
    with pytest.raises(TypeError, match=r"kernel_size.*int64 range"):
        nn.Conv2d(1, 1, (2**70, 1))


def test_numpy_integers_are_accepted_as_shapes_and_axes():
    x = np.arange(6.).reshape(2, 3)
    np.testing.assert_array_equal(op.reshape(x, np.array([3, 2])).value, x.reshape(3, 2))
    np.testing.assert_array_equal(op.sum(x, np.int32(1)).value, x.sum(1))
    np.testing.assert_array_equal(op.sum(x, [np.int64(0)]).value, x.sum(0))


def test_sequential_of_a_non_module_says_it_expects_modules():
    with pytest.raises(TypeError, match=r"Sequential expects modules.*got 'int'"):
        nn.Sequential(3)
    with pytest.raises(TypeError, match=r"got 'str' as argument 2"):
        nn.Sequential(nn.ReLU(), "relu")


# ---- 4. modules and parameters assigned before super().__init__() ------------------------------

def test_assigning_a_module_before_init_raises_like_pytorch():
    class Early(cg.Module):
        def __init__(self):
            self.l1 = nn.Linear(2, 2)
            super().__init__(inputs=(cg.Variable("x"),))

    with pytest.raises(AttributeError, match=r"cannot assign module 'l1' before Module.__init__\(\) call"):
        Early()


def test_assigning_a_python_module_before_init_raises():
    class Inner(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return x

    class Early(cg.Module):
        def __init__(self):
            self.inner = Inner()
            super().__init__(inputs=(cg.Variable("x"),))

    with pytest.raises(AttributeError, match="cannot assign module 'inner'"):
        Early()


def test_assigning_a_parameter_before_init_raises():
    class Early(cg.Module):
        def __init__(self):
            self.w = cg.Parameter("w", 1.0)
            super().__init__(inputs=(cg.Variable("x"),))

    with pytest.raises(AttributeError, match=r"cannot assign parameter 'w' before Module.__init__\(\) call"):
        Early()


def test_registering_before_init_raises_a_usage_error():
    class Early(cg.Module):
        def __init__(self):
            self.register_parameter("w", 1.0)
            super().__init__()

    with pytest.raises(UsageError, match=r"cannot register parameter 'w' before Early.__init__\(\)"):
        Early()

    # Plain attributes before, modules after super().__init__() are fine.
    class Fine(cg.Module):
        def __init__(self):
            self.width = 2
            super().__init__(inputs=(cg.Variable("x"),))
            self.l1 = nn.Linear(self.width, 3)

        def call(self, x):
            return self.l1(x)

    m = Fine()
    assert [name for name, _ in m.named_parameters()] == ["l1.weight", "l1.bias"]
    assert m(np.ones((1, 2), dtype=np.float32)).value.shape == (1, 3)


# ---- 5. torch dtypes through DLPack -----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.float16])
def test_torch_tensors_convert_like_numpy_arrays_of_their_dtype(dtype):
    t = (torch.arange(12) % 5).reshape(3, 4).to(dtype)
    expected = op.add(t.numpy(), 0).value
    result = op.add(t, 0).value
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(result, t.numpy())


def test_non_contiguous_torch_int32_and_float16_views():
    t = torch.arange(12, dtype=torch.int32).reshape(3, 4).t()
    np.testing.assert_array_equal(op.add(t, 0).value, t.numpy())
    h = torch.linspace(-2, 2, 12, dtype=torch.float16).reshape(3, 4)[:, ::2]
    result = op.mult(h, 1.0).value
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, h.numpy().astype(np.float64))


def test_torch_bfloat16_becomes_float64():
    t = torch.tensor([1.5, -2.0, 0.0, 3.25], dtype=torch.bfloat16)
    result = op.add(t, 0).value
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [1.5, -2.0, 0.0, 3.25])


def test_torch_int32_module_input_and_complex_refusal():
    class Double(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return op.mult(x, 2)

    np.testing.assert_array_equal(Double()(torch.tensor([1, 2, 3], dtype=torch.int32)).value, [2, 4, 6])
    with pytest.raises(TypeError):
        op.add(torch.ones(2, dtype=torch.complex64), 0)


# ---- 7. empty layers ----------------------------------------------------------------------------

def test_linear_with_zero_in_features_works_as_in_pytorch():
    layer = nn.Linear(0, 5)
    assert layer.weight.shape == (5, 0)
    result = layer(np.zeros((3, 0), dtype=np.float32))
    assert result.value.shape == (3, 5)
    np.testing.assert_array_equal(result.value, np.broadcast_to(layer.bias.value, (3, 5)))


@pytest.mark.parametrize("call", [
    lambda self: self.parameters(),
    lambda self: self.named_parameters(),
    lambda self: self.zero_grad(),
    lambda self: self.param("w"),
    lambda self: self.input("x"),
    lambda self: self.name,
    lambda self: self.training,
    lambda self: self.named_buffers(),
    lambda self: self.train(),
    lambda self: self(1.0),
])
def test_methods_before_super_init_raise_instead_of_crashing(call):
    class Early(cg.Module):
        def __init__(self):
            call(self)
            super().__init__(inputs=(cg.Variable("x"),))

    with pytest.raises(UsageError, match=r"before Early.__init__\(\) has called super\(\).__init__\(\)"):
        Early()
