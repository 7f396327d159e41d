"""Estimator(device=...) from Python: "cpu" given explicitly trains exactly as the default, a bad
name or a missing device is an error naming the Estimator, predictions stay host arrays."""
import numpy as np
import pytest

from zkynet import cuda
from zkynet import nn, optim
from zkynet.framework import op


def fit_and_predict(**device):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 2))
    y = x @ np.array([[1.5], [-2.0]])
    nn.manual_seed(2)
    model = nn.Linear(2, 1, dtype="float64")
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.05), epochs=3, batchsize=16,
                       validation_split=0.25, verbose=False, **device)
    losses = [log["loss"] for log in est.fit(x, y)]
    out = np.empty((48, 1))
    assert est.predict(x, out=out) is out
    return losses, out


def test_device_cpu_given_explicitly_equals_the_default():
    default_losses, default_out = fit_and_predict()
    cpu_losses, cpu_out = fit_and_predict(device="cpu")
    assert cpu_losses == default_losses
    np.testing.assert_array_equal(cpu_out, default_out)


def test_a_bad_device_name_is_an_error_naming_the_estimator():
    model = nn.Linear(2, 1)
    with pytest.raises(RuntimeError, match=r"Estimator: device 'gpu' is not a device name"):
        nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.1), device="gpu")


def test_a_device_the_machine_lacks_is_an_error_naming_the_estimator():
    missing = f"cuda:{cuda.device_count()}"  # one past the last device
    model = nn.Linear(2, 1)
    with pytest.raises(RuntimeError, match=rf"Estimator: device '{missing}': cannot move the model there"):
        nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.1), device=missing)
