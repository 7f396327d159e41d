#!/usr/bin/python3
"""The character-level GPT's training step (issue 15 §1), zkynet against the same model in
PyTorch, in one run: training tokens/s and peak memory.

The model of examples/python/char_gpt.py: vocabulary 98, token embeddings + learned positions,
--layers pre-norm TransformerEncoderLayers (d_model --d-model, --heads heads, feed-forward
4 d_model, GELU, no dropout) under a causal mask, a final LayerNorm, a linear head; batch
(--batch, --context) of int64 tokens, float32 throughout. One training step is forward,
cross-entropy, backward, clip_grad_norm(1.0), AdamW step and a warmup-cosine schedule step
(zkynet: optim.WarmupCosineLR; torch: LambdaLR with the same factor). torch 1.13 has no is_causal
on TransformerEncoder: it gets the causal mask as the float (-inf above the diagonal) mask torch
documents (torch 2.x: is_causal=True as well, so it may take its fused path).

Each side runs in its own process (so each has its own peak resident set: the child's
getrusage(RUSAGE_SELF).ru_maxrss, what run.py reads through os.wait4): --warmup steps, then --steps steps each timed alone. The
tokens are drawn from a fixed random stream (the same for both); the first step's loss is
reported for both (about log(98) = 4.58, the models being initialized alike but not identically).
PyTorch runs twice, in the environment as found ("default") and in run.py's "tuned" one (glibc
malloc keeping freed memory, OpenMP threads sleeping); both with torch.set_num_threads(--threads)
and OMP_NUM_THREADS=--threads, as zkynet gets zkynet.set_num_threads(--threads).
An "import" process per side (the library imported, one tiny op) gives the baseline resident
set that the libraries themselves take.

--reps rounds (default 3) run the three processes interleaved; each figure is the median over
the rounds (tokens/s of every round kept in tokens_per_s_per_round). Prints one JSON line ({"bench", "results", "meta"}; meta.ratios: zkynet's tokens/s over
torch's and zkynet's peak RSS over torch's), and with --table a readable table.

usage: /usr/bin/python3 tools/bench/bench_char_gpt.py [--build-dir build] [--steps 10] [--warmup 2] [--reps 3]
           [--batch 16] [--context 128] [--d-model 128] [--heads 4] [--layers 4] [--threads 2] [--table]
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
VOCAB = 98
TUNED_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295",
             "OMP_WAIT_POLICY": "PASSIVE"}


def lr_factor(t, warmup, total, min_ratio=0.1):
    if t < warmup:
        return (t + 1) / warmup
    if t >= total:
        return min_ratio
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2


def batches(args):
    import numpy as np
    rng = np.random.default_rng(0)
    while True:
        x = rng.integers(0, VOCAB, size=(args.batch, args.context + 1), dtype=np.int64)
        yield x[:, :-1].copy(), x[:, 1:].copy()


def run_zkynet(args):
    sys.path.insert(0, os.path.join(os.path.abspath(os.path.join(ROOT, args.build_dir)), "python"))
    import zkynet
    from zkynet import nn, optim
    from zkynet.framework import cg, op
    zkynet.set_num_threads(args.threads)
    if args.import_only:
        op.add(1.0, 1.0)
        return {}

    class GPT(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("tokens").requires_grad(False),
                                     cg.Variable("targets").requires_grad(False)))
            d = args.d_model
            self.tok = nn.Embedding(VOCAB, d)
            self.pos = nn.LearnedPositionalEncoding(args.context, d)
            layer = nn.TransformerEncoderLayer(d, args.heads, dim_feedforward=4 * d, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, args.layers, norm=True)
            self.head = nn.Linear(d, VOCAB)

        def call(self, tokens, targets):
            logits = self.head(self.blocks(self.pos(self.tok(tokens)), is_causal=True))
            return op.cross_entropy(op.reshape(logits, [-1, VOCAB]), op.reshape(targets, [-1]))

    nn.manual_seed(0)
    model = GPT()
    opt = optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    total = args.warmup + args.steps
    schedule = optim.WarmupCosineLR(opt, max(1, total // 10), total, 3e-4)
    data = batches(args)

    def step():
        x, y = next(data)
        r = model(x, y)
        opt.zero_grad()
        r.back()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        return float(r.value)

    return timed_steps(step, args)


def run_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    if args.import_only:
        torch.ones(1) + 1
        return {}
    tnn = torch.nn

    class GPT(tnn.Module):
        def __init__(self):
            super().__init__()
            d = args.d_model
            self.tok = tnn.Embedding(VOCAB, d)
            self.pos = tnn.Parameter(torch.randn(args.context, d))
            layer = tnn.TransformerEncoderLayer(d, args.heads, dim_feedforward=4 * d, dropout=0.0, activation="gelu",
                                                batch_first=True, norm_first=True)
            self.blocks = tnn.TransformerEncoder(layer, args.layers, norm=tnn.LayerNorm(d))
            self.head = tnn.Linear(d, VOCAB)
            T = args.context
            self.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))

        def forward(self, tokens, targets):
            h = self.tok(tokens) + self.pos[: tokens.shape[1]]
            h = self.blocks(h, mask=self.mask)
            logits = self.head(h)
            return tnn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))

    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    total = args.warmup + args.steps
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(t, warmup, total))
    data = batches(args)

    def step():
        x, y = (torch.from_numpy(a) for a in next(data))
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        tnn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        return float(loss)

    return timed_steps(step, args)


def timed_steps(step, args):
    first = step()
    for _ in range(args.warmup - 1):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tokens = args.batch * args.context
    return {"step_ms": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times),
            "tokens_per_s": tokens / statistics.median(times), "first_loss": first}


def child(args, side, env_extra=None, import_only=False):
    """Runs this script for one side in a fresh process; its JSON result (peak RSS included)."""
    cmd = [PY, os.path.abspath(__file__), "--side", side, "--build-dir", args.build_dir, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch", str(args.batch), "--context", str(args.context),
           "--d-model", str(args.d_model), "--heads", str(args.heads), "--layers", str(args.layers),
           "--threads", str(args.threads)] + (["--import-only"] if import_only else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **(env_extra or {}))
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{side} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])  # with the child's own getrusage peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="rounds of the three runs, interleaved")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--side", choices=["zkynet", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--import-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side:  # a child: run one side, report its figures and its own peak resident set
        import resource
        result = (run_zkynet if args.side == "zkynet" else run_torch)(args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    # --reps rounds, the three runs interleaved in each (the VM's load moves: compare like with like);
    # each run's figures are the median over rounds, with the best step seen.
    rounds = {"zkynet": [], "torch_default": [], "torch_tuned": []}
    for _ in range(args.reps):
        rounds["zkynet"].append(child(args, "zkynet"))
        rounds["torch_default"].append(child(args, "torch"))
        rounds["torch_tuned"].append(child(args, "torch", TUNED_ENV))
    runs = {}
    for name, rs in rounds.items():
        runs[name] = {k: statistics.median(r[k] for r in rs) for k in ("step_ms", "tokens_per_s", "peak_rss_mib")}
        runs[name].update(step_ms_min=min(r["step_ms_min"] for r in rs), first_loss=rs[0]["first_loss"],
                          tokens_per_s_per_round=[round(r["tokens_per_s"]) for r in rs])
    imports = {"zkynet": child(args, "zkynet", import_only=True), "torch": child(args, "torch", import_only=True)}
    z = runs["zkynet"]
    ratios = {}
    for name in ("torch_default", "torch_tuned"):
        t = runs[name]
        ratios[f"tokens_per_s_vs_{name}"] = round(z["tokens_per_s"] / t["tokens_per_s"], 2)
        ratios[f"peak_rss_vs_{name}"] = round(z["peak_rss_mib"] / t["peak_rss_mib"], 2)
        ratios[f"peak_rss_above_import_vs_{name}"] = round(
            (z["peak_rss_mib"] - imports["zkynet"]["peak_rss_mib"]) /
            (t["peak_rss_mib"] - imports["torch"]["peak_rss_mib"]), 2)
    import torch
    meta = {"model": f"{args.layers} layers, {args.heads} heads, d {args.d_model}, context {args.context}, "
                     f"vocab {VOCAB}, batch {args.batch}, float32",
            "threads": args.threads, "reps": args.reps, "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__,
            "import_peak_rss_mib": {k: v["peak_rss_mib"] for k, v in imports.items()}, "ratios": ratios,
            "loadavg": os.getloadavg()}
    print(json.dumps({"bench": "char_gpt", "results": runs, "meta": meta}))
    if args.table:
        print(f"{'(median of ' + str(args.reps) + ')':<16}{'tokens/s':>10}{'step ms':>10}{'peak RSS MiB':>14}{'above import':>14}{'first loss':>12}")
        for name, r in runs.items():
            base = imports["zkynet" if name == "zkynet" else "torch"]["peak_rss_mib"]
            print(f"{name:<16}{r['tokens_per_s']:>10,.0f}{r['step_ms']:>10.1f}{r['peak_rss_mib']:>14.0f}"
                  f"{r['peak_rss_mib'] - base:>14.0f}{r['first_loss']:>12.3f}")
        for k, v in ratios.items():
            print(f"  zkynet {k.replace('_vs_', ' / ')}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
