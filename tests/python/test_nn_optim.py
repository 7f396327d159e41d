"""zkynet.nn / zkynet.optim / the newer operators from Python, against PyTorch where it has them."""
import numpy as np
import pytest
import torch

from zkynet import nn, optim
from zkynet.framework import cg, op


def _quadratic_steps(make_zk, make_torch, steps=5):
    """Runs both optimizers on f(w) = sum(w^2 * [1, 2, 3]) from the same start; returns both w."""
    start = np.array([1.0, -2.0, 0.5])
    scale = np.array([1.0, 2.0, 3.0])
    w = cg.Parameter("w", start)
    opt = make_zk([w])

    class F(cg.Module):
        def __init__(self):
            super().__init__(inputs=(), params=(w,))

        def call(self):
            return op.sum(op.mult(op.square(self.param("w")), scale))

    f = F()
    tw = torch.tensor(start, requires_grad=True)
    topt = make_torch([tw])
    for _ in range(steps):
        opt.zero_grad()
        f().back()
        opt.step()
        topt.zero_grad()
        (tw ** 2 * torch.tensor(scale)).sum().backward()
        topt.step()
    return np.array(w.value), tw.detach().numpy()


@pytest.mark.parametrize("name, zk, th", [
    ("sgd_nesterov", lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("adam_amsgrad", lambda p: optim.Adam(p, lr=0.1, amsgrad=True), lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True)),
    ("adamw", lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1)),
    ("rmsprop_centered", lambda p: optim.RMSprop(p, lr=0.01, centered=True, momentum=0.5),
     lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, momentum=0.5)),
])
def test_optimizers_follow_pytorch_from_python(name, zk, th):
    ours, theirs = _quadratic_steps(zk, th)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12, err_msg=name)


def test_step_lr_schedule_follows_pytorch():
    w = cg.Parameter("w", np.zeros(1))
    opt = optim.SGD([w], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    rates = []
    for _ in range(5):
        sched.step()
        rates.append(opt.lr)
    assert rates == [1.0, 0.5, 0.5, 0.25, 0.25]


def test_state_dict_round_trip_restores_a_layer():
    layer = nn.Linear(3, 2)
    saved = nn.state_dict(layer)
    before = np.array(layer.weight.value)
    layer.weight._add_(np.ones((2, 3), dtype=np.float32))
    missing, unexpected = nn.load_state_dict(layer, saved)
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(layer.weight.value, before)


def test_load_state_dict_names_a_wrong_shape():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="weight"):
        nn.load_state_dict(layer, {"weight": np.zeros((3, 3), dtype=np.float32), "bias": np.zeros(2, dtype=np.float32)})


def test_parameter_vectors_round_trip():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    theta = nn.parameters_to_vector(model.parameters())
    assert theta.shape == (2 * 3 + 3 + 3 + 1,)
    nn.vector_to_parameters(np.zeros_like(theta), model.parameters())
    assert not np.any(nn.parameters_to_vector(model.parameters()))
    assert [p.name for p in nn.weights(model)] == ["weight", "weight"]


def test_clip_grad_norm_scales_gradients_like_pytorch():
    w = cg.Parameter("w", np.array([3.0, 4.0]))

    class F(cg.Module):
        def __init__(self):
            super().__init__(params=(w,))

        def call(self):
            return op.sum(op.mult(self.param("w"), self.param("w")))

    F()().back()  # grad = 2w = [6, 8], norm 10
    total = optim.clip_grad_norm([w], max_norm=1.0)
    assert total == pytest.approx(10.0)
    np.testing.assert_allclose(w.grad, [0.6, 0.8], rtol=1e-5)


@pytest.mark.parametrize("f, inputs", [
    (lambda a, b: op.sum(op.mult(op.cat([a, b], 0), op.cat([b, a], 0))), [np.array([1.0, 2.0]), np.array([3.0, -1.0])]),
    (lambda a: op.sum(op.square(op.stack([a, op.mult(a, 2.0)], 1))), [np.array([[1.0, 2.0], [0.5, -1.0]])]),
    (lambda a: op.max(op.mult(a, a), 1), [np.array([[1.0, -3.0, 2.0], [0.5, 0.25, -0.75]])]),
    (lambda a: op.std(a, 1), [np.array([[1.0, -3.0, 2.0], [0.5, 0.25, -0.75]])]),
    (lambda a: op.clamp(op.mult(a, 3.0), -1.0, 2.0), [np.array([0.1, -0.9, 0.5, 0.2])]),
])
def test_indexing_and_selection_operators_pass_gradcheck_from_python(f, inputs):
    ok, message = cg.gradcheck(f, inputs)
    assert ok, message


def test_embedding_and_index_select_match_pytorch():
    weight = np.arange(12, dtype=np.float64).reshape(4, 3)
    idx = np.array([[0, 3], [3, 1]])
    np.testing.assert_array_equal(op.embedding(idx, weight).value,
                                  torch.nn.functional.embedding(torch.tensor(idx), torch.tensor(weight)).numpy())
    np.testing.assert_array_equal(op.index_select(weight, 0, np.array([2, 0])).value, weight[[2, 0]])


def test_linear_operator_follows_pytorch_values_and_gradients():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    seed = rng.standard_normal((5, 4))

    class F(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"), cg.Variable("w"), cg.Variable("b")))

        def call(self, x, w, b):
            return op.sum(op.mult(op.linear(x, w, b), seed))

    f = F()
    g = f(x, w, b)
    g.back()
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = (torch.nn.functional.linear(tx, tw, tb) * torch.from_numpy(seed)).sum()
    out.backward()
    np.testing.assert_allclose(g.value, out.item(), rtol=1e-12)
    for name, t in (("x", tx), ("w", tw), ("b", tb)):
        np.testing.assert_allclose(g.grad(f.input(name)), t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.linear(x, w).value, x @ w.T, rtol=1e-12)
