"""Training from Python: the digits MLP reaches the held-out accuracy the issue asks for."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
import train_digits  # noqa: E402


@pytest.mark.skipif(not os.path.exists(train_digits.DIGITS), reason="python3-sklearn's digits data is not installed")
def test_digits_mlp_reaches_95_percent_held_out():
    _, _, acc = train_digits.train(epochs=20, log=None)
    assert acc >= 0.95


def test_sgd_loop_with_nn_layers_decreases_the_loss():
    from zkynet import nn, optim
    from zkynet.framework import cg, op

    nn.manual_seed(1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 1))).astype(np.float32)

    class Regression(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"), cg.Variable("y")))
            self.model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))

        def call(self, x, y):
            return op.mse_loss(self.model(x), y)

    loss_module = Regression()
    opt = optim.SGD(loss_module.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(100):
        r = loss_module(x, y)
        opt.zero_grad()
        r.back()
        opt.step()
        first = first if first is not None else float(r.value)
    assert float(r.value) < 0.1 * first
    assert [name for name, _ in loss_module.named_parameters()] == [
        "model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]
