"""zkynet's C++ errors as Python exceptions with their messages, and misuse that must raise
rather than crash the interpreter."""
import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from zkynet.framework import cg, op


class SimpleModel(cg.Module):
    def __init__(self, w0=1):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", w0),))

    def call(self, x):
        return op.mult(op.add(x, self.param("w")), op.square(x))


class Linear(cg.Module):
    def __init__(self, n_in, n_out):
        super().__init__(inputs=(cg.Variable("x"),))
        self.register_parameter("weight", np.ones((n_in, n_out)))

    def call(self, x):
        return op.matmul(x, self.param("weight"))


class Mismatched(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.l1 = Linear(3, 4)
        self.l2 = Linear(5, 1)

    def call(self, x):
        return self.l2(self.l1(x))


class Chain(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.l1 = Linear(3, 4)
        self.l2 = Linear(4, 1)

    def call(self, x):
        return self.l2(self.l1(x))


class Returns(cg.Module):
    """call() returns a fixed Python object."""

    def __init__(self, result):
        super().__init__(inputs=(cg.Variable("x"),))
        self.result = result

    def call(self, x):
        return self.result


class CustomError(Exception):
    pass


class Raises(cg.Module):
    def __init__(self, error):
        super().__init__(inputs=(cg.Variable("x"),))
        self.error = error
        self.inner = SimpleModel()

    def call(self, x):
        self.inner(x)  # a nested call is open when the error is raised
        raise self.error


class Pair(cg.Operator):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")))

    def _op_impl(self, a, b):
        return a * b


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


# ---- shapes: ValueError ------------------------------------------------------------------------

def test_matmul_shape_error_is_a_value_error_naming_operator_and_shapes():
    with pytest.raises(ValueError, match=r"matmul \(2,3\) x \(4,5\): inner dimensions differ \(3 vs 4\)"):
        op.matmul(np.ones((2, 3)), np.ones((4, 5)))


def test_broadcast_error_is_a_value_error_naming_operator_and_shapes():
    with pytest.raises(ValueError, match=r"add \(2,3\) and \(4,\): shapes cannot be broadcast"):
        op.add(np.ones((2, 3)), np.ones(4))


def test_shape_error_inside_nested_python_modules_is_a_value_error():
    with pytest.raises(ValueError, match=r"matmul \(2,4\) x \(5,1\)"):
        Mismatched()(np.ones((2, 3)))


def test_shape_error_inside_a_python_module_names_the_module_path():
    with pytest.raises(ValueError, match=r"l2 \(Linear\): matmul"):
        Mismatched()(np.ones((2, 3)))


def test_back_seed_of_the_wrong_shape_is_a_value_error():
    result = SimpleModel()(np.array([1., 2.]))
    with pytest.raises(ValueError, match=r"seed of shape \(5,\) for a root of shape \(2,\)"):
        result.back(np.ones(5))


def test_reshape_to_a_different_size_is_a_value_error():
    with pytest.raises(ValueError, match="reshape"):
        op.reshape(np.ones(6), [4])


# ---- types: TypeError --------------------------------------------------------------------------

def test_mixed_float_dtypes_are_a_type_error():
    with pytest.raises(TypeError, match=r"add \(2,\) float32 and \(2,\) float64: dtypes differ"):
        op.add(np.ones(2, dtype=np.float32), np.ones(2))


def test_int_and_float_arrays_promote_to_float():
    value = op.add(np.ones(2, dtype=np.int64), np.full(2, 0.5)).value
    assert value.dtype == np.float64
    np.testing.assert_array_equal(value, [1.5, 1.5])


def test_float32_and_float64_arrays_are_a_type_error():
    with pytest.raises(TypeError, match="float32 and .* float64: dtypes differ"):
        op.add(np.ones(2, dtype=np.float32), np.ones(2))


@pytest.mark.parametrize("value, type_name", [({"a": 1}, "dict"), ("abc", "str"), (None, "NoneType"),
                                              (object(), "object")])
def test_value_of_the_wrong_type_is_a_type_error_naming_it(value, type_name):
    with pytest.raises(TypeError, match=f"cannot use a value of type '{type_name}' as a tensor"):
        op.add(value, 1)


@pytest.mark.parametrize("value", [{"x": 3}, "3"])
def test_module_input_of_the_wrong_type_is_a_type_error(value):
    with pytest.raises(TypeError, match="as a tensor"):
        SimpleModel()(value)


def test_complex_array_is_a_type_error():
    with pytest.raises(TypeError, match="dtype complex128"):
        op.add(np.array([1 + 2j]), 1)


def test_string_array_is_a_type_error():
    with pytest.raises(TypeError, match="dtype <U"):
        op.add(np.array(["a", "b"]), 1)


def test_parameter_with_a_string_value_is_a_type_error():
    with pytest.raises(TypeError, match="'str'"):
        cg.Parameter("w", "abc")


def test_grad_of_something_that_is_not_an_input_or_node_is_a_type_error():
    result = SimpleModel()(3.)
    result.back()
    with pytest.raises(TypeError, match="grad"):
        result.grad("w")


# ---- names: IndexError -------------------------------------------------------------------------

def test_unknown_parameter_name_is_an_index_error_listing_the_known_ones():
    with pytest.raises(IndexError, match=r"SimpleModel: no parameter named 'v' \(parameters: w\)"):
        SimpleModel().param("v")


def test_unknown_input_name_is_an_index_error_listing_the_known_ones():
    with pytest.raises(IndexError, match=r"SimpleModel: no input named 'y' \(inputs: x\)"):
        SimpleModel().input("y")


# ---- usage: RuntimeError -----------------------------------------------------------------------

def test_grad_of_an_input_absent_from_the_graph_is_a_runtime_error():
    result = SimpleModel()(3.)
    result.back()
    other = SimpleModel()
    with pytest.raises(RuntimeError, match="input 'x' is not part of graph"):
        result.grad(other.input("x"))


def test_grad_of_a_parameter_absent_from_the_graph_is_a_runtime_error():
    result = SimpleModel()(3.)
    result.back()
    with pytest.raises(RuntimeError, match="parameter 'w' is not part of graph"):
        result.grad(SimpleModel().param("w"))


def test_grad_before_back_is_a_runtime_error():
    m = SimpleModel()
    result = m(3.)
    with pytest.raises(RuntimeError, match=r"call back\(\) on graph #\d+ first"):
        result.grad(m.param("w"))


def test_back_of_one_graph_does_not_give_another_its_gradients():
    m = SimpleModel()
    first, second = m(3.), m(3.)
    first.back()
    with pytest.raises(RuntimeError, match="back"):
        second.grad(m.param("w"))


def test_too_many_inputs_to_a_module_is_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"SimpleModel: expected 1 input\(s\) \(x\), got 2"):
        SimpleModel()(1., 2.)


def test_too_few_inputs_to_a_module_is_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"expected 1 input\(s\) \(x\), got 0"):
        SimpleModel()()


def test_operands_from_two_calls_are_a_runtime_error():
    m = SimpleModel()
    with pytest.raises(RuntimeError, match=r"add: operands belong to different graphs \(calls #\d+ and #\d+\)"):
        op.add(m(2.), m(3.))


def test_roots_from_two_calls_are_a_runtime_error():
    m = SimpleModel()
    with pytest.raises(RuntimeError, match="different graphs"):
        op.mult(m(2.).root, m(3.).root)


def test_python_operator_with_too_few_inputs_is_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"Pair: expected 2 input\(s\) \(a, b\), got 1"):
        Pair()(1.)


def test_python_operator_with_too_many_inputs_is_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"Pair: expected 2 input\(s\) \(a, b\), got 3"):
        Pair()(1., 2., 3.)


# ---- misuse that must not crash ----------------------------------------------------------------

def test_graph_still_works_after_its_module_is_deleted():
    m = SimpleModel()
    w = m.param("w")
    result = m(3.)
    del m
    gc.collect()
    result.back()
    assert result.grad(w) == 9.
    assert result.value == 36.


def test_graph_of_nested_modules_still_works_after_they_are_deleted():
    m = Chain()
    w1 = m.l1.param("weight")
    result = m(np.ones((2, 3)))
    del m
    gc.collect()
    result.back(np.ones((2, 1)))
    # y = x W1 W2 with all-ones matrices: dy/dW1 summed over the batch = x^T 1 W2^T = 2 everywhere.
    np.testing.assert_array_equal(result.grad(w1), 2 * np.ones((3, 4)))


@pytest.mark.parametrize("result", ["a string", None, {"a": 1}], ids=["str", "None", "dict"])
def test_call_returning_a_non_node_is_a_type_error(result):
    with pytest.raises(TypeError, match=r"Returns.*call\(\) returned a '.+'; it must return a node"):
        Returns(result)(1.)


def test_call_returning_a_number_gives_a_constant_graph():
    result = Returns(5.)(1.)
    assert result.value == 5.


def test_python_exception_in_call_propagates_unchanged():
    error = CustomError("from call()")
    with pytest.raises(CustomError) as caught:
        Raises(error)(1.)
    assert caught.value is error


@pytest.mark.parametrize("error_type", [ValueError, TypeError, KeyError, RuntimeError])
def test_builtin_exception_in_call_keeps_its_type_and_message(error_type):
    with pytest.raises(error_type, match="my message"):
        Raises(error_type("my message"))(1.)


def test_calls_after_an_exception_in_call_are_independent_graphs():
    with pytest.raises(CustomError):
        Raises(CustomError())(1.)
    assert not op.add(np.ones(2), 1).in_graph  # no call is left open
    m = SimpleModel()
    result = m(3.)
    result.back()
    assert result.grad(m.input("x")) == 33.


def test_python_exception_in_op_impl_propagates():
    class Failing(cg.Operator):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def _op_impl(self, x):
            raise CustomError("forward failed")

    with pytest.raises(CustomError, match="forward failed"):
        Failing()(1.)


def test_python_exception_in_vjp_propagates():
    class FailingVjp(cg.Operator):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def _op_impl(self, x):
            return x * 2

        def vjp(self, grad, output, x):
            raise CustomError("vjp failed")

    result = FailingVjp()(1.)
    with pytest.raises(CustomError, match="vjp failed"):
        result.back()


def test_module_without_call_raises_not_implemented():
    class NoCall(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

    with pytest.raises(NotImplementedError, match=r"NoCall must define call\(self, ...\)"):
        NoCall()(1.)


def test_module_subclass_that_forgot_super_init_raises_in_a_clean_process():
    completed = run_python("""
        from zkynet.framework import cg, op

        class Forgot(cg.Module):
            def __init__(self):
                self.scale = 2.0

            def call(self, x):
                return op.mult(x, self.scale)

        Forgot()(3.0)
    """)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback (most recent call last)" in completed.stderr
    assert "__init__() must be called when overriding __init__" in completed.stderr


def test_operator_subclass_that_forgot_super_init_raises_in_a_clean_process():
    completed = run_python("""
        from zkynet.framework import cg

        class Forgot(cg.Operator):
            def __init__(self):
                pass

            def _op_impl(self, x):
                return x

        Forgot()(3.0)
    """)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback (most recent call last)" in completed.stderr
    assert "__init__() must be called when overriding __init__" in completed.stderr


def test_module_cycle_raises_in_a_clean_process():
    completed = run_python("""
        from zkynet.framework import cg

        class Box(cg.Module):
            def __init__(self):
                super().__init__(inputs=(cg.Variable("x"),))

            def call(self, x):
                return x

        a, b = Box(), Box()
        a.b = b
        b.a = a
        print(a.named_parameters())
    """)
    assert completed.returncode == 1, completed.stderr
    assert "zkynet.UsageError: Box: registering 'a' (Box) would make a module contain itself" in completed.stderr


def test_a_module_cannot_contain_itself():
    m = SimpleModel()
    with pytest.raises(RuntimeError, match="contain itself"):
        m.me = m


# ---- no_grad -----------------------------------------------------------------------------------

def test_no_grad_records_no_nodes():
    m = SimpleModel()
    with cg.no_grad():
        result = m(3.)
    assert result.num_nodes == 0
    assert result.value == 36.


def test_back_of_a_no_grad_result_is_a_runtime_error():
    with cg.no_grad():
        result = SimpleModel()(3.)
    with pytest.raises(RuntimeError, match="without recording a graph"):
        result.back()


def test_recording_resumes_after_no_grad():
    m = SimpleModel()
    with cg.no_grad():
        m(3.)
    result = m(3.)
    result.back()
    assert result.num_nodes == 5
    assert result.grad(m.param("w")) == 9.


def test_recording_resumes_after_an_exception_inside_no_grad():
    with pytest.raises(CustomError):
        with cg.no_grad():
            raise CustomError()
    assert SimpleModel()(3.).num_nodes == 5
