"""zkynet's documented Python examples, verbatim, with the values and gradients they promise;
and, at the end, every ```python block of every README run as it stands.

The models and operators below are copied from zkynet's README (the Operator examples with
numpy in place of jax.numpy); expected numbers are worked out by hand from
f(x) = (x + w) x^2:  df/dx = 3x^2 + 2wx,  df/dw = x^2.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zkynet.framework import cg, op
from zkynet.framework.cg import Operator, Variable
from zkynet.visual import graphviz_available, plot_cg


class SimpleModel(cg.Module):
    """A rather simple function that represents:

    f(x,w) = (x+w)*x^2

    where x is an input and w is a parameter.
    """
    def __init__(self, w0=1):
        super().__init__(inputs=(cg.Variable("x"),),
                         params=(cg.Parameter("w", w0),))

    def call(self, x):
        a = op.add(x, self.param("w"))
        b = op.square(x)
        c = op.mult(a, b)
        return c


class CompositeModel_NoWeightSharing_DifferentInputs(cg.Module):
    """used to test composition"""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),
                                 cg.Variable("x2")))
        # I expect the weights in the two may differ
        self._m1 = SimpleModel()
        self._m2 = SimpleModel()

    def call(self, x1, x2):
        a = self._m1(x1)
        b = self._m2(x2)
        return op.add(a, b)


class CompositeModel_WeightSharing_DifferentInputs(cg.Module):
    """used to test composition"""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),
                                 cg.Variable("x2")))
        # I expect the weights in the two may differ
        self._m1 = SimpleModel(w0=2)

    def call(self, x1, x2):
        a = self._m1(x1)
        b = self._m1(x2)
        return op.add(a, b)


class CompositeModel_NoWeightSharing_SameInputs(cg.Module):
    """used to test composition"""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),))
        # I expect the weights in the two may differ
        self._m1 = SimpleModel()
        self._m2 = SimpleModel()

    def call(self, x1):
        a = self._m1(x1)
        b = self._m2(x1)
        return op.add(a, b)


class CompositeModel_WeightSharing_SameInputs(cg.Module):
    """used to test composition"""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),))
        # I expect the weights in the two may differ
        self._m1 = SimpleModel()

    def call(self, x1):
        a = self._m1(x1)
        b = self._m1(x1)
        return op.add(a, b)


# "Writing an Operator" (jnp.square / jnp.dot -> np.square / np.dot).
class Add(Operator):
    def __init__(self):
        super().__init__(inputs=(Variable("a"), Variable("b")))

    def _op_impl(self, a, b):
        return a + b


class Multiply(Operator):
    def __init__(self):
        super().__init__(inputs=(Variable("a"), Variable("b")))

    def _op_impl(self, a, b):
        return a * b  # element wise multiplication


class Square(Operator):
    def __init__(self):
        super().__init__(inputs=(Variable("x"),))

    def _op_impl(self, x):
        return np.square(x)


class Dot(Operator):
    def __init__(self):
        super().__init__(inputs=(Variable("a"), Variable("b")))

    def _op_impl(self, a, b):
        return np.dot(a, b)


def add(a, b):
    return Add()(a, b)


def mult(a, b):
    return Multiply()(a, b)


def square(x):
    return Square()(x)


def dot(a, b):
    return Dot()(a, b)


# SimpleModel written with the documented Python operators instead of zkynet's built-in ones.
class SimpleModelPythonOps(cg.Module):
    def __init__(self, w0=1):
        super().__init__(inputs=(cg.Variable("x"),),
                         params=(cg.Parameter("w", w0),))

    def call(self, x):
        return mult(add(x, self.param("w")), square(x))


# g(a, b) = (a + w)^2 . b with the documented Dot, and the same with zkynet's op.dot.
class DotModelPythonOps(cg.Module):
    def __init__(self, w0):
        super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")), params=(cg.Parameter("w", w0),))

    def call(self, a, b):
        return dot(square(add(a, self.param("w"))), b)


class DotModelBuiltinOps(cg.Module):
    def __init__(self, w0):
        super().__init__(inputs=(cg.Variable("a"), cg.Variable("b")), params=(cg.Parameter("w", w0),))

    def call(self, a, b):
        return op.dot(op.square(op.add(a, self.param("w"))), b)


# ---- forward pass ------------------------------------------------------------------------------

def test_simple_model_at_3_is_36():
    m = SimpleModel()
    result = m(3)
    assert result.value == 36


def test_simple_model_initial_parameter_value_is_w0():
    assert SimpleModel().param("w").value == 1
    assert SimpleModel(w0=2).param("w").value == 2


def test_two_calls_give_unequal_graphs_and_roots():
    m = SimpleModel()
    result1 = m(3)
    result2 = m(3)
    assert result1 != result2
    assert result1.root != result2.root


def test_each_call_gets_a_new_call_id():
    m = SimpleModel()
    ids = [m(3).call_id for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(i > 0 for i in ids)


def test_a_graph_equals_itself():
    result = SimpleModel()(3)
    assert result == result
    assert result.root == result.root


def test_simple_model_on_a_vector():
    m = SimpleModel()
    result = m(np.array([3, 4, 5]))
    np.testing.assert_array_equal(result.value, [36, 80, 150])


# ---- gradients ---------------------------------------------------------------------------------

def test_simple_model_gradients_at_3():
    m = SimpleModel()
    result = m(3)
    result.back()  # backprop; accumulate gradients
    assert result.grad(m.param("w")) == 9
    assert result.grad(m.input("x")) == 33


def test_simple_model_vector_input_gives_diagonal_jacobian():
    m = SimpleModel()
    x = np.array([3., 4., 5.])
    result = m(x)
    result.back()
    np.testing.assert_array_equal(result.grad(m.input("x")), np.diag([33., 56., 85.]))


def test_simple_model_vector_input_gradient_of_w_is_x_squared():
    m = SimpleModel()
    result = m(np.array([3., 4., 5.]))
    result.back()
    # zkynet documents the column [[9], [16], [25]]: output (3,) + parameter shape ().
    np.testing.assert_array_equal(result.grad(m.param("w")), [9., 16., 25.])


def test_simple_model_matrix_input_gives_2x2x2x2_jacobian():
    m = SimpleModel()
    x = np.array([[1., 2.], [3., 4.]])
    result = m(x)
    result.back()
    jac = result.grad(m.input("x"))
    assert jac.shape == (2, 2, 2, 2)
    expected = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            expected[i, j, i, j] = 3 * x[i, j] ** 2 + 2 * 1 * x[i, j]
    np.testing.assert_array_equal(jac, expected)


def test_simple_model_matrix_input_gradient_of_w():
    m = SimpleModel()
    x = np.array([[1., 2.], [3., 4.]])
    result = m(x)
    result.back()
    np.testing.assert_array_equal(result.grad(m.param("w")), x ** 2)


def test_back_with_a_seed_gives_the_vector_jacobian_product():
    m = SimpleModel()
    result = m(np.array([3., 4., 5.]))
    result.back(np.array([1., 2., 3.]))
    np.testing.assert_array_equal(result.grad(m.input("x")), [33., 112., 255.])
    assert result.grad(m.param("w")) == pytest.approx(9 + 2 * 16 + 3 * 25)


def test_back_accumulates_the_parameter_gradient():
    m = SimpleModel()
    m(3).back()
    m(2).back()
    assert m.param("w").grad == pytest.approx(9 + 4)


# ---- the four composite models -----------------------------------------------------------------

def test_no_weight_sharing_different_inputs_value():
    m = CompositeModel_NoWeightSharing_DifferentInputs()
    result = m(3, 4)
    assert result.value == pytest.approx((3 + 1) * 9 + (4 + 1) * 16)  # 116


def test_no_weight_sharing_different_inputs_gradients():
    m = CompositeModel_NoWeightSharing_DifferentInputs()
    result = m(3, 4)
    result.back()
    assert result.grad(m._m1.param("w")) == pytest.approx(9)
    assert result.grad(m._m2.param("w")) == pytest.approx(16)
    assert result.grad(m.input("x1")) == pytest.approx(3 * 9 + 2 * 3)  # 33
    assert result.grad(m.input("x2")) == pytest.approx(3 * 16 + 2 * 4)  # 56


def test_weight_sharing_different_inputs_value():
    m = CompositeModel_WeightSharing_DifferentInputs()
    result = m(3, 3)
    assert result.value == pytest.approx(2 * (3 + 2) * 9)  # 90


def test_weight_sharing_different_inputs_gradients_sum_both_uses_of_w():
    m = CompositeModel_WeightSharing_DifferentInputs()
    result = m(3, 3)
    result.back()
    assert result.grad(m._m1.param("w")) == pytest.approx(9 + 9)
    assert result.grad(m.input("x1")) == pytest.approx(3 * 9 + 2 * 2 * 3)  # 39
    assert result.grad(m.input("x2")) == pytest.approx(39)


def test_weight_sharing_different_inputs_keeps_x1_and_x2_apart():
    m = CompositeModel_WeightSharing_DifferentInputs()
    result = m(3, 4)
    result.back()
    assert result.value == pytest.approx((3 + 2) * 9 + (4 + 2) * 16)  # 141
    assert result.grad(m._m1.param("w")) == pytest.approx(9 + 16)
    assert result.grad(m.input("x1")) == pytest.approx(3 * 9 + 2 * 2 * 3)  # 39
    assert result.grad(m.input("x2")) == pytest.approx(3 * 16 + 2 * 2 * 4)  # 64


def test_no_weight_sharing_same_inputs_value():
    m = CompositeModel_NoWeightSharing_SameInputs()
    result = m(3)
    assert result.value == pytest.approx(72)


def test_no_weight_sharing_same_inputs_gradients_sum_both_uses_of_x():
    m = CompositeModel_NoWeightSharing_SameInputs()
    result = m(3)
    result.back()
    assert result.grad(m._m1.param("w")) == pytest.approx(9)
    assert result.grad(m._m2.param("w")) == pytest.approx(9)
    assert result.grad(m.input("x1")) == pytest.approx(33 + 33)


def test_weight_sharing_same_inputs_value():
    m = CompositeModel_WeightSharing_SameInputs()
    result = m(3)
    assert result.value == pytest.approx(72)


def test_weight_sharing_same_inputs_gradients():
    m = CompositeModel_WeightSharing_SameInputs()
    result = m(3)
    result.back()
    assert result.grad(m._m1.param("w")) == pytest.approx(18)
    assert result.grad(m.input("x1")) == pytest.approx(66)


def test_documented_same_inputs_call_with_two_arguments_is_refused():
    # The README calls the one-input SameInputs models as m(3, 4); zkynet refuses the extra value.
    m = CompositeModel_NoWeightSharing_SameInputs()
    with pytest.raises(RuntimeError, match=r"expected 1 input\(s\) \(x1\), got 2"):
        m(3, 4)


def test_composite_submodules_are_named_after_their_attributes():
    m = CompositeModel_NoWeightSharing_DifferentInputs()
    assert [name for name, _ in m.named_parameters()] == ["_m1.w", "_m2.w"]


def test_weight_sharing_composite_lists_the_shared_parameter_once():
    m = CompositeModel_WeightSharing_SameInputs()
    assert len(m.parameters()) == 1


def test_weight_sharing_grounds_one_parameter_node():
    shared = CompositeModel_WeightSharing_DifferentInputs()(3, 4)
    separate = CompositeModel_NoWeightSharing_DifferentInputs()(3, 4)
    # Same operators; the separate model has one more parameter node (w of _m2).
    assert separate.num_nodes == shared.num_nodes + 1


def test_composite_graph_is_flat_and_joined_by_nested_calls():
    result = CompositeModel_NoWeightSharing_DifferentInputs()(3, 4)
    # x1, x2, two w's, two (add, square, mult) and the final add: one graph, one call id.
    assert result.num_nodes == 2 + 2 + 6 + 1


# ---- plot_cg -----------------------------------------------------------------------------------

def test_plot_cg_writes_dot_and_png(tmp_path):
    m = SimpleModel()
    result = m(3)
    paths = plot_cg(result.root, wait=2, title="simpel model", directory=str(tmp_path))
    assert paths[0].endswith(".dot")
    assert os.path.dirname(paths[0]) == str(tmp_path)
    dot_text = open(paths[0]).read()
    assert dot_text.startswith('digraph "simpel model"')
    assert "= 36" in dot_text


@pytest.mark.skipif(not graphviz_available(), reason="graphviz (dot) is not installed")
def test_plot_cg_png_is_a_png_file(tmp_path):
    paths = plot_cg(SimpleModel()(3).root, wait=2, title="simpel model", directory=str(tmp_path))
    assert len(paths) == 2 and paths[1].endswith(".png")
    with open(paths[1], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_cg_default_directory_is_zkynet_graphs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = plot_cg(SimpleModel()(3).root, wait=2, title="simpel model")
    assert paths[0] == os.path.join("zkynet-graphs", "simpel_model.dot")
    assert (tmp_path / "zkynet-graphs" / "simpel_model.dot").is_file()


@pytest.mark.parametrize("model, args, title, clusters", [
    (CompositeModel_NoWeightSharing_DifferentInputs, (3, 4), "NoWeightSharing_DifferentInputs", 3),
    (CompositeModel_WeightSharing_DifferentInputs, (3, 3),
     "test_visualize_CompositeModel_WeightSharing_**Different**Inputs", 3),
    (CompositeModel_NoWeightSharing_SameInputs, (3,),
     "test_visualize_CompositeModel_**No**WeightSharing_**Same**Inputs", 3),
    (CompositeModel_WeightSharing_SameInputs, (3,), "test_visualize_CompositeModel_WeightSharing_**Same**Inputs", 3),
])
def test_plot_cg_draws_one_cluster_per_module_invocation(tmp_path, model, args, title, clusters):
    result = model()(*args)
    paths = plot_cg(result.root, wait=2, title=title, directory=str(tmp_path))
    dot_text = open(paths[0]).read()
    assert dot_text.count("subgraph cluster_") == clusters
    assert all(os.path.isfile(p) for p in paths)


# ---- the documented Operator examples ----------------------------------------------------------

def test_documented_operators_compute_their_forward():
    assert add(1., 2.).value == 3
    assert mult(3., 4.).value == 12
    assert square(5.).value == 25
    assert dot(np.array([1., 2.]), np.array([3., 4.])).value == 11


def test_documented_operators_in_simple_model_give_36_with_exact_gradients():
    m = SimpleModelPythonOps()
    result = m(3.)
    result.back()
    assert result.value == 36
    assert result.grad(m.param("w")) == pytest.approx(9, abs=1e-12)
    assert result.grad(m.input("x")) == pytest.approx(33, abs=1e-12)


def test_documented_operators_match_builtin_ops_on_a_matrix():
    x = np.array([[0.5, -1.25], [2.0, 3.5]])
    python_ops, builtin = SimpleModelPythonOps(w0=0.75), SimpleModel(w0=0.75)
    r1, r2 = python_ops(x), builtin(x)
    r1.back()
    r2.back()
    np.testing.assert_allclose(r1.value, r2.value, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r1.grad(python_ops.input("x")), r2.grad(builtin.input("x")), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r1.grad(python_ops.param("w")), r2.grad(builtin.param("w")), rtol=0, atol=1e-12)


def test_documented_dot_operator_gives_exact_gradients_on_vectors():
    w, x = np.array([1., 2., -3.]), np.array([0.5, 1.5, 2.])
    m = DotModelPythonOps(w)
    result = m(x, x)
    result.back()
    # g = sum((a + w)^2 b):  dg/da = 2(a + w) b,  dg/db = (a + w)^2,  dg/dw = 2(a + w) b
    assert result.value == pytest.approx(np.sum((x + w) ** 2 * x), abs=1e-12)
    np.testing.assert_allclose(result.grad(m.input("a")), 2 * (x + w) * x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.grad(m.input("b")), (x + w) ** 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.grad(m.param("w")), 2 * (x + w) * x, rtol=0, atol=1e-12)


def test_documented_dot_operator_matches_builtin_dot_on_matrices():
    rng = np.random.default_rng(7)
    w, a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    python_ops, builtin = DotModelPythonOps(w), DotModelBuiltinOps(w)
    r1, r2 = python_ops(a, b), builtin(a, b)
    seed = rng.normal(size=(3, 2))
    r1.back(seed)
    r2.back(seed)
    np.testing.assert_allclose(r1.value, r2.value, rtol=0, atol=1e-12)
    for name in ("a", "b"):
        np.testing.assert_allclose(r1.grad(python_ops.input(name)), r2.grad(builtin.input(name)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r1.grad(python_ops.param("w")), r2.grad(builtin.param("w")), rtol=0, atol=1e-12)


def test_documented_operators_give_full_jacobians_like_builtin_ops():
    x = np.array([3., 4., 5.])
    python_ops, builtin = SimpleModelPythonOps(), SimpleModel()
    r1, r2 = python_ops(x), builtin(x)
    r1.back()
    r2.back()
    np.testing.assert_allclose(r1.grad(python_ops.input("x")), np.diag([33., 56., 85.]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r1.grad(python_ops.input("x")), r2.grad(builtin.input("x")), rtol=0, atol=1e-12)


# ---- every ```python block of every README, run as it stands -----------------------------------
# Each block is a script of its own, run by this interpreter in an empty directory; blocks that
# import zkynet.distributed run under mpiexec -n 2. A `# prints: TEXT` line in a block is output
# the script must print. Conventions: tests/docs/README.md.

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
import doc_blocks  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]
README_PYTHON_BLOCKS = [b for b in doc_blocks.all_blocks(REPOSITORY) if b.lang == "python"]


def test_the_readmes_have_python_blocks():
    assert len(README_PYTHON_BLOCKS) >= 5
    assert len({b.path for b in README_PYTHON_BLOCKS}) >= 2


@pytest.mark.parametrize("block", README_PYTHON_BLOCKS, ids=lambda b: b.where())
def test_readme_python_block_runs_as_written(block, tmp_path):
    # Blank lines first, so a traceback's line numbers are the README's.
    script = tmp_path / (block.where().replace("/", "_").replace(".md:", "_L") + ".py")
    script.write_text("\n" * block.line + block.text)
    command = [sys.executable, str(script)]
    env = dict(os.environ)
    if block.is_distributed():
        if importlib.util.find_spec("zkynet._zkynet_distributed") is None:  # found, not loaded: no MPI here
            pytest.skip("zkynet was built without distributed/")
        mpiexec = shutil.which("mpiexec.hydra") or shutil.which("mpiexec")
        if mpiexec is None:
            pytest.skip("no mpiexec")
        command = [mpiexec, "-n", "2"] + command
        env.update(PYTHONDONTWRITEBYTECODE="1", ZKYNET_DIST_WAIT="sleep", ZKYNET_DIST_TIMEOUT="60")
    r = subprocess.run(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{block.where()} exits with {r.returncode}:\n{r.stdout[-4000:]}"
    missing = doc_blocks.missing_output(block, r.stdout)
    assert not missing, f"{block.where()} did not print {missing}; it printed:\n{r.stdout[-4000:]}"
