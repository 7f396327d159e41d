"""Values in and out of zkynet: Python numbers, lists, numpy arrays and torch tensors go in
(numpy and DLPack ones without a copy); values and gradients come out as read-only numpy arrays
over zkynet's memory that export themselves through DLPack."""
import gc

import numpy as np
import pytest

from zkynet.framework import cg, op

torch = pytest.importorskip("torch")


class SimpleModel(cg.Module):
    def __init__(self, w0=1):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", w0),))

    def call(self, x):
        return op.mult(op.add(x, self.param("w")), op.square(x))


class Identity(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def call(self, x):
        return x


class Flatten(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))

    def call(self, x):
        return op.reshape(x, [-1])


def data_address(array):
    return array.__array_interface__["data"][0]


# ---- what goes in ------------------------------------------------------------------------------

def test_python_int_is_an_int64_scalar_as_in_pytorch():
    value = op.add(3, 4).value
    assert value.shape == () and value.dtype == np.int64 and value == 7


def test_python_int_with_a_python_float_is_a_float64_scalar():
    value = op.add(3, 0.5).value
    assert value.dtype == np.float64 and value == 3.5


def test_integer_parameter_values_become_float64():
    assert cg.Parameter("w", 1).value.dtype == np.float64


def test_python_float_is_a_float64_scalar():
    value = op.mult(1.5, 2.0).value
    assert value.dtype == np.float64 and value == 3.0


def test_list_of_floats_is_a_float64_vector():
    value = op.add([1.5, 2.5], 1).value
    assert value.dtype == np.float64
    np.testing.assert_array_equal(value, [2.5, 3.5])


def test_nested_list_is_a_matrix():
    value = op.matmul([[1., 2.], [3., 4.]], [[1.], [1.]]).value
    np.testing.assert_array_equal(value, [[3.], [7.]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_numpy_dtype_is_kept(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    value = op.add(a, 1).value
    assert value.dtype == dtype
    np.testing.assert_array_equal(value, a + 1)


def test_numpy_int32_is_converted_to_int64():
    value = op.add(np.arange(3, dtype=np.int32), 1).value
    assert value.dtype == np.int64
    np.testing.assert_array_equal(value, [1, 2, 3])


def test_numpy_scalar_float32_stays_float32():
    value = op.add(np.float32(2.5), 1).value
    assert value.dtype == np.float32 and value == 3.5


@pytest.mark.parametrize("dtype, np_dtype", [(torch.float32, np.float32), (torch.float64, np.float64),
                                             (torch.int64, np.int64)])
def test_torch_tensor_is_accepted_with_its_dtype(dtype, np_dtype):
    t = torch.arange(6, dtype=dtype).reshape(2, 3)
    value = op.add(t, 1).value
    assert value.dtype == np_dtype
    np.testing.assert_array_equal(value, t.numpy() + 1)


def test_torch_tensor_as_module_input_gives_gradients():
    m = SimpleModel()
    result = m(torch.tensor([3., 4., 5.], dtype=torch.float64))
    result.back()
    np.testing.assert_array_equal(result.value, [36., 80., 150.])
    np.testing.assert_array_equal(result.grad(m.input("x")), np.diag([33., 56., 85.]))


def test_torch_tensor_that_requires_grad_is_refused_by_torch():
    with pytest.raises(RuntimeError, match="require"):
        op.add(torch.ones(3, requires_grad=True), 1)


def test_float32_stays_float32_through_a_module_and_its_gradients():
    m = SimpleModel()
    result = m(np.array([3., 4., 5.], dtype=np.float32))
    result.back(np.ones(3, dtype=np.float32))
    assert result.value.dtype == np.float32
    assert result.grad(m.input("x")).dtype == np.float32
    np.testing.assert_allclose(result.grad(m.input("x")), [33., 56., 85.])


# ---- zero copy ---------------------------------------------------------------------------------

def test_float64_numpy_input_is_not_copied():
    a = np.arange(6.).reshape(2, 3)
    assert np.shares_memory(op.reshape(a, [6]).value, a)


def test_module_input_node_shares_the_numpy_array():
    a = np.arange(6.).reshape(2, 3)
    result = Identity()(a)
    assert np.shares_memory(result.value, a)


def test_module_output_of_reshape_shares_the_numpy_array():
    a = np.arange(6.).reshape(2, 3)
    assert np.shares_memory(Flatten()(a).value, a)


def test_float32_numpy_input_is_not_copied():
    a = np.arange(6, dtype=np.float32)
    assert np.shares_memory(op.reshape(a, [2, 3]).value, a)


def test_torch_tensor_is_not_copied():
    t = torch.arange(6, dtype=torch.float64)
    value = op.reshape(t, [2, 3]).value
    assert data_address(value) == t.data_ptr()


def test_writing_the_torch_tensor_shows_in_the_zkynet_value():
    t = torch.arange(6, dtype=torch.float64)
    node = op.reshape(t, [2, 3])
    t[0] = 100.
    assert node.value[0, 0] == 100.


def test_converted_numpy_array_outlives_its_python_name():
    a = np.arange(6.)
    node = op.reshape(a, [2, 3])
    del a
    gc.collect()
    np.testing.assert_array_equal(node.value, np.arange(6.).reshape(2, 3))


def test_converted_torch_tensor_outlives_its_python_name():
    t = torch.arange(6, dtype=torch.float64)
    node = op.reshape(t, [2, 3])
    del t
    gc.collect()
    np.testing.assert_array_equal(node.value, np.arange(6.).reshape(2, 3))


def test_read_only_numpy_input_is_accepted():
    a = np.arange(3.)
    a.flags.writeable = False
    np.testing.assert_array_equal(op.add(a, 1).value, [1., 2., 3.])


def test_broadcast_view_input_is_accepted():
    a = np.broadcast_to(np.arange(3.), (2, 3))  # read-only, stride 0
    np.testing.assert_array_equal(op.add(a, 0).value, [[0., 1., 2.], [0., 1., 2.]])


def test_zkynet_value_can_be_fed_back_as_an_input():
    value = op.add(np.ones(3), 1).value
    np.testing.assert_array_equal(op.mult(value, value).value, [4., 4., 4.])


# ---- non-contiguous inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("view", [lambda a: a[:, ::2], lambda a: a.T, lambda a: a[1:, 1:], lambda a: a[::-1],
                                  lambda a: a[:, ::-2]],
                         ids=["column-step", "transpose", "slice", "reversed", "negative-step"])
def test_non_contiguous_numpy_input_gives_correct_values(view):
    a = np.arange(12.).reshape(3, 4)
    x = view(a)
    np.testing.assert_array_equal(op.mult(op.add(x, 1), x).value, (x + 1) * x)


def test_transposed_numpy_input_gives_correct_matmul():
    a = np.arange(6.).reshape(2, 3)
    np.testing.assert_allclose(op.matmul(a.T, a).value, a.T @ a)


def test_non_contiguous_input_gives_correct_jacobian():
    a = np.arange(1., 13.).reshape(3, 4)
    x = a[:, ::2]
    m = SimpleModel()
    result = m(x)
    result.back(np.ones_like(x))
    np.testing.assert_array_equal(result.grad(m.input("x")), 3 * x ** 2 + 2 * x)


@pytest.mark.parametrize("view", [lambda t: t.T, lambda t: t[:, ::2], lambda t: t[1:, 1:]],
                         ids=["transpose", "column-step", "slice"])
def test_non_contiguous_torch_input_gives_correct_values(view):
    t = view(torch.arange(12, dtype=torch.float64).reshape(3, 4))
    np.testing.assert_array_equal(op.add(t, 1).value, t.numpy() + 1)


# ---- what comes out ----------------------------------------------------------------------------

def test_values_are_read_only():
    value = SimpleModel()(np.array([3., 4.])).value
    assert not value.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        value[0] = 1.


def test_gradients_are_read_only():
    m = SimpleModel()
    result = m(np.array([3., 4.]))
    result.back(np.ones(2))
    with pytest.raises(ValueError, match="read-only"):
        result.grad(m.input("x"))[0] = 1.


def test_parameter_values_are_read_only():
    with pytest.raises(ValueError, match="read-only"):
        SimpleModel().param("w").value[...] = 5.


def test_writing_into_a_copy_of_a_value_leaves_the_graph_unchanged():
    result = SimpleModel()(np.array([3., 4.]))
    copy = result.value.copy()
    copy[0] = -1.
    np.testing.assert_array_equal(result.value, [36., 80.])


def test_values_are_numpy_arrays():
    value = op.add(np.ones(3), 1).value
    assert isinstance(value, np.ndarray)
    assert isinstance(value, cg.ValueArray)


def test_numpy_arithmetic_on_values_gives_plain_arrays():
    value = op.add(np.ones(3), 1).value
    assert type(value * 2) is np.ndarray
    assert type(np.sqrt(value)) is np.ndarray
    assert type(value.sum()) is np.float64


def test_value_exports_to_torch_through_dlpack_without_copy():
    value = op.add(np.arange(6.).reshape(2, 3), 1).value
    t = torch.from_dlpack(value)
    assert t.data_ptr() == data_address(value)
    assert t.shape == (2, 3) and t.dtype == torch.float64
    np.testing.assert_array_equal(t.numpy(), value)


@pytest.mark.parametrize("dtype, torch_dtype", [(np.float32, torch.float32), (np.int64, torch.int64)])
def test_dlpack_export_keeps_the_dtype(dtype, torch_dtype):
    value = op.add(np.arange(4, dtype=dtype), 1).value
    assert torch.from_dlpack(value).dtype == torch_dtype


def test_dlpack_export_of_a_strided_view():
    value = op.add(np.arange(12.).reshape(3, 4), 0).value
    t = torch.from_dlpack(value[:, 1::2])
    np.testing.assert_array_equal(t.numpy(), value[:, 1::2])


def test_dlpack_export_refuses_negative_strides():
    value = op.add(np.arange(4.), 0).value
    with pytest.raises(BufferError, match="negative"):
        value[::-1].__dlpack__()


def test_dlpack_export_keeps_the_memory_alive():
    result = SimpleModel()(np.array([3., 4., 5.]))
    t = torch.from_dlpack(result.value)
    del result
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), [36., 80., 150.])


def test_numpy_from_dlpack_reads_a_value():
    value = op.add(np.arange(3.), 1).value
    np.testing.assert_array_equal(np.from_dlpack(value), [1., 2., 3.])


def test_gradient_exports_to_torch():
    m = SimpleModel()
    result = m(3.)
    result.back()
    assert torch.from_dlpack(result.grad(m.input("x"))).item() == 33.


def test_value_outlives_its_graph_and_module():
    m = SimpleModel()
    value = m(np.array([3., 4.])).value
    del m
    gc.collect()
    np.testing.assert_array_equal(value, [36., 80.])


def test_int64_array_plus_a_float_scalar_is_not_truncated():
    np.testing.assert_array_equal(op.add(np.array([3, 4, 5]), 1.5).value, [4.5, 5.5, 6.5])
