"""nn.weights as FluxUtils' weights(model): the parameters that are not biases, decided by
what a parameter is (each layer marks its biases, Parameter.is_bias), not by its name."""
import numpy as np

from zkynet import nn
from zkynet.framework import cg, op


def _weight_names(model):
    ids = {p.uid for p in nn.weights(model)}
    names = [name for name, p in model.named_parameters() if p.uid in ids]
    assert len(names) == len(ids)
    return names


def test_an_lstms_bias_ih_and_bias_hh_are_left_out_in_every_layer():
    lstm = nn.LSTM(3, 4, num_layers=2)
    assert _weight_names(lstm) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    assert dict(lstm.named_parameters())["bias_hh_l1"].is_bias


def test_linear_and_conv_weights_are_kept_and_their_biases_left_out():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 3), nn.Linear(3, 2, bias=False))
    assert _weight_names(model) == ["0.weight", "1.weight", "2.weight"]


def test_the_norms_keep_their_scale_and_leave_out_their_bias():
    assert _weight_names(nn.LayerNorm(4)) == ["weight"]


class _Affine(cg.Module):
    def __init__(self, mark_bias):
        super().__init__(inputs=(cg.Variable("x"),))
        self.scale = self.register_parameter("scale", np.ones(2))
        self.bias = self.register_parameter("bias", np.zeros(2))
        if mark_bias:
            self.bias.is_bias = True

    def call(self, x):
        return op.add(op.mult(x, self.scale), self.bias)


def test_a_users_parameter_is_a_weight_unless_marked_whatever_its_name():
    assert _weight_names(_Affine(mark_bias=False)) == ["scale", "bias"]
    assert _weight_names(_Affine(mark_bias=True)) == ["scale"]
    w = cg.Parameter("offset", np.zeros(3))
    assert not w.is_bias
    w.is_bias = True
    assert w.is_bias
