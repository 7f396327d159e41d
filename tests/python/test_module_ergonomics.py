"""Modules as a PyTorch user handles them: repr, dotted parameter paths, keyword inputs,
state_dict methods, indexing and iterating Sequential, freezing parameters."""
import numpy as np
import pytest

from zkynet import nn
from zkynet.framework import cg, op


class MLP(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("scale", 1.0),))
        self.fc1 = nn.Linear(4, 8)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(8, 2))

    def call(self, x):
        return self.body(self.fc1(x)) * self.param("scale")


X = np.ones((3, 4), dtype=np.float32)


def test_repr_prints_the_layer_tree_with_parameter_shapes():
    text = repr(MLP())
    assert text.splitlines() == [
        "MLP(scale: () float64,",
        "  (fc1): Linear(weight: (8,4) float32, bias: (8,) float32)",
        "  (body): Sequential(",
        "    (0): ReLU()",
        "    (1): Linear(weight: (2,8) float32, bias: (2,) float32)",
        "  )",
        ")",
    ]


def test_param_resolves_dotted_paths_as_named_parameters_names_them():
    m = MLP()
    named = dict(m.named_parameters())
    for path in ["scale", "fc1.weight", "body.1.bias"]:
        assert m.param(path) == named[path]


def test_an_unknown_dotted_path_lists_the_names_there_are():
    with pytest.raises(IndexError, match="no submodule 'fc2'.*fc1.weight, fc1.bias"):
        MLP().param("fc2.weight")


def test_keyword_inputs_by_declared_name():
    m = MLP()
    np.testing.assert_array_equal(m(x=X).value, m(X).value)


@pytest.mark.parametrize("call, text", [
    (lambda m: m(y=X), "unexpected keyword argument 'y' \\(its inputs: x\\)"),
    (lambda m: m(X, x=X), "multiple values for input 'x'"),
])
def test_bad_keyword_inputs_are_refused_with_the_input_names(call, text):
    with pytest.raises(TypeError, match=text):
        call(MLP())


def test_state_dict_methods_round_trip():
    a, b = MLP(), MLP()
    assert list(a.state_dict()) == ["scale", "fc1.weight", "fc1.bias", "body.1.weight", "body.1.bias"]
    assert b.load_state_dict(a.state_dict()) == ([], [])
    np.testing.assert_array_equal(b(X).value, a(X).value)
    missing, unexpected = b.load_state_dict({"fc1.weight": a.state_dict()["fc1.weight"], "extra": np.zeros(1)},
                                            strict=False)
    assert "fc1.bias" in missing and unexpected == ["extra"]


def test_sequential_indexes_slices_and_iterates_its_layers():
    relu, lin = nn.ReLU(), nn.Linear(2, 2)
    seq = nn.Sequential(relu, lin)
    assert seq[0] is relu and seq[-1] is lin
    assert [layer for layer in seq] == [relu, lin]
    head = seq[1:]
    assert len(head) == 1 and head[0] is lin
    with pytest.raises(IndexError, match="out of range"):
        seq[2]


def test_a_frozen_parameter_gets_no_gradient_and_the_others_do():
    m = MLP()
    w = m.param("fc1.weight")
    assert w.requires_grad
    assert w.requires_grad_(False) is w and not w.requires_grad
    op.sum(m(X)).back()
    assert w.grad is None
    assert m.param("fc1.bias").grad is not None
    w.requires_grad = True
    op.sum(m(X)).back()
    assert w.grad is not None


def test_a_parameter_repr_shows_its_dotted_path_shape_and_dtype():
    m = MLP()
    assert repr(m.param("body.1.weight")) == "Parameter(body.1.weight, shape=(2,8), dtype=float32)"
    assert repr(m.param("scale")) == "Parameter(MLP.scale, shape=(), dtype=float64)"
    m.param("fc1.bias").requires_grad_(False)
    assert repr(m.param("fc1.bias")).endswith("requires_grad=False)")
