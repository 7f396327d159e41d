"""nn.states / nn.load_states as FluxUtils' states(model) / loadstates!(model, s): what the
stateful recurrent layers carry from one call to the next, saved and restored by layer path, so
that a model continues a series exactly where the saved one would; explicit initial states on
stateful layers; the carried states inside checkpoints."""
import numpy as np
import pytest

from zkynet import nn
from zkynet.framework import cg


class _Encoder(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.lstm = nn.LSTM(2, 5, num_layers=2, stateful=True, dtype="float64")

    def call(self, x):
        return self.lstm(x)


class _Forecaster(cg.Module):
    """A stateful 2-layer LSTM (at encoder.lstm), a stateful GRU, a GRU that carries nothing
    and a linear head, over float64 series shaped (time, batch 3, 2)."""

    def __init__(self, seed=1):
        super().__init__(inputs=(cg.Variable("x"),))
        nn.manual_seed(seed)
        self.encoder = _Encoder()
        self.gru = nn.GRU(5, 4, stateful=True, dtype="float64")
        self.smoother = nn.GRU(4, 4, dtype="float64")
        self.head = nn.Linear(4, 1, dtype="float64")

    def call(self, x):
        return self.head(self.smoother(self.gru(self.encoder(x))))


def _series(steps, phase):
    return np.sin(0.37 * np.arange(steps * 3 * 2) + phase).reshape(steps, 3, 2)


def _continued_copy(model):
    """A model of other initial weights given model's weights and carried states."""
    fresh = _Forecaster(seed=2)
    nn.load_state_dict(fresh, nn.state_dict(model))
    nn.load_states(fresh, nn.states(model))
    return fresh


def test_states_maps_each_stateful_layers_path_to_its_arrays():
    model = _Forecaster()
    model(_series(4, 0.0))
    s = nn.states(model)
    assert list(s) == ["encoder.lstm.h", "encoder.lstm.c", "gru.h"]
    assert s["encoder.lstm.h"].shape == (2, 3, 5) and s["encoder.lstm.h"].dtype == np.float64
    assert s["gru.h"].shape == (1, 3, 4)
    h_n, c_n = model.encoder.lstm.last_state
    np.testing.assert_array_equal(s["encoder.lstm.h"], h_n.value)
    np.testing.assert_array_equal(s["encoder.lstm.c"], c_n.value)


def test_states_gives_none_for_a_stateful_layer_that_has_not_run():
    assert nn.states(_Forecaster()) == {"encoder.lstm.h": None, "encoder.lstm.c": None, "gru.h": None}


def test_states_are_copies_that_running_on_does_not_change():
    model = _Forecaster()
    model(_series(4, 0.0))
    s = nn.states(model)
    saved = {k: np.array(v) for k, v in s.items()}
    model(_series(4, 1.0))
    for key in saved:
        np.testing.assert_array_equal(s[key], saved[key])
    assert not np.array_equal(nn.states(model)["gru.h"], saved["gru.h"])


def test_a_fresh_model_given_the_saved_states_continues_the_series_bitwise():
    x = _series(10, 0.3)
    model = _Forecaster(seed=1)
    model(x[:5])
    fresh = _continued_copy(model)
    expected = np.asarray(model(x[5:]).value)
    np.testing.assert_array_equal(np.asarray(fresh(x[5:]).value), expected)


def test_load_states_after_running_on_returns_to_the_saved_continuation():
    model = _Forecaster()
    model(_series(4, 0.0))
    s = nn.states(model)
    continuation = np.asarray(model(_series(4, 1.0)).value)
    model(_series(4, 2.0))
    assert nn.load_states(model, s) == ([], [])
    np.testing.assert_array_equal(np.asarray(model(_series(4, 1.0)).value), continuation)


def test_loading_none_resets_a_layer_to_start_from_zeros():
    model = _Forecaster()
    never_run = nn.states(model)
    from_zeros = np.asarray(model(_series(4, 0.0)).value)
    model(_series(4, 1.0))
    nn.load_states(model, never_run)
    np.testing.assert_array_equal(np.asarray(model(_series(4, 0.0)).value), from_zeros)


def test_a_stateful_layer_starts_from_an_explicit_state_and_carries_that_calls_end_on():
    nn.manual_seed(5)
    stateful = nn.LSTM(2, 4, stateful=True, dtype="float64")
    plain = nn.LSTM(2, 4, dtype="float64")
    nn.load_state_dict(plain, nn.state_dict(stateful))
    x = _series(6, 0.1)
    h0, c0 = np.full((1, 3, 4), 0.25), np.full((1, 3, 4), -0.5)
    whole = np.asarray(plain(x, h0, c0).value)
    stateful(_series(2, 0.7))  # a carried state, which the explicit one replaces
    np.testing.assert_allclose(np.asarray(stateful(x[:2], h0, c0).value), whole[:2], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(np.asarray(stateful(x[2:]).value), whole[2:], rtol=1e-14, atol=1e-14)


def test_an_explicit_state_of_the_wrong_shape_names_the_layer_and_both_shapes():
    lstm = nn.LSTM(2, 4, num_layers=2, stateful=True)
    x = np.zeros((3, 5, 2), np.float32)
    with pytest.raises(ValueError, match=r"LSTM\(2, 4\): initial h0 \(1,5,4\) must be "
                                         r"\(num_layers, batch, hidden_size\) = \(2,5,4\)"):
        lstm(x, np.zeros((1, 5, 4), np.float32), np.zeros((2, 5, 4), np.float32))


def test_a_checkpoint_round_trip_restores_the_carried_states(tmp_path):
    path = str(tmp_path / "forecaster.h5")
    model = _Forecaster(seed=1)
    model(_series(5, 0.0))
    nn.save_checkpoint(model, path)
    fresh = _Forecaster(seed=2)
    assert nn.load_checkpoint(fresh, path) == ([], [])
    np.testing.assert_array_equal(np.asarray(fresh(_series(5, 1.0)).value),
                                  np.asarray(model(_series(5, 1.0)).value))


def test_load_states_names_missing_and_unexpected_keys():
    model = _Forecaster()
    model(_series(4, 0.0))
    s = nn.states(model)
    del s["gru.h"]
    s["head.h"] = np.zeros((1, 3, 1))
    with pytest.raises(IndexError, match=r"missing key\(s\) 'gru.h'.*unexpected key\(s\) 'head.h'"):
        nn.load_states(model, s)


def test_load_states_without_strict_loads_the_rest_and_reports_the_keys():
    model = _Forecaster()
    model(_series(4, 0.0))
    s = nn.states(model)
    del s["gru.h"]
    s["head.h"] = np.zeros((1, 3, 1))
    assert nn.load_states(model, s, strict=False) == (["gru.h"], ["head.h"])


def test_load_states_names_a_wrong_shape_with_both_shapes_and_changes_nothing():
    model = _Forecaster()
    model(_series(4, 0.0))
    before = nn.states(model)
    s = dict(before)
    s["encoder.lstm.h"] = np.zeros((2, 3, 5))
    s["gru.h"] = np.zeros((1, 3, 6))
    with pytest.raises(ValueError, match=r"'gru.h': GRU\(5, 4\): carried h \(1,3,6\) must be "
                                         r"\(num_layers, batch, hidden_size\) = \(1,batch,4\)"):
        nn.load_states(model, s)
    after = nn.states(model)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
