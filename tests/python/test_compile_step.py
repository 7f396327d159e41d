"""cg.compile(train_step): the whole training step (model, loss, back(), opt.step()) replays as
one schedule. Parameters after N compiled steps equal N dynamic steps' bit for bit; replays run
no Python; learning-rate schedules are honoured."""
import numpy as np
import pytest

from zkynet import nn, optim
from zkynet.framework import cg, op


def digits_mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 10))


class SmallLstm(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"),))
        self.lstm = nn.LSTM(3, 4)
        self.head = nn.Linear(4, 1)

    def call(self, x):
        return self.head(self.lstm(x))


def batches(kind, n, seed=5):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        if kind == "mlp":
            yield rng.standard_normal((6, 64)).astype(np.float32), rng.integers(0, 10, 6)
        elif kind == "cnn":
            yield rng.standard_normal((2, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 2)
        else:
            yield rng.standard_normal((5, 2, 3)).astype(np.float32), rng.standard_normal((5, 2, 1)).astype(np.float32)


MODELS = {"mlp": digits_mlp, "cnn": small_cnn, "lstm": SmallLstm}
OPTIMIZERS = {
    "sgd_momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2),
}


def loss_of(kind, out, y):
    return op.mse_loss(out, y) if kind == "lstm" else op.cross_entropy(out, y)


def make(kind, opt_name, seed=7):
    nn.manual_seed(seed)
    model = MODELS[kind]()
    return model, OPTIMIZERS[opt_name](model.parameters())


def params_bytes(model):
    return [(n, np.array(p.value).tobytes()) for n, p in model.named_parameters()]


@pytest.mark.parametrize("kind,opt_name", [("mlp", "sgd_momentum"), ("mlp", "adam"), ("mlp", "adamw"),
                                           ("cnn", "sgd_momentum"), ("cnn", "adamw"), ("lstm", "adam")])
def test_compiled_steps_equal_dynamic_steps_bit_for_bit(kind, opt_name):
    dyn, dyn_opt = make(kind, opt_name)
    fast, fast_opt = make(kind, opt_name)
    assert params_bytes(dyn) == params_bytes(fast)
    traced = []

    def train_step(x, y):
        traced.append(1)  # Python runs only when the step is captured
        fast_opt.zero_grad()
        loss = loss_of(kind, fast(x), y)
        loss.back()
        fast_opt.step()
        return loss

    step = cg.compile(train_step)
    for x, y in batches(kind, 5):
        dyn_opt.zero_grad()
        d = loss_of(kind, dyn(x), y)
        d.back()
        dyn_opt.step()
        r = step(x, y)
        assert np.array(d.value).tobytes() == np.array(r.value).tobytes()
        assert params_bytes(dyn) == params_bytes(fast)
    assert len(traced) == 1
    assert step.stats["captures"] == 1 and step.stats["replays"] == 4
    plan = step.last.memory_plan
    assert not plan["dropped"] and plan["planned_replays"] == 3 and plan["planned_buffers"] > 0
    text = str(step.last)
    assert "back(%" in text and ".step" in text and "zero_grad(" in text


def test_a_scheduler_between_compiled_steps_changes_the_replayed_learning_rate():
    dyn, dyn_opt = make("mlp", "adam")
    fast, fast_opt = make("mlp", "adam")
    dyn_sched = optim.StepLR(dyn_opt, step_size=1, gamma=0.5)
    fast_sched = optim.StepLR(fast_opt, step_size=1, gamma=0.5)

    def train_step(x, y):
        fast_opt.zero_grad()
        loss = op.cross_entropy(fast(x), y)
        loss.back()
        fast_opt.step()
        return loss

    step = cg.compile(train_step)
    for x, y in batches("mlp", 4):
        dyn_opt.zero_grad()
        op.cross_entropy(dyn(x), y).back()
        dyn_opt.step()
        dyn_sched.step()
        step(x, y)
        fast_sched.step()
        assert params_bytes(dyn) == params_bytes(fast)
    assert fast_opt.lr == pytest.approx(1e-2 / 16)


def test_a_learning_rate_of_zero_set_after_capture_stops_the_replayed_updates():
    model, opt = make("mlp", "sgd_momentum")

    def train_step(x, y):
        opt.zero_grad()
        loss = op.cross_entropy(model(x), y)
        loss.back()
        opt.step()
        return loss

    step = cg.compile(train_step)
    data = list(batches("mlp", 3))
    step(*data[0])
    opt.lr = 0.0
    opt_state = params_bytes(model)
    step(*data[1])
    assert step.stats["replays"] == 1
    assert params_bytes(model) == opt_state


def test_check_mode_runs_a_steps_update_once_and_catches_a_changed_sequence_of_effects():
    model, opt = make("mlp", "sgd_momentum")
    ref, ref_opt = make("mlp", "sgd_momentum")
    clip = [False]

    def train_step(x, y):
        opt.zero_grad()
        loss = op.cross_entropy(model(x), y)
        loss.back()
        if clip[0]:
            optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        return loss

    step = cg.compile(train_step, check=True)
    data = list(batches("mlp", 3))
    for x, y in data[:2]:
        step(x, y)
        ref_opt.zero_grad()
        op.cross_entropy(ref(x), y).back()
        ref_opt.step()
    assert params_bytes(model) == params_bytes(ref)
    clip[0] = True
    with pytest.raises(RuntimeError, match="effects differ"):
        step(*data[2])


def test_dead_operators_are_not_replayed_and_are_drawn_dashed():
    def f(a):
        unused = op.exp(a * 3.0)  # noqa: F841 (dead: nothing depends on it)
        return op.sum(op.tanh(a))

    fast = cg.compile(f)
    for v in (0.1, 0.2):
        g = fast(np.full(3, v))
        assert float(g.value) == pytest.approx(3 * np.tanh(v))
    assert fast.last.eliminated == 2
    assert "dead" in str(fast.last) and 'xlabel="dead"' in fast.last.dot()


def test_common_subexpressions_are_computed_once():
    def f(a):
        return op.sum(op.tanh(a) * op.tanh(a))

    fast = cg.compile(f)
    fast(np.full(3, 0.1))
    for v in (0.3, -0.4):
        x = np.full(3, v)
        fresh = cg.compile(f)  # its first call runs dynamically
        d = fresh(x)
        d.back()
        g = fast(x)
        g.back()
        assert np.array(d.value).tobytes() == np.array(g.value).tobytes()
        assert np.array(d.grad(fresh.input("a"))).tobytes() == np.array(g.grad(fast.input("a"))).tobytes()
        assert float(g.value) == pytest.approx(3 * np.tanh(v) ** 2)
    assert fast.stats["replays"] == 2
    assert fast.last.merged == 1
    assert "= %" in str(fast.last)


def test_a_step_that_returns_nothing_is_a_clear_error():
    model, opt = make("mlp", "sgd_momentum")

    def train_step(x, y):
        opt.zero_grad()
        op.cross_entropy(model(x), y).back()
        opt.step()

    with pytest.raises(TypeError, match="returned None; return a node"):
        cg.compile(train_step)(*next(batches("mlp", 1)))


def test_footgun_a_hand_written_update_runs_at_capture_only():
    # Not a library effect: Python code writing the parameters is not recorded, so replays
    # compute the loss and gradients but never apply this update (documented in cg.compile).
    model, _ = make("mlp", "sgd_momentum")
    w = model.parameters()[0]

    def train_step(x, y):
        loss = op.cross_entropy(model(x), y)
        loss.back()
        value = np.array(w.value)
        w.value = value - 0.1 * np.array(w.grad)
        return loss

    step = cg.compile(train_step)
    data = list(batches("mlp", 3))
    step(*data[0])
    after_capture = np.array(w.value).tobytes()
    step(*data[1])
    step(*data[2])
    assert step.stats["replays"] == 2
    assert np.array(w.value).tobytes() == after_capture
