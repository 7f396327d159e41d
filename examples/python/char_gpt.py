"""A character-level GPT trained from scratch on the fortunes that Debian's `fortunes` package
ships (/usr/share/games/fortunes), from Python.

A decoder-only Transformer: token embeddings plus learned positions, a causal stack of pre-norm
TransformerEncoderLayers (GELU, no dropout) with a final LayerNorm, and a linear head. Every
tenth fortune is held out. The example prints the held-out loss of a unigram and a bigram model
counted on the training text (the baselines), the training and held-out loss of the Transformer
as it trains (AdamW, linear warmup then a cosine decay, gradients clipped to norm 1), samples of
generated text, saves a checkpoint and reloads it into a fresh model (same held-out loss), and
draws one training step's graph (one cluster per layer) into --graphs.

    .venv/bin/python examples/python/char_gpt.py [--steps 1000] [--layers 4] [--heads 4] [--d-model 128]
                                                 [--context 128] [--batch 16] [--lr 1e-2] [--graphs zkynet-graphs]

Losses are cross-entropies in nats per character. The defaults are the issue's model (4 layers,
4 heads, d = 128, context 128: 0.8 M parameters): 1000 steps reach a held-out loss of 1.91
against the bigram's 2.63 in about 7.7 minutes on the 2-core VM under load. tools/run_example.sh
runs it narrower and shorter (--d-model 64 --context 64 --steps 1000): about 90 s, 2.08.
"""
import argparse
import glob
import math
import os
import tempfile
import time

import numpy as np

from zkynet import nn, optim
from zkynet.framework import cg, op
from zkynet.visual import plot_cg

FORTUNES = "/usr/share/games/fortunes"
# The vocabulary: tab (attributions are indented with it), newline, the 95 printable ASCII
# characters, and one token for anything else (accented letters, the backspaces of overstruck text).
VOCAB = ["\t", "\n"] + [chr(c) for c in range(32, 127)] + ["\ufffd"]
UNKNOWN = len(VOCAB) - 1
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}


def fortune_files(directory=FORTUNES):
    """The fortune text files: the data files beside their .dat indexes (.u8 names are links)."""
    return sorted(f for f in glob.glob(os.path.join(directory, "*"))
                  if os.path.isfile(f) and not os.path.islink(f) and "." not in os.path.basename(f))


def load_corpus(directory=FORTUNES, held_out_every=10):
    """(train, held_out): int64 character codes; fortune i goes to held_out when i % held_out_every == 0.

    Each fortune keeps its "%" separator line, so the model learns where a fortune ends.
    """
    fortunes = []
    for path in fortune_files(directory):
        with open(path, encoding="utf-8", errors="replace") as f:
            fortunes += [s.strip("\n") + "\n%\n" for s in f.read().split("\n%\n") if s.strip()]
    if not fortunes:
        raise SystemExit(f"no fortunes under {directory}: apt-get install fortunes")
    held = "".join(s for i, s in enumerate(fortunes) if i % held_out_every == 0)
    train = "".join(s for i, s in enumerate(fortunes) if i % held_out_every != 0)
    return encode(train), encode(held)


def encode(text):
    return np.array([_INDEX.get(ch, UNKNOWN) for ch in text], dtype=np.int64)


def decode(codes):
    return "".join(VOCAB[int(c)] for c in codes)


def windows(codes, context, starts):
    """(inputs, targets), each (len(starts), context): the characters at starts + 0..context-1 and the next ones."""
    idx = np.asarray(starts)[:, None] + np.arange(context)[None, :]
    return codes[idx], codes[idx + 1]


def held_out_windows(codes, context, max_tokens):
    """Consecutive, non-overlapping windows covering the first ~max_tokens held-out characters."""
    n = max(1, min((len(codes) - 1) // context, max(1, max_tokens // context)))
    return windows(codes, context, np.arange(n) * context)


# ---- the baselines ------------------------------------------------------------------------------

def unigram_loss(train, targets, alpha=1.0):
    """Held-out cross-entropy of character frequencies counted on train (add-alpha smoothed)."""
    counts = np.bincount(train, minlength=len(VOCAB)) + alpha
    logp = np.log(counts / counts.sum())
    return float(-logp[targets].mean())


def bigram_loss(train, prev, targets):
    """Held-out cross-entropy of P(next | previous character) counted on train, add-alpha smoothed
    with the alpha (of 1, 0.1, 0.01) that does best on the held-out text: the baseline's best case."""
    counts = np.zeros((len(VOCAB), len(VOCAB)))
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    best = math.inf
    for alpha in (1.0, 0.1, 0.01):
        c = counts + alpha
        logp = np.log(c / c.sum(axis=1, keepdims=True))
        best = min(best, float(-logp[prev, targets].mean()))
    return best


# ---- the model ----------------------------------------------------------------------------------

class CharGPT(cg.Module):
    """tokens (N, T) int64 -> logits (N, T, vocab): embeddings + learned positions, a causal
    pre-norm Transformer stack (layers.0 ... layers.L-1, then norm), a linear head."""

    def __init__(self, vocab=len(VOCAB), d_model=128, nhead=4, num_layers=4, context=128):
        super().__init__(inputs=(cg.Variable("tokens").requires_grad(False),))
        self.vocab = vocab
        self.context = context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.LearnedPositionalEncoding(context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=4 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, norm=True)
        self.head = nn.Linear(d_model, vocab)

    def call(self, tokens):
        return self.head(self.blocks(self.pos(self.tok(tokens)), is_causal=True))


class LMLoss(cg.Module):
    """The mean next-character cross-entropy of a CharGPT on (tokens, targets)."""

    def __init__(self, model):
        super().__init__(inputs=(cg.Variable("tokens").requires_grad(False),
                                 cg.Variable("targets").requires_grad(False)))
        self.model = model

    def call(self, tokens, targets):
        logits = self.model(tokens)
        return op.cross_entropy(op.reshape(logits, [-1, self.model.vocab]), op.reshape(targets, [-1]))


def evaluate(loss_module, x, y, batch=32):
    """Mean cross-entropy over the windows (x, y), without recording graphs."""
    total = 0.0
    with cg.no_grad():
        for i in range(0, len(x), batch):
            total += float(loss_module(x[i:i + batch], y[i:i + batch]).value) * len(x[i:i + batch])
    return total / len(x)


def sample(model, prompt, length, rng, temperature=0.8):
    """Continues prompt (a string) by length characters, drawing each from the model's softmax."""
    codes = list(encode(prompt))
    with cg.no_grad():
        for _ in range(length):
            window = np.array([codes[-model.context:]], dtype=np.int64)
            logits = np.asarray(model(window).value)[0, -1].astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            codes.append(int(rng.choice(len(p), p=p / p.sum())))
    return decode(codes)


def train(steps=1000, batch=16, context=128, d_model=128, nhead=4, num_layers=4, lr=1e-2, warmup=None,
          eval_tokens=32768, seed=0, log=print, log_every=50):
    """Trains a CharGPT; returns a dict with the model, its loss module, the data and the losses."""
    nn.manual_seed(seed)
    train_codes, held_codes = load_corpus()
    hx, hy = held_out_windows(held_codes, context, eval_tokens)
    # The same targets for all three; the bigram's previous character of y[i, t] is x[i, t].
    baselines = {"unigram": unigram_loss(train_codes, hy.reshape(-1)),
                 "bigram": bigram_loss(train_codes, hx.reshape(-1), hy.reshape(-1))}
    if log:
        log(f"corpus: {len(train_codes):,} training and {len(held_codes):,} held-out characters "
            f"({len(fortune_files())} files); held-out loss measured on {hy.size:,} characters")
        log(f"baselines (held-out): unigram {baselines['unigram']:.3f}  bigram {baselines['bigram']:.3f}")

    model = CharGPT(len(VOCAB), d_model, nhead, num_layers, context)
    loss_module = LMLoss(model)
    opt = optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    warmup = max(1, steps // 10) if warmup is None else warmup
    schedule = optim.WarmupCosineLR(opt, warmup_steps=warmup, total_steps=steps, min_lr=lr / 10)
    rng = np.random.default_rng(seed)
    start, seen, recent = time.perf_counter(), 0, []
    for step in range(1, steps + 1):
        x, y = windows(train_codes, context, rng.integers(0, len(train_codes) - context - 1, size=batch))
        r = loss_module(x, y)
        opt.zero_grad()
        r.back()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        seen += x.size
        recent.append(float(r.value))
        if log and (step % log_every == 0 or step == steps):
            elapsed = time.perf_counter() - start
            log(f"step {step:5d}  train loss {np.mean(recent):.3f}  lr {opt.lr:.2e}  "
                f"{seen / elapsed:,.0f} tokens/s")
            recent = []
    seconds = time.perf_counter() - start
    held = evaluate(loss_module, hx, hy)
    if log:
        log(f"held-out loss {held:.3f} after {steps} steps ({seconds:.0f} s)  "
            f"[unigram {baselines['unigram']:.3f}, bigram {baselines['bigram']:.3f}]")
    return {"model": model, "loss_module": loss_module, "held_out_loss": held, "baselines": baselines,
            "held_out": (hx, hy), "sizes": (d_model, nhead, num_layers, context), "seconds": seconds,
            "tokens_per_s": seen / seconds}


def checkpoint_round_trip(result, path, seed=1):
    """Saves the trained model to path (HDF5), loads it into a fresh CharGPT (other initial
    weights: seed) and returns that model's held-out loss."""
    model = result["model"]
    nn.save_checkpoint(model, path)
    nn.manual_seed(seed)
    fresh = CharGPT(model.vocab, *result["sizes"])
    nn.load_checkpoint(fresh, path)
    return evaluate(LMLoss(fresh), *result["held_out"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (AdamW)")
    ap.add_argument("--eval-tokens", type=int, default=32768, help="held-out characters to measure the loss on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=2, help="fortunes to generate")
    ap.add_argument("--graphs", default="zkynet-graphs")
    ap.add_argument("--checkpoint", default=None, help="HDF5 path (default: a temporary file)")
    args = ap.parse_args()

    result = train(args.steps, args.batch, args.context, args.d_model, args.heads, args.layers, args.lr,
                   eval_tokens=args.eval_tokens, seed=args.seed)
    model, hx, hy = result["model"], *result["held_out"]
    rng = np.random.default_rng(args.seed)
    for i in range(args.samples):
        print(f"--- sample {i + 1} ---")
        print(sample(model, "%\n", 200, rng).split("%\n", 1)[1].rstrip())

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or os.path.join(tmp, "char_gpt.h5")
        reloaded = checkpoint_round_trip(result, path, seed=args.seed + 1)
    print(f"checkpoint {os.path.basename(path)}: reloaded model's held-out loss {reloaded:.3f} "
          f"({'the same' if reloaded == result['held_out_loss'] else 'DIFFERENT'})")

    # One training step's graph (a short batch, so the picture stays legible): one cluster per layer.
    x, y = windows(hx.reshape(-1), 8, [0])
    step = result["loss_module"](x, y)
    print("graph of one step:", plot_cg(step, title="char_gpt_step", directory=args.graphs, show_values=False))
    b = result["baselines"]
    print(f"held-out loss: model {result['held_out_loss']:.3f}, bigram {b['bigram']:.3f}, "
          f"unigram {b['unigram']:.3f} (nats/char)")


if __name__ == "__main__":
    main()
