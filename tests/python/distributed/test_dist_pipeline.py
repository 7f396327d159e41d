"""Pipeline's DaggerFlux parity from Python: a step's gradient with respect to the batch's input
(DaggerFlux's pullback returns it), every parameter's gradient gathered under the plain model's
names, and predict's output delivered to a chosen rank or to every rank, each equal to the plain
(unsplit) Sequential's in float64. Every rank runs every test; batches split evenly and unevenly
into micro-batches, and into more micro-batches than rows."""
import numpy as np
import pytest

from dist_testing import RANK, SIZE
from zkynet import distributed as dist
from zkynet import nn
from zkynet.framework import cg, op

# (rows, micro_batches): whole micro-batches, uneven ones, fewer rows than micro-batches.
SPLITS = [(12, 3), (11, 3), (7, 2), (3, 4)]


class CrossEntropy(cg.Module):
    """The cross entropy of a model's logits; labels are not differentiated."""

    def __init__(self, model):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y").requires_grad(False)))
        self.model = model

    def call(self, x, y):
        return op.cross_entropy(self.model(x), y)


def make_deep_model():
    """Seven float64 layers, so that 2, 3 and 4 ranks all get non-empty stages."""
    nn.manual_seed(3)
    layers = []
    for fan_in, fan_out in [(5, 8), (8, 8), (8, 8)]:
        layers += [nn.Linear(fan_in, fan_out, dtype="float64"), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(8, 4, dtype="float64"))


def batch(rows):
    x = np.random.default_rng(8).standard_normal((rows, 5))
    return x, ((np.arange(rows) * 5) % 4).astype(np.int64)


def plain_step(model, x, y):
    """The plain model's step: its graph.grad(x); the parameters' gradients accumulate."""
    objective = CrossEntropy(model)
    graph = objective(x, y)
    graph.back()
    return np.array(graph.grad(objective.input("x")))


def plain_gradients(model):
    return {name: np.array(p.grad) for name, p in model.named_parameters()}


def assert_gradients_equal(gathered, reference):
    expected = plain_gradients(reference)
    assert list(gathered) == list(expected)
    for name, grad in expected.items():
        np.testing.assert_allclose(gathered[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("rows, micro_batches", SPLITS)
def test_input_grad_is_the_plain_models_gradient_with_respect_to_x(rows, micro_batches):
    x, y = batch(rows)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches, input_requires_grad=True)
    pipe.train_step(x, y, op.cross_entropy)
    expected = plain_step(reference, x, y)
    if pipe.is_first:
        np.testing.assert_allclose(pipe.input_grad(), expected, rtol=1e-10, atol=1e-12)
    else:
        assert pipe.input_grad() is None


@pytest.mark.parametrize("rows, micro_batches", SPLITS)
def test_gradients_on_a_root_are_the_plain_models_keyed_by_named_parameters(rows, micro_batches):
    x, y = batch(rows)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches)
    pipe.train_step(x, y, op.cross_entropy)
    plain_step(reference, x, y)
    for root in range(SIZE):
        gathered = pipe.gradients(root=root)
        if RANK == root:
            assert_gradients_equal(gathered, reference)
        else:
            assert gathered is None


@pytest.mark.parametrize("rows, micro_batches", SPLITS)
def test_gradients_on_all_ranks_are_the_plain_models(rows, micro_batches):
    x, y = batch(rows)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches)
    pipe.train_step(x, y, op.cross_entropy)
    plain_step(reference, x, y)
    assert_gradients_equal(pipe.gradients(root=dist.Pipeline.ALL_RANKS), reference)
    assert_gradients_equal(pipe.gradients(), reference)  # the default


def test_gradients_before_any_step_are_zeros_of_the_parameters_shapes():
    model = make_deep_model()
    gathered = dist.Pipeline(model).gradients()
    assert {name: g.shape for name, g in gathered.items()} == \
        {name: np.array(p.value).shape for name, p in model.named_parameters()}
    assert all(not g.any() for g in gathered.values())


@pytest.mark.parametrize("rows, micro_batches", SPLITS)
def test_predict_delivers_the_plain_models_output_to_a_chosen_rank(rows, micro_batches):
    x, _ = batch(rows)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches)
    with cg.no_grad():
        expected = np.array(reference(x).value)
    for to in range(SIZE):
        output = pipe.predict(x if pipe.is_first else None, deliver_to=to)
        if RANK == to:
            np.testing.assert_allclose(output, expected, rtol=1e-10, atol=1e-12)
        else:
            assert output is None


@pytest.mark.parametrize("rows, micro_batches", SPLITS)
def test_predict_delivers_the_plain_models_output_to_every_rank(rows, micro_batches):
    x, _ = batch(rows)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches)
    with cg.no_grad():
        expected = np.array(reference(x).value)
    output = pipe.predict(x, deliver_to=dist.Pipeline.ALL_RANKS)
    np.testing.assert_allclose(output, expected, rtol=1e-10, atol=1e-12)


def test_predict_by_default_returns_the_output_on_the_last_stage_only():
    x, _ = batch(6)
    pipe = dist.Pipeline(make_deep_model())
    assert (pipe.predict(x) is not None) == pipe.is_last
    assert (pipe.predict(x, deliver_to=dist.Pipeline.LAST_STAGE) is not None) == pipe.is_last


def test_input_grad_without_input_requires_grad_is_refused_saying_how_to_ask():
    x, y = batch(6)
    pipe = dist.Pipeline(make_deep_model())
    pipe.train_step(x, y, op.cross_entropy)
    with pytest.raises(RuntimeError, match="Pipeline.input_grad.*input_requires_grad"):
        pipe.input_grad()


def test_input_grad_before_any_train_step_is_refused():
    pipe = dist.Pipeline(make_deep_model(), input_requires_grad=True)
    with pytest.raises(RuntimeError, match="no train_step"):
        pipe.input_grad()


def test_a_root_or_destination_that_is_not_a_rank_is_refused_naming_it():
    x, _ = batch(6)
    pipe = dist.Pipeline(make_deep_model())
    with pytest.raises(RuntimeError, match=f"Pipeline.gradients: root {SIZE} is not a rank"):
        pipe.gradients(root=SIZE)
    with pytest.raises(RuntimeError, match=f"Pipeline.predict: deliver_to {SIZE} is not a rank"):
        pipe.predict(x, deliver_to=SIZE)
    with pytest.raises(RuntimeError, match="root 4294967296 is not a rank"):
        pipe.gradients(root=2 ** 32)  # would wrap to rank 0 as a C int
    assert (pipe.predict(x) is not None) == pipe.is_last  # nothing was sent: the pipeline still works
