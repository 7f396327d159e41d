#!/usr/bin/python3
"""The attention operator alone (issue 15 §1), zkynet against PyTorch in one run:
op.scaled_dot_product_attention against torch.nn.functional.scaled_dot_product_attention where
torch has it (2.0 and later), else against the math path torch documents for it
(softmax(q k^T / sqrt(E) + mask) v: Debian's torch 1.13 has no public fused one).

Shapes (batch 2, heads 4, T, head size 64), float32, T = 128 ... 2048, with and without the
causal mask, each timed as

  fwd_ms      the operator without recording a graph (cg.no_grad / torch.no_grad)
  fwdbwd_ms   the operator in a recorded call + back(seed) (torch: forward + backward(seed))

median/min/max over --samples after --warmup; values are checked against torch's first
(float32, 1e-4). Prints one JSON line like the other benchmarks ({"bench", "results", "meta"});
meta["ratios"] holds torch's median over zkynet's per row (above 1: zkynet faster).
--table also prints a readable table.

usage: /usr/bin/python3 tools/bench/bench_attention.py [--build-dir build] [--samples 5] [--warmup 1]
                                                       [--lengths 128,256,512,1024,2048] [--table]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BATCH, HEADS, HEAD_SIZE = 2, 4, 64


def summary(samples):
    return {"median": float(f"{statistics.median(samples):.4g}"), "min": float(f"{min(samples):.4g}"),
            "max": float(f"{max(samples):.4g}"), "n": len(samples)}


def timed(fn, samples, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", default="128,256,512,1024,2048")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(os.path.join(ROOT, args.build_dir)), "python"))
    import numpy as np
    import torch
    import zkynet
    from zkynet.framework import cg, op

    torch.set_num_threads(args.threads)
    zkynet.set_num_threads(args.threads)
    fused_torch = hasattr(torch.nn.functional, "scaled_dot_product_attention")

    def torch_attention(q, k, v, causal):
        if fused_torch:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if causal:
            T = s.size(-1)
            s = s + torch.triu(torch.full((T, T), float("-inf")), 1)
        return torch.softmax(s, -1) @ v

    class Attention(cg.Module):
        def __init__(self, causal):
            super().__init__(inputs=(cg.Variable("q"), cg.Variable("k"), cg.Variable("v")))
            self.causal = causal

        def call(self, q, k, v):
            return op.scaled_dot_product_attention(q, k, v, is_causal=self.causal)

    results, ratios = {}, {}
    rng = np.random.default_rng(0)
    for T in (int(t) for t in args.lengths.split(",")):
        q, k, v, seed = (rng.standard_normal((BATCH, HEADS, T, HEAD_SIZE)).astype(np.float32) for _ in range(4))
        tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
        tseed = torch.from_numpy(seed)
        for causal in (False, True):
            module = Attention(causal)
            with cg.no_grad():
                ours = np.asarray(op.scaled_dot_product_attention(q, k, v, is_causal=causal).value)
            with torch.no_grad():
                theirs = torch_attention(tq, tk, tv, causal).numpy()
            if not np.allclose(ours, theirs, rtol=1e-4, atol=1e-4):
                print(f"T={T} causal={causal}: values differ from torch by {np.abs(ours - theirs).max()}",
                      file=sys.stderr)
                return 1

            def zk_fwd():
                with cg.no_grad():
                    op.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def zk_fwdbwd():
                module(q, k, v).back(seed)

            def torch_fwd():
                with torch.no_grad():
                    torch_attention(tq, tk, tv, causal)

            def torch_fwdbwd():
                for t in (tq, tk, tv):
                    t.grad = None
                torch_attention(tq, tk, tv, causal).backward(tseed)

            tag = f"T{T}{'_causal' if causal else ''}"
            for what, zk_fn, torch_fn in (("fwd", zk_fwd, torch_fwd), ("fwdbwd", zk_fwdbwd, torch_fwdbwd)):
                a = summary(timed(zk_fn, args.samples, args.warmup))
                b = summary(timed(torch_fn, args.samples, args.warmup))
                results[f"zkynet_{what}_ms_{tag}"] = a
                results[f"torch_{what}_ms_{tag}"] = b
                ratios[f"{what}_{tag}"] = round(b["median"] / a["median"], 2)
    meta = {"shape": f"({BATCH}, {HEADS}, T, {HEAD_SIZE}) float32", "threads": args.threads,
            "torch": torch.__version__,
            "torch_reference": "F.scaled_dot_product_attention" if fused_torch else "math path (softmax(q k^T) v)",
            "ratios": ratios}
    print(json.dumps({"bench": "attention", "results": results, "meta": meta}))
    if args.table:
        print(f"{'case':<22}{'zkynet ms':>12}{'torch ms':>12}{'torch/zkynet':>14}")
        for key, ratio in ratios.items():
            what, tag = key.split("_", 1)
            z = results[f"zkynet_{what}_ms_{tag}"]["median"]
            t = results[f"torch_{what}_ms_{tag}"]["median"]
            print(f"{key:<22}{z:>12.2f}{t:>12.2f}{ratio:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
