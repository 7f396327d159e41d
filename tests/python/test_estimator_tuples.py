"""The Estimator from Python as FluxUtils has it: tuples of inputs and targets, predict into an
array the caller owns (predict!), and the reset hook of stateful series with a smaller last
group of streams."""
import numpy as np
import pytest

from zkynet import nn, optim
from zkynet.framework import cg, op


class TwoInputs(cg.Module):
    """a(x1) + b(x2): a model of two inputs."""

    def __init__(self, f1, f2):
        super().__init__(inputs=(cg.Variable("x1"), cg.Variable("x2")))
        self.a = nn.Linear(f1, 1, bias=False, dtype="float64")
        self.b = nn.Linear(f2, 1, bias=False, dtype="float64")

    def call(self, x1, x2):
        return self.a(x1) + self.b(x2)


def two_input_regression(n=120, seed=4):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n, 1)), rng.normal(size=(n, 2))
    return x1, x2, 1.5 * x1 + x2 @ np.array([[-2.0], [0.5]])


def quiet_estimator(model, loss_fn, lr=0.1, **spec):
    return nn.Estimator(model, loss_fn, optim.SGD(model.parameters(), lr=lr), verbose=False, **spec)


def test_fit_calls_the_model_with_every_input_of_a_tuple():
    x1, x2, y = two_input_regression()
    model = TwoInputs(1, 2)
    est = quiet_estimator(model, op.mse_loss, epochs=40, batchsize=20)
    est.fit((x1, x2), y)
    np.testing.assert_allclose(model.a.weight.value, [[1.5]], atol=1e-3)
    np.testing.assert_allclose(model.b.weight.value, [[-2.0, 0.5]], atol=1e-3)
    np.testing.assert_allclose(est.predict((x1, x2)), y, atol=1e-3)


def test_the_loss_is_given_the_prediction_and_every_target():
    x1, x2, y = two_input_regression(60)
    seen = []

    def loss_fn(prediction, y1, y2):
        seen.append((prediction.value.shape, y1.value.shape, y2.value.shape))
        return op.mse_loss(prediction, y1) + op.mse_loss(prediction * 2.0, y2)

    est = quiet_estimator(TwoInputs(1, 2), loss_fn, epochs=40, batchsize=20)
    logs = est.fit((x1, x2), (y, 2 * y))
    assert seen[0] == ((20, 1), (20, 1), (20, 1))
    assert logs[-1]["loss"] < 1e-6


def test_tuples_that_disagree_in_sample_count_are_named_by_position_and_shape():
    est = quiet_estimator(TwoInputs(1, 2), op.mse_loss)
    with pytest.raises(ValueError, match=r"Estimator.*input 0 \(10,1\), input 1 \(9,2\), target 0 \(10,1\)"):
        est.fit((np.zeros((10, 1)), np.zeros((9, 2))), np.zeros((10, 1)))


def test_tuples_hold_out_their_last_rows_for_validation():
    x1, x2, y = two_input_regression(100)
    est = quiet_estimator(TwoInputs(1, 2), op.mse_loss, epochs=30, batchsize=10, validation_split=0.2)
    logs = est.fit((x1, x2), y)
    assert logs[-1]["val_loss"] < 1e-6 < logs[0]["val_loss"]


def test_series_tuples_train_in_windows_and_predict_features_samples_time():
    # y_t = 2 a_t - b_t[0]: (features, samples, time) series, windows of 10 steps.
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(1, 4, 30)), rng.normal(size=(2, 4, 30))
    y = 2 * a - b[:1]
    est = quiet_estimator(TwoInputs(1, 2), op.mse_loss, epochs=40, batchsize=2, seqsize=10, validation_split=0.2)
    logs = est.fit((a, b), y)
    assert logs[-1]["val_loss"] < 1e-4
    pred = est.predict((a, b))
    assert pred.shape == (1, 4, 30)
    np.testing.assert_allclose(pred, y, atol=1e-2)


# ---- predict into an array the caller owns ----------------------------------------------------

def fitted_linear():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    model = nn.Linear(3, 2)
    return quiet_estimator(model, op.mse_loss, batchsize=16), x


def test_predict_writes_into_out_and_returns_it():
    est, x = fitted_linear()
    out = np.full((50, 2), -7.0, dtype=np.float32)
    assert est.predict(x, out=out) is out
    np.testing.assert_allclose(out, est.predict(x), rtol=1e-6)


def test_predict_into_out_refuses_a_wrong_shape_naming_both():
    est, x = fitted_linear()
    with pytest.raises(ValueError, match=r"out has shape \(50,3\).*predictions have \(50,2\)"):
        est.predict(x, out=np.zeros((50, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(49,2\).*50 samples"):
        est.predict(x, out=np.zeros((49, 2), np.float32))


def test_predict_into_out_refuses_a_wrong_dtype():
    est, x = fitted_linear()
    with pytest.raises(TypeError, match="out is float64.*float32"):
        est.predict(x, out=np.zeros((50, 2), np.float64))
    with pytest.raises(TypeError, match="out is int32"):
        est.predict(x, out=np.zeros((50, 2), np.int32))


def test_predict_into_out_refuses_a_read_only_or_strided_array_or_a_list():
    est, x = fitted_linear()
    read_only = np.zeros((50, 2), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        est.predict(x, out=read_only)
    with pytest.raises(ValueError, match="C-contiguous"):
        est.predict(x, out=np.zeros((2, 50), np.float32).T)
    with pytest.raises(TypeError, match="numpy array"):
        est.predict(x, out=[[0.0, 0.0]] * 50)


def test_series_predict_into_out_fills_features_samples_time():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 25))
    model = nn.Linear(1, 2, dtype="float64")
    est = quiet_estimator(model, op.mse_loss, seqsize=10)
    out = np.zeros((2, 3, 25))
    est.predict(x, out=out)
    expected = model(x.transpose(2, 1, 0)).value.transpose(2, 1, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


# ---- stateful series: each group of streams starts afresh -----------------------------------

def test_stateful_lstm_state_does_not_leak_between_groups_and_a_smaller_last_group_works():
    # 5 streams in groups of 2: 2, 2, then 1. With lr = 0 the epoch loss is the mean of the
    # windows' losses of the untrained LSTM, each group starting from a zero state: computed
    # here by hand, it equals fit's only if the state was reset at every group.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 12)).astype(np.float32)
    y = rng.normal(size=(3, 5, 12)).astype(np.float32)
    nn.manual_seed(0)
    lstm = nn.LSTM(2, 3, stateful=True)
    est = nn.Estimator(lstm, op.mse_loss, optim.SGD(lstm.parameters(), lr=0.0), epochs=1, batchsize=2, seqsize=4,
                       shuffle=False, verbose=False)
    starts = []
    est.on_sequence_start(lambda: (starts.append(1), lstm.reset_state()))
    logs = est.fit(x, y)
    assert len(starts) == 3

    losses = []
    for first in (0, 2, 4):
        lstm.reset_state()
        for t in range(0, 12, 4):
            xw = np.ascontiguousarray(x[:, first:first + 2, t:t + 4].transpose(2, 1, 0))
            yw = np.ascontiguousarray(y[:, first:first + 2, t:t + 4].transpose(2, 1, 0))
            losses.append(op.mse_loss(lstm(xw), yw).value.item())
    assert logs[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-6)


def test_stateful_lstm_predicts_the_same_twice_the_state_reset_first():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 10)).astype(np.float32)
    lstm = nn.LSTM(2, 3, stateful=True)
    est = nn.Estimator(lstm, op.mse_loss, optim.SGD(lstm.parameters(), lr=0.0), seqsize=4, verbose=False)
    est.on_sequence_start(lstm.reset_state)
    np.testing.assert_array_equal(est.predict(x), est.predict(x))
