"""DataParallel and Pipeline from Python: data-parallel steps and Estimator fits equal
single-process training on the full batches, pipeline gradients and steps equal a single
process's, and the digits MLP trains data-parallel. Every rank runs every test; with one rank
the drivers degenerate to single-process training and the same checks hold."""
import gc
import gzip

import numpy as np
import pytest

from dist_testing import RANK, SIZE
from zkynet import distributed as dist
from zkynet import nn, optim
from zkynet.framework import cg, op

DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"


class CrossEntropy(cg.Module):
    """The cross entropy of a model's logits; labels are not differentiated."""

    def __init__(self, model, reduction="mean"):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y").requires_grad(False)))
        self.model = model
        self.reduction = reduction

    def call(self, x, y):
        return op.cross_entropy(self.model(x), y, reduction=self.reduction)


def make_mlp(seed):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def classification_data(rows, features=6, classes=3, stride=7, seed=42, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal((rows, features)).astype(dtype)
    y = (np.arange(rows) * stride) % classes
    return x, y.astype(np.int64)


def parameter_values(model):
    return [(name, np.array(p.value)) for name, p in model.named_parameters()]


def assert_same_on_every_rank(model):
    """Bitwise: the maximum and the minimum over ranks agree."""
    for name, value in parameter_values(model):
        np.testing.assert_array_equal(dist.allreduce_array(value, dist.MPI_MAX),
                                      dist.allreduce_array(value, dist.MPI_MIN), err_msg=name)


def assert_parameters_close(model, reference, rtol=1e-5, atol=1e-6):
    ours, theirs = parameter_values(model), parameter_values(reference)
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    for (name, a), (_, b) in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


# --- DataParallel ---

def test_data_parallel_starts_every_rank_from_rank_0s_parameters():
    model = make_mlp(100 + RANK)  # different on every rank until the broadcast
    reference = make_mlp(100)     # rank 0's initialization
    dist.DataParallel(model)
    assert_same_on_every_rank(model)
    assert_parameters_close(model, reference, rtol=0, atol=0)


def sgd_step(objective, opt, x, y, dp=None):
    """One step on this process's rows; ranks whose shard is empty still take part in the average."""
    opt.zero_grad()
    if len(x):
        objective(x, y).back()
    if dp is not None:
        dp.average_gradients(len(x))
    opt.step()


@pytest.mark.parametrize("bucket_bytes", [25 << 20, 64])
def test_sharded_steps_with_averaged_gradients_equal_full_batch_training(bucket_bytes):
    x, y = classification_data(32)
    model, reference = make_mlp(7), make_mlp(7)
    dp = dist.DataParallel(model, bucket_bytes=bucket_bytes)
    if bucket_bytes == 64:
        assert dp.bucket_count > 1
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    ref_opt = optim.SGD(reference.parameters(), lr=0.2, momentum=0.9)
    objective, ref_objective = CrossEntropy(model), CrossEntropy(reference)
    for _ in range(3):
        for start in range(0, 32, 10):  # batches of 10, 10, 10 and 2: some shards are empty on 4 ranks
            stop = min(start + 10, 32)
            begin, end = dp.shard(stop - start)
            sgd_step(objective, opt, x[start + begin:start + end], y[start + begin:start + end], dp)
            sgd_step(ref_objective, ref_opt, x[start:stop], y[start:stop])
    assert_same_on_every_rank(model)
    assert_parameters_close(model, reference)


def test_shard_covers_a_batch_with_sizes_differing_by_at_most_one():
    dp = dist.DataParallel(make_mlp(1))
    begin, end = dp.shard(10)
    assert 10 // SIZE <= end - begin <= 10 // SIZE + 1
    assert float(dist.allreduce_array(np.array(float(end - begin)))) == 10.0
    assert dp.comm.size == SIZE


def test_estimator_fit_under_data_parallel_equals_a_single_process_fit():
    x, y = classification_data(40)
    spec = dict(epochs=3, batchsize=8, shuffle=True, seed=5, verbose=False)
    model, reference = make_mlp(11), make_mlp(11)
    dp = dist.DataParallel(model)
    rows_seen = []

    def sharded_loss(prediction, target):
        rows_seen.append(prediction.shape[0])
        return op.cross_entropy(prediction, target)

    est = nn.Estimator(model, sharded_loss, optim.SGD(model.parameters(), lr=0.1, momentum=0.5), **spec)
    dp.attach(est)
    history = est.fit(x, y)
    # Each rank saw only its shards: together, every row once per epoch.
    assert float(dist.allreduce_array(np.array(float(sum(rows_seen))))) == 3 * 40
    ref_est = nn.Estimator(reference, op.cross_entropy, optim.SGD(reference.parameters(), lr=0.1, momentum=0.5),
                           **spec)
    ref_history = ref_est.fit(x, y)
    assert_same_on_every_rank(model)
    assert_parameters_close(model, reference)
    assert len(history) == len(ref_history)
    assert history[-1]["loss"] == pytest.approx(ref_history[-1]["loss"], rel=1e-5)


def test_data_parallel_keeps_its_model_and_the_estimator_keeps_it():
    model = make_mlp(2)
    est = nn.Estimator(model, op.cross_entropy, optim.SGD(model.parameters(), lr=0.1), epochs=1, batchsize=8,
                       verbose=False)
    dist.DataParallel(model).attach(est)  # the wrapper itself is not kept by the caller
    lone = dist.DataParallel(make_mlp(3))  # nor is this model
    gc.collect()
    est.fit(*classification_data(16))
    lone.broadcast_state()
    lone.average_gradients()
    assert_same_on_every_rank(model)


def test_attach_refuses_what_is_not_an_estimator():
    dp = dist.DataParallel(make_mlp(4))
    with pytest.raises(TypeError, match="Estimator"):
        dp.attach(make_mlp(4))


# --- Pipeline ---

def make_deep_model():
    """Seven float64 layers, so that 2, 3 and 4 ranks all get non-empty stages."""
    nn.manual_seed(3)
    layers = []
    for fan_in, fan_out in [(5, 8), (8, 8), (8, 8)]:
        layers += [nn.Linear(fan_in, fan_out, dtype="float64"), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(8, 4, dtype="float64"))


def pipeline_batch(rows):
    return classification_data(rows, features=5, classes=4, stride=5, seed=8, dtype=np.float64)


def stage_parameters(model, layers):
    """(name, parameter) of the Sequential's layers [begin, end)."""
    begin, end = layers
    return [(name, p) for name, p in model.named_parameters() if begin <= int(name.split(".")[0]) < end]


def reference_step(reference, x, y, reduction="mean"):
    graph = CrossEntropy(reference, reduction)(x, y)
    graph.back()
    return float(graph.value)


def cross_entropy_lambda(output, target):
    return op.cross_entropy(output, target)


def summed_cross_entropy(output, target):
    return op.cross_entropy(output, target, reduction="sum")


# A sum-reduced loss was once divided by the number of micro-batches: whatever the reduction,
# the pipeline's loss and gradients are the plain model's.
@pytest.mark.parametrize("micro_batches, loss, reduction", [
    (1, op.cross_entropy, "mean"), (3, cross_entropy_lambda, "mean"), (5, op.cross_entropy, "mean"),
    (1, summed_cross_entropy, "sum"), (2, summed_cross_entropy, "sum"), (4, summed_cross_entropy, "sum")])
def test_pipeline_gradients_equal_single_process_gradients(micro_batches, loss, reduction):
    x, y = pipeline_batch(12)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=micro_batches)
    assert (pipe.stage, pipe.stages) == (RANK, SIZE)
    assert (pipe.is_first, pipe.is_last) == (RANK == 0, RANK == SIZE - 1)
    # Only the first stage reads x and only the last y.
    value = pipe.train_step(x if pipe.is_first else None, y if pipe.is_last else None, loss)
    assert value == pytest.approx(reference_step(reference, x, y, reduction), rel=1e-12)
    ours, theirs = stage_parameters(model, pipe.layers), stage_parameters(reference, pipe.layers)
    assert ours and len(pipe.parameters()) == len(ours)
    for (name, p), (_, q) in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)
    assert isinstance(pipe.last_graph, cg.ModuleGraph)


def test_pipeline_with_given_stage_starts():
    x, y = pipeline_batch(8)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=2, stage_starts=list(range(1, SIZE)))  # one layer each, the rest last
    assert pipe.layers == ((RANK, RANK + 1) if not pipe.is_last else (SIZE - 1, 7))
    pipe.train_step(x, y, op.cross_entropy)
    reference_step(reference, x, y)
    for (name, p), (_, q) in zip(stage_parameters(model, pipe.layers), stage_parameters(reference, pipe.layers)):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_pipeline_training_steps_follow_single_process_training():
    x, y = pipeline_batch(16)
    model, reference = make_deep_model(), make_deep_model()
    pipe = dist.Pipeline(model, micro_batches=4)
    opt = optim.SGD(pipe.parameters(), lr=0.5)
    ref_opt = optim.SGD(reference.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        ref_opt.zero_grad()
        losses.append(pipe.train_step(x, y, op.cross_entropy))
        assert losses[-1] == pytest.approx(reference_step(reference, x, y), rel=1e-10)
        opt.step()
        ref_opt.step()
    assert losses[-1] < losses[0]
    output = pipe.predict(x)
    if pipe.is_last:
        with cg.no_grad():
            expected = np.array(reference(x).value)
        np.testing.assert_allclose(output, expected, rtol=1e-10, atol=1e-12)
    else:
        assert output is None


def test_pipeline_keeps_its_model():
    x, _ = pipeline_batch(4)
    pipe = dist.Pipeline(make_deep_model())
    gc.collect()
    output = pipe.predict(x)
    assert (output.shape == (4, 4)) if pipe.is_last else output is None


def test_pipeline_refuses_stages_without_layers_and_a_wrong_stage_count():
    with pytest.raises(RuntimeError, match="stage"):
        dist.Pipeline(make_deep_model(), stage_starts=[1] * SIZE)  # one start too many on any number of ranks
    if SIZE > 1:
        with pytest.raises(RuntimeError, match="no layers"):
            dist.Pipeline(nn.Sequential(nn.Tanh()))


def test_pipeline_refuses_a_loss_that_is_not_callable():
    x, y = pipeline_batch(4)
    with pytest.raises(TypeError, match="callable"):  # on every rank, before any message
        dist.Pipeline(make_deep_model()).train_step(x, y, "cross_entropy")


# --- the digits MLP ---

def load_digits(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): 8x8 images scaled to [0, 1], int64 labels."""
    with gzip.open(DIGITS, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    x = (data[:, :-1] / 16.0).astype(np.float32)
    y = data[:, -1].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def test_digits_mlp_trained_data_parallel_with_the_estimator():
    x_train, y_train, x_test, y_test = load_digits()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    dp = dist.DataParallel(model)
    est = nn.Estimator(model, op.cross_entropy, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=15,
                       batchsize=64, seed=0, verbose=False)
    dp.attach(est)
    est.fit(x_train, y_train)
    accuracy = float(np.mean(np.argmax(est.predict(x_test), axis=1) == y_test))
    assert accuracy >= 0.95
    assert_same_on_every_rank(model)
