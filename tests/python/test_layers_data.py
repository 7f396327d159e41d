"""The convolution, pooling, normalization, dropout, embedding and recurrent layers, checkpoints,
summaries, zkynet.data and the Estimator from Python, against PyTorch 1.13 where it has them."""
import numpy as np
import pytest
import torch

from zkynet import data, nn, optim
from zkynet.framework import cg, op


def _set(param, value):
    """Sets a zkynet parameter to `value` through its in-place update (equal up to one rounding)."""
    value = np.asarray(value, dtype=np.asarray(param.value).dtype)
    param._add_(value - np.asarray(param.value))
    np.testing.assert_allclose(np.asarray(param.value), value, rtol=1e-6, atol=1e-7)


def _copy_from_torch(ours, theirs):
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _set(mine[name], p.detach().numpy())


def _rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("make, x, shape", [
    (lambda: nn.Conv2d(3, 8, 3), _rand(2, 3, 10, 10), (2, 8, 8, 8)),
    (lambda: nn.Conv2d(4, 6, (3, 5), stride=2, padding=(1, 2), groups=2, bias=False), _rand(2, 4, 9, 9), (2, 6, 5, 5)),
    (lambda: nn.MaxPool2d(2), _rand(2, 3, 10, 10), (2, 3, 5, 5)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), _rand(2, 3, 10, 10), (2, 3, 5, 5)),
    (lambda: nn.AvgPool2d((2, 3)), _rand(2, 3, 10, 9), (2, 3, 5, 3)),
    (lambda: nn.Flatten(), _rand(2, 3, 4, 5), (2, 60)),
    (lambda: nn.Flatten(1, 2), _rand(2, 3, 4, 5), (2, 12, 5)),
    (lambda: nn.BatchNorm1d(3), _rand(4, 3), (4, 3)),
    (lambda: nn.BatchNorm1d(3), _rand(4, 3, 7), (4, 3, 7)),
    (lambda: nn.BatchNorm2d(3), _rand(4, 3, 5, 5), (4, 3, 5, 5)),
    (lambda: nn.LayerNorm(5), _rand(4, 3, 5), (4, 3, 5)),
    (lambda: nn.LayerNorm((3, 5), elementwise_affine=False), _rand(4, 3, 5), (4, 3, 5)),
    (lambda: nn.Dropout(0.3), _rand(4, 3), (4, 3)),
    (lambda: nn.Embedding(10, 4), np.array([[1, 2, 3], [9, 0, 0]], dtype=np.int64), (2, 3, 4)),
    (lambda: nn.LeakyReLU(0.2), _rand(4, 3), (4, 3)),
    (lambda: nn.RNN(3, 5, num_layers=2, nonlinearity="relu"), _rand(7, 2, 3), (7, 2, 5)),
    (lambda: nn.LSTM(3, 5, batch_first=True), _rand(2, 7, 3), (2, 7, 5)),
    (lambda: nn.GRU(3, 5), _rand(7, 2, 3), (7, 2, 5)),
])
def test_layer_output_shapes(make, x, shape):
    layer = make()
    assert layer(x).value.shape == shape


def test_layer_options_read_back():
    c = nn.Conv2d(4, 6, (3, 5), stride=2, padding=(1, 2), groups=2, bias=False)
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.groups) == (4, 6, (3, 5), (2, 2), (1, 2), 2)
    assert c.bias is None and c.weight.value.shape == (6, 2, 3, 5)
    assert nn.Embedding(10, 4).weight.value.shape == (10, 4)
    assert nn.LayerNorm((3, 5)).normalized_shape == (3, 5)
    assert nn.Dropout(0.25).p == 0.25


def test_leaky_relu_values():
    x = _rand(4, 3)
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x).value, np.where(x > 0, x, 0.2 * x), rtol=1e-6)


def test_conv2d_and_pooling_follow_pytorch():
    theirs = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    ours = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    _copy_from_torch(ours, theirs)
    x = _rand(2, 4, 9, 8)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(x).value, expected, rtol=1e-4, atol=1e-5)
    # the functional form
    got = op.conv2d(x, theirs.weight.detach().numpy(), theirs.bias.detach().numpy(), stride=(2, 1), padding=1,
                    dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got.value, expected, rtol=1e-4, atol=1e-5)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(nn.MaxPool2d(3, stride=2, padding=1)(x).value,
                               torch.nn.functional.max_pool2d(t, 3, stride=2, padding=1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(op.avg_pool2d(x, 2, padding=1, count_include_pad=False).value,
                               torch.nn.functional.avg_pool2d(t, 2, padding=1, count_include_pad=False).numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(op.max_pool2d(x, (2, 3)).value, torch.nn.functional.max_pool2d(t, (2, 3)).numpy())


def test_batch_norm1d_follows_pytorch_in_train_and_eval():
    theirs = torch.nn.BatchNorm1d(3, momentum=0.2)
    ours = nn.BatchNorm1d(3, momentum=0.2)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        theirs.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    _copy_from_torch(ours, theirs)
    for seed in range(3):  # training mode: batch statistics, running statistics updated
        x = _rand(8, 3, 4, seed=seed) * 2 + 1
        np.testing.assert_allclose(ours(x).value, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    assert int(ours.num_batches_tracked) == 3
    buffers = dict(ours.named_buffers())
    assert set(buffers) == {"running_mean", "running_var", "num_batches_tracked"}
    ours.eval()
    theirs.eval()
    assert not ours.training
    x = _rand(5, 3, seed=7)
    np.testing.assert_allclose(ours(x).value, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)  # unchanged
    assert ours.train().training


def test_layer_norm_follows_pytorch():
    theirs = torch.nn.LayerNorm((3, 5), eps=1e-4)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(_rand(3, 5, seed=1)))
        theirs.bias.copy_(torch.from_numpy(_rand(3, 5, seed=2)))
    ours = nn.LayerNorm((3, 5), eps=1e-4)
    _copy_from_torch(ours, theirs)
    x = _rand(4, 3, 5)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(x).value, expected, rtol=1e-4, atol=1e-5)
    got = op.layer_norm(x, (3, 5), theirs.weight.detach().numpy(), theirs.bias.detach().numpy(), eps=1e-4)
    np.testing.assert_allclose(got.value, expected, rtol=1e-4, atol=1e-5)


def test_lstm_follows_pytorch_and_keeps_state():
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2)
    ours = nn.LSTM(3, 4, num_layers=2)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    _copy_from_torch(ours, theirs)
    x = _rand(6, 2, 3)
    out, (h, c) = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(ours(x).value, out.detach().numpy(), rtol=1e-4, atol=1e-5)
    h_n, c_n = ours.last_state
    np.testing.assert_allclose(h_n.value, h.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c_n.value, c.detach().numpy(), rtol=1e-4, atol=1e-5)
    # an explicit initial state
    h0, c0 = _rand(2, 2, 4, seed=3), _rand(2, 2, 4, seed=4)
    out2, _ = theirs(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    np.testing.assert_allclose(ours(x, h0, c0).value, out2.detach().numpy(), rtol=1e-4, atol=1e-5)
    # stateful: two halves give the values of the whole sequence
    ours.stateful = True
    first = ours(x[:3]).value
    second = ours(x[3:]).value
    np.testing.assert_allclose(np.concatenate([first, second]), out.detach().numpy(), rtol=1e-4, atol=1e-5)
    ours.reset_state()
    assert ours.last_state is None
    np.testing.assert_allclose(ours(x[:3]).value, first, rtol=1e-6)


def test_gru_and_rnn_follow_pytorch():
    torch.manual_seed(1)
    for theirs, ours in [(torch.nn.GRU(3, 4, batch_first=True), nn.GRU(3, 4, batch_first=True)),
                         (torch.nn.RNN(3, 4, nonlinearity="relu"), nn.RNN(3, 4, nonlinearity="relu"))]:
        _copy_from_torch(ours, theirs)
        x = _rand(2, 5, 3)
        np.testing.assert_allclose(ours(x).value, theirs(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-4, atol=1e-5)


def test_bmm_and_dropout_operators():
    a, b = _rand(3, 2, 4), _rand(3, 4, 5, seed=1)
    np.testing.assert_allclose(op.bmm(a, b).value, a @ b, rtol=1e-5, atol=1e-6)
    x = np.ones((1000,), np.float32)
    np.testing.assert_array_equal(op.dropout(x, 0.5, training=False).value, x)
    y = np.asarray(op.dropout(x, 0.5).value)
    assert set(np.unique(y)) <= {0.0, 2.0} and 300 < (y == 0).sum() < 700


def test_train_and_eval_switch_dropout():
    nn.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    drop = nn.Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    assert drop.training
    y = np.asarray(drop(x).value)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert drop.eval() is drop and not drop.training
    np.testing.assert_array_equal(drop(x).value, x)
    drop.train()
    assert (np.asarray(drop(x).value) == 0).any()
    # eval() reaches submodules
    model.eval()
    xs = _rand(3, 4)
    np.testing.assert_array_equal(model(xs).value, model(xs).value)
    model.train(False)
    assert not model.training
    model.train(mode=True)
    assert model.training


class ConvNet(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y")))
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 1)

    def call(self, x, y):
        return op.mse_loss(self.fc(self.flat(self.pool(op.relu(self.conv(x))))), y)


def test_python_module_with_conv_trains():
    nn.manual_seed(0)
    model = ConvNet()
    assert [n for n, _ in model.named_parameters()] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    x = _rand(16, 1, 8, 8)
    y = x.mean(axis=(1, 2, 3))[:, None].astype(np.float32)
    opt = optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        g = model(x, y)
        losses.append(float(g.value))
        g.back()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_checkpoint_round_trip(tmp_path):
    nn.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    a(_rand(4, 1, 4, 4))  # updates the running statistics
    path = str(tmp_path / "model.h5")
    nn.save_checkpoint(a, path)
    nn.manual_seed(1)
    b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert nn.load_checkpoint(b, path) == ([], [])
    sa, sb = nn.state_dict(a), nn.state_dict(b)
    assert list(sa) == list(sb) and "1.running_mean" in sa
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    c = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(Exception):
        nn.load_checkpoint(c, path)
    missing, unexpected = nn.load_checkpoint(c, path, strict=False)
    assert missing == [] and "3.weight" in unexpected


def test_summary_lists_layers():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    text = nn.summary(model, np.zeros((2, 1, 8, 8), np.float32))
    assert isinstance(text, str)
    assert "Conv2d" in text and "(2,4,6,6)" in text and "(2,10)" in text
    assert f"Total params: {40 + 1450:,}" in text
    assert model.training  # restored


def test_data_loader_batches():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.int64)
    ds = data.TensorDataset(x, y)
    assert len(ds) == 10
    sx, sy = ds[3]
    np.testing.assert_array_equal(sx, x[3])
    assert int(sy) == 3
    loader = data.DataLoader(ds, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert all(isinstance(b, list) and len(b) == 2 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    shuffled = data.DataLoader(ds, batch_size=3, shuffle=True, drop_last=True, seed=5)
    epoch0 = [b[1] for b in shuffled]
    assert len(epoch0) == 3 and all(b.shape == (3,) for b in epoch0)
    seen = np.concatenate(epoch0)
    assert len(set(seen.tolist())) == 9
    for xb, yb in zip([b[0] for b in data.DataLoader(ds, batch_size=3, shuffle=True, seed=5)], epoch0):
        np.testing.assert_array_equal(xb, x[yb])
    assert shuffled.epoch == 1
    epoch1 = [b[1] for b in shuffled]
    assert any((p != q).any() for p, q in zip(epoch0, epoch1))
    shuffled.set_epoch(0)
    for p, q in zip(epoch0, [b[1] for b in shuffled]):
        np.testing.assert_array_equal(p, q)


def test_estimator_fits_a_tiny_regression():
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    model = nn.Linear(3, 1)
    opt = optim.Adam(model.parameters(), lr=0.05)
    calls = []

    def loss_fn(prediction, target):
        calls.append(1)
        return op.mse_loss(prediction, target)

    est = nn.Estimator(model, loss_fn, opt, epochs=30, batchsize=16, validation_split=0.25, seed=1, verbose=False)
    logs = est.fit(x, y)
    assert calls
    assert [l["epoch"] for l in logs] == list(range(1, 31))
    assert all(set(l) >= {"epoch", "loss", "val_loss"} for l in logs)
    assert logs[-1]["loss"] < 0.1 * logs[0]["loss"]
    assert logs[-1]["val_loss"] is not None and logs[-1]["val_loss"] < logs[0]["val_loss"]
    pred = est.predict(x)
    assert isinstance(pred, np.ndarray) and pred.shape == (128, 1)
    assert np.mean((pred - y) ** 2) < 0.05
    # early stopping stops before the last epoch once the loss cannot improve
    est2 = nn.Estimator(nn.Linear(3, 1), loss_fn, optim.SGD(model.parameters(), lr=0.0), epochs=20, batchsize=32,
                        validation_split=0.25, patience=2, verbose=False)
    assert len(est2.fit(x, y)) < 20


def test_pooling_layers_refuse_a_stride_of_zero_as_torch():
    x = np.ones((1, 1, 4, 4))
    for layer in (nn.MaxPool2d(2, stride=0), nn.AvgPool2d(2, stride=0)):
        with pytest.raises(RuntimeError, match="stride must be positive"):
            layer(x)
    assert nn.MaxPool2d(2)(x).value.shape == (1, 1, 2, 2)
