"""Attention and Transformer layers against PyTorch (Debian's torch 1.13): values and gradients of
every input and parameter, float32 and float64, with torch's modules and copied weights (state
dicts loaded both ways) as the reference.

torch 1.13 has no public torch.nn.functional.scaled_dot_product_attention: its reference here is
the math path that torch's documentation gives for that function (softmax(q k^T scale + bias) v).
"""
import math
import subprocess
import sys

import numpy as np
import pytest

from zkynet import nn
from zkynet.framework import cg, op

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: 2e-5, np.float64: 1e-10}


def ref_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """torch's documented reference implementation of scaled_dot_product_attention."""
    L, S = query.size(-2), key.size(-2)
    scale_factor = 1 / math.sqrt(query.size(-1)) if scale is None else scale
    attn_bias = torch.zeros(L, S, dtype=query.dtype)
    if is_causal:
        attn_bias.masked_fill_(torch.ones(L, S, dtype=torch.bool).tril(diagonal=0).logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_bias = attn_bias.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            attn_bias = attn_mask + attn_bias
    attn = torch.softmax(query @ key.transpose(-2, -1) * scale_factor + attn_bias, dim=-1)
    return attn @ value


class _Function(cg.Module):
    def __init__(self, f, n):
        super().__init__(inputs=tuple(cg.Variable(f"x{i}") for i in range(n)))
        self._f = f

    def call(self, *xs):
        return self._f(*xs)


def zk_value_and_grads(f, inputs, seed):
    m = _Function(f, len(inputs))
    g = m(*inputs)
    g.back(seed)
    return np.array(g.value), [np.array(g.grad(m.input(f"x{i}"))) for i in range(len(inputs))]


def torch_value_and_grads(f, inputs, seed):
    xs = [torch.tensor(x, requires_grad=True) for x in inputs]
    out = f(*xs)
    out.backward(torch.from_numpy(seed))
    return out.detach().numpy(), [x.grad.numpy() for x in xs]


def close(a, b, dt):
    np.testing.assert_allclose(a, b, rtol=TOL[dt], atol=TOL[dt])


def rand(*shape, seed=0, dt=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


# ---- scaled_dot_product_attention ---------------------------------------------------------------

CASES = {
    "plain": dict(shapes=[(2, 3, 70, 16), (2, 3, 90, 16), (2, 3, 90, 8)]),
    "bool mask": dict(shapes=[(2, 2, 70, 16), (2, 2, 90, 16), (2, 2, 90, 8)], mask="bool"),
    "float mask": dict(shapes=[(2, 70, 16), (2, 90, 16), (2, 90, 8)], mask="float"),
    "causal": dict(shapes=[(3, 130, 32), (3, 130, 32), (3, 130, 32)], is_causal=True),
    "scale": dict(shapes=[(1, 5, 4), (1, 7, 4), (1, 7, 3)], scale=0.3),
    "broadcast batch": dict(shapes=[(2, 4, 9, 8), (1, 4, 11, 8), (2, 1, 11, 8)]),
}


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_sdpa_values_and_gradients_match_torch(name, dt):
    case = CASES[name]
    q, k, v = (rand(*s, seed=i, dt=dt) for i, s in enumerate(case["shapes"]))
    L, S = q.shape[-2], k.shape[-2]
    kwargs = {k_: case[k_] for k_ in ("is_causal", "scale") if k_ in case}
    zk_mask = t_mask = None
    if case.get("mask") == "bool":
        zk_mask = np.random.default_rng(7).random((L, S)) < 0.8
        zk_mask[:, 0] = True
        t_mask = torch.from_numpy(zk_mask)
    elif case.get("mask") == "float":
        zk_mask = rand(q.shape[0], 1, S, seed=8, dt=dt)
        t_mask = torch.from_numpy(zk_mask)
    seed = rand(*np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]), L, v.shape[-1], seed=9, dt=dt)
    ours = zk_value_and_grads(lambda a, b, c: op.scaled_dot_product_attention(a, b, c, attn_mask=zk_mask, **kwargs),
                              [q, k, v], seed)
    theirs = torch_value_and_grads(lambda a, b, c: ref_sdpa(a, b, c, attn_mask=t_mask, **kwargs), [q, k, v], seed)
    close(ours[0], theirs[0], dt)
    for a, b in zip(ours[1], theirs[1]):
        close(a, b, dt)


def test_sdpa_fully_masked_row_is_nan_as_torch_math_path():
    q, k, v = rand(3, 4), rand(5, 4, seed=1), rand(5, 2, seed=2)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    ours = np.array(op.scaled_dot_product_attention(q, k, v, attn_mask=mask).value)
    theirs = ref_sdpa(*(torch.from_numpy(a) for a in (q, k, v)), attn_mask=torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, equal_nan=True)
    assert np.isnan(ours[1]).all()


def test_sdpa_dropout_is_reproducible_and_regenerated_in_backward():
    q, k, v = rand(1, 40, 8), rand(1, 40, 8, seed=1), rand(1, 40, 4, seed=2)
    nn.manual_seed(3)
    a = np.array(op.scaled_dot_product_attention(q, k, v, dropout_p=0.3).value)
    nn.manual_seed(3)
    b = np.array(op.scaled_dot_product_attention(q, k, v, dropout_p=0.3).value)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, np.array(op.scaled_dot_product_attention(q, k, v).value))
    # The gradient is that of the function with this mask: a central difference agrees.
    seed = rand(1, 40, 4, seed=5)

    def f(x):
        nn.manual_seed(3)
        return float(np.sum(np.array(op.scaled_dot_product_attention(x, k, v, dropout_p=0.3).value) * seed))

    nn.manual_seed(3)
    _, grads = zk_value_and_grads(lambda x: op.scaled_dot_product_attention(x, k, v, dropout_p=0.3), [q], seed)
    e = np.zeros_like(q)
    e[0, 3, 2] = 1e-6
    numeric = (f(q + e) - f(q - e)) / 2e-6
    assert abs(grads[0][0, 3, 2] - numeric) < 1e-6 * max(1.0, abs(numeric))


_PEAK = """
import sys, numpy as np
from zkynet.framework import cg, op
T = int(sys.argv[1])
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, T, 64)).astype(np.float32) for _ in range(3))
class F(cg.Module):
    def __init__(self):
        super().__init__(inputs=(cg.Variable("q"), cg.Variable("k"), cg.Variable("v")))
    def call(self, a, b, c):
        return op.sum(op.scaled_dot_product_attention(a, b, c, is_causal=True))
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
m = F()
m(q[:, :8], k[:, :8], v[:, :8]).back()  # libraries loaded, pools started
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak resident set size (VmHWM) to the current one (Linux >= 4.0)
start = hwm()
g = m(q, k, v)
g.back()
print(hwm() - start)
"""


def test_sdpa_peak_memory_grows_linearly_in_sequence_length():
    # Forward and backward at T = 512, 2048, 8192 (one causal head of 64, float32), each in a
    # fresh process: a (T, T) score matrix would take 1, 16 and 256 MiB (torch's math path
    # measured 17, 95 and 1053 MiB of peak growth here). The process's peak resident memory
    # grows by the operands, output, logsumexp and gradients only (~10 MiB at T = 8192).
    growth = {}
    for T in (512, 2048, 8192):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(T)], capture_output=True, text=True, check=True)
        growth[T] = int(out.stdout.split()[-1])
    print("peak RSS growth of forward + backward (MiB):", {T: round(b / 2**20, 2) for T, b in growth.items()})
    assert growth[8192] < 32 * 2**20, growth  # an (8192, 8192) float32 score matrix alone is 256 MiB


# ---- GELU, Embedding(padding_idx), positional encodings -----------------------------------------

@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_gelu_matches_torch(approximate, dt):
    x = rand(4, 5, seed=1, dt=dt) * 3
    seed = rand(4, 5, seed=2, dt=dt)
    ours = zk_value_and_grads(lambda a: op.gelu(a, approximate=approximate), [x], seed)
    theirs = torch_value_and_grads(lambda a: F.gelu(a, approximate=approximate), [x], seed)
    close(ours[0], theirs[0], dt)
    close(ours[1][0], theirs[1][0], dt)
    layer = nn.GELU(approximate=approximate)
    close(np.array(layer(x).value), theirs[0], dt)


def test_embedding_padding_idx_row_gets_no_gradient():
    emb = nn.Embedding(6, 3, padding_idx=2, dtype="float64")
    ref = torch.nn.Embedding(6, 3, padding_idx=2, dtype=torch.float64)
    assert np.all(np.array(emb.weight.value)[2] == 0)
    nn.load_state_dict(emb, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    g = emb(idx)
    seed = rand(2, 3, 3, seed=4)
    g.back(seed)
    out = ref(torch.from_numpy(idx))
    out.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(np.array(g.value), out.detach().numpy())
    np.testing.assert_allclose(np.array(g.grad(emb.param("weight"))), ref.weight.grad.numpy())
    assert emb.padding_idx == 2 and nn.Embedding(6, 3, padding_idx=-1).padding_idx == 5


def test_positional_encodings():
    pe = nn.SinusoidalPositionalEncoding(8, max_len=20, dtype="float64")
    x = rand(2, 5, 8)
    t = np.arange(5)[:, None]
    div = np.exp(np.arange(0, 8, 2) * (-math.log(10000.0) / 8))
    table = np.zeros((5, 8))
    table[:, 0::2] = np.sin(t * div)
    table[:, 1::2] = np.cos(t * div)
    np.testing.assert_allclose(np.array(pe(x).value), x + table, rtol=1e-12, atol=1e-12)
    seq_first = nn.SinusoidalPositionalEncoding(8, max_len=20, batch_first=False, dtype="float64")
    np.testing.assert_allclose(np.array(seq_first(x.transpose(1, 0, 2)).value), (x + table).transpose(1, 0, 2),
                               rtol=1e-12, atol=1e-12)
    learned = nn.LearnedPositionalEncoding(20, 8, dtype="float64")
    g = learned(x)
    g.back(np.ones((2, 5, 8)))
    w = np.array(learned.param("weight").value)
    np.testing.assert_allclose(np.array(g.value), x + w[:5])
    expected = np.zeros((20, 8))
    expected[:5] = 2.0
    np.testing.assert_allclose(np.array(g.grad(learned.param("weight"))), expected)


# ---- MultiheadAttention and the encoder, torch's modules as the reference -----------------------

def load_from_torch(ours, theirs):
    missing, unexpected = nn.load_state_dict(ours, {k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert not missing and not unexpected


def compare_parameters(ours, graph, theirs, dt):
    grads = dict(theirs.named_parameters())
    names = [name for name, _ in ours.named_parameters()]
    assert sorted(names) == sorted(grads)
    for name, p in ours.named_parameters():
        close(np.array(graph.grad(p)), grads[name].grad.numpy(), dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_matches_torch(dt, batch_first, need_weights):
    E, H, N, L, S = 16, 4, 2, 5, 7
    tdt = torch.float32 if dt == np.float32 else torch.float64
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=tdt)
    ours = nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=np.dtype(dt).name)
    load_from_torch(ours, theirs)
    shape = (lambda n, t: (n, t, E)) if batch_first else (lambda n, t: (t, n, E))
    q, k, v = rand(*shape(N, L), seed=1, dt=dt), rand(*shape(N, S), seed=2, dt=dt), rand(*shape(N, S), seed=3, dt=dt)
    kpm = np.zeros((N, S), bool)
    kpm[1, -2:] = True
    attn_mask = np.random.default_rng(4).random((L, S)) < 0.2
    attn_mask[:, 0] = False
    out, weights = ours(q, k, v, key_padding_mask=kpm, need_weights=need_weights, attn_mask=attn_mask)
    seed = rand(*np.array(out.value).shape, seed=5, dt=dt)
    out.back(seed)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    t_out, t_weights = theirs(tq, tk, tv, key_padding_mask=torch.from_numpy(kpm), need_weights=need_weights,
                              attn_mask=torch.from_numpy(attn_mask))
    t_out.backward(torch.from_numpy(seed))
    close(np.array(out.value), t_out.detach().numpy(), dt)
    for name, t in (("query", tq), ("key", tk), ("value", tv)):
        close(np.array(out.grad(ours.input(name))), t.grad.numpy(), dt)
    compare_parameters(ours, out, theirs, dt)
    if need_weights:
        close(np.array(weights.value), t_weights.detach().numpy(), dt)
    else:
        assert weights is None and t_weights is None
    # And back: our state dict loads into torch's module.
    fresh = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=tdt)
    fresh.load_state_dict({k_: torch.from_numpy(np.array(a)) for k_, a in nn.state_dict(ours).items()})
    close(fresh(tq, tk, tv, need_weights=False)[0].detach().numpy(),
          np.array(ours(q, k, v, need_weights=False)[0].value), dt)


def test_multihead_attention_per_head_weights_and_float_mask():
    E, H = 8, 2
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    ours = nn.MultiheadAttention(E, H, batch_first=True, dtype="float64")
    load_from_torch(ours, theirs)
    x = rand(3, 4, E)
    mask = rand(3 * H, 4, 4, seed=2)
    out, w = ours(x, x, x, attn_mask=mask, average_attn_weights=False)
    t_out, t_w = theirs(*(torch.from_numpy(x),) * 3, attn_mask=torch.from_numpy(mask), average_attn_weights=False)
    close(np.array(out.value), t_out.detach().numpy(), np.float64)
    close(np.array(w.value), t_w.detach().numpy(), np.float64)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_matches_torch(dt, norm_first, activation):
    d, H, ff, N, T = 16, 4, 32, 3, 6
    tdt = torch.float32 if dt == np.float32 else torch.float64
    theirs = torch.nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, activation=activation, batch_first=True,
                                              norm_first=norm_first, dtype=tdt)
    ours = nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, activation=activation, batch_first=True,
                                      norm_first=norm_first, dtype=np.dtype(dt).name)
    load_from_torch(ours, theirs)
    x = rand(N, T, d, seed=1, dt=dt)
    causal = np.triu(np.ones((T, T), bool), 1)
    kpm = np.zeros((N, T), bool)
    kpm[0, -1] = True
    g = ours(x, src_mask=causal, src_key_padding_mask=kpm)
    seed = rand(N, T, d, seed=2, dt=dt)
    g.back(seed)
    tx = torch.tensor(x, requires_grad=True)
    t_out = theirs(tx, src_mask=torch.from_numpy(causal), src_key_padding_mask=torch.from_numpy(kpm))
    t_out.backward(torch.from_numpy(seed))
    close(np.array(g.value), t_out.detach().numpy(), dt)
    close(np.array(g.grad(ours.input("src"))), tx.grad.numpy(), dt)
    compare_parameters(ours, g, theirs, dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_transformer_encoder_matches_torch_both_ways(dt):
    d, H, ff, N, T = 16, 2, 24, 2, 5
    tdt = torch.float32 if dt == np.float32 else torch.float64
    t_layer = torch.nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, batch_first=True, dtype=tdt)
    theirs = torch.nn.TransformerEncoder(t_layer, 2, norm=torch.nn.LayerNorm(d, dtype=tdt))
    for p in theirs.parameters():  # torch deep-copies one layer: make the layers differ
        torch.nn.init.normal_(p, std=0.3)
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, batch_first=True,
                                                            dtype=np.dtype(dt).name), 2, norm=True)
    load_from_torch(ours, theirs)
    np.testing.assert_array_equal(np.array(ours.param("layers.1.linear1.weight").value),  # dotted paths, as torch
                                  theirs.layers[1].linear1.weight.detach().numpy())
    x = rand(N, T, d, seed=3, dt=dt)
    g = ours(x, is_causal=True)
    seed = rand(N, T, d, seed=4, dt=dt)
    g.back(seed)
    tx = torch.tensor(x, requires_grad=True)
    t_out = theirs(tx, mask=torch.triu(torch.full((T, T), float("-inf"), dtype=tdt), 1))
    t_out.backward(torch.from_numpy(seed))
    close(np.array(g.value), t_out.detach().numpy(), dt)
    close(np.array(g.grad(ours.input("src"))), tx.grad.numpy(), dt)
    compare_parameters(ours, g, theirs, dt)
    # Our state dict into a fresh torch encoder gives the same outputs.
    fresh = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, batch_first=True,
                                                                         dtype=tdt), 2,
                                        norm=torch.nn.LayerNorm(d, dtype=tdt))
    fresh.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in nn.state_dict(ours).items()})
    fresh.eval()
    close(fresh(torch.from_numpy(x), mask=torch.triu(torch.full((T, T), float("-inf"), dtype=tdt), 1)).detach().numpy(),
          np.array(ours(x, is_causal=True).value), dt)


def test_transformer_encoder_layer_dropout_and_eval():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True)
    x = rand(2, 4, 8, dt=np.float32)
    a, b = np.array(layer(x).value), np.array(layer(x).value)
    assert not np.allclose(a, b)  # training mode: fresh masks
    layer.eval()
    np.testing.assert_array_equal(np.array(layer(x).value), np.array(layer(x).value))


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decoder_layer_and_decoder_match_torch(dt, norm_first):
    d, H, ff, N, T, S = 16, 4, 24, 2, 5, 7
    tdt = torch.float32 if dt == np.float32 else torch.float64
    t_layer = torch.nn.TransformerDecoderLayer(d, H, ff, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=norm_first, dtype=tdt)
    theirs = torch.nn.TransformerDecoder(t_layer, 2, norm=torch.nn.LayerNorm(d, dtype=tdt))
    for p in theirs.parameters():  # torch deep-copies one layer: make the layers differ
        torch.nn.init.normal_(p, std=0.3)
    layer = nn.TransformerDecoderLayer(d, H, ff, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first, dtype=np.dtype(dt).name)
    ours = nn.TransformerDecoder(layer, 2, norm=True)
    load_from_torch(ours, theirs)
    tgt, memory = rand(N, T, d, seed=1, dt=dt), rand(N, S, d, seed=2, dt=dt)
    mpad = np.zeros((N, S), bool)
    mpad[1, -3:] = True
    g = ours(tgt, memory, tgt_is_causal=True, memory_key_padding_mask=mpad)
    seed = rand(N, T, d, seed=3, dt=dt)
    g.back(seed)
    tt, tm = torch.tensor(tgt, requires_grad=True), torch.tensor(memory, requires_grad=True)
    t_out = theirs(tt, tm, tgt_mask=torch.triu(torch.full((T, T), float("-inf"), dtype=tdt), 1),
                   memory_key_padding_mask=torch.from_numpy(mpad))
    t_out.backward(torch.from_numpy(seed))
    close(np.array(g.value), t_out.detach().numpy(), dt)
    close(np.array(g.grad(ours.input("tgt"))), tt.grad.numpy(), dt)
    close(np.array(g.grad(ours.input("memory"))), tm.grad.numpy(), dt)
    compare_parameters(ours, g, theirs, dt)
    # One layer alone, with a boolean tgt_mask.
    single = nn.TransformerDecoderLayer(d, H, ff, dropout=0.0, activation="gelu", batch_first=True,
                                        norm_first=norm_first, dtype=np.dtype(dt).name)
    nn.load_state_dict(single, {k[len("layers.0."):]: v.detach().numpy() for k, v in theirs.state_dict().items()
                                if k.startswith("layers.0.")})
    causal = np.triu(np.ones((T, T), bool), 1)
    with torch.no_grad():
        expected = theirs.layers[0](torch.from_numpy(tgt), torch.from_numpy(memory), tgt_mask=torch.from_numpy(causal))
    close(np.array(single(tgt, memory, tgt_mask=causal).value), expected.numpy(), dt)
