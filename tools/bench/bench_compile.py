#!/usr/bin/python3
"""Capture and replay from Python (cg.compile), next to the dynamic call and PyTorch eager, in
one run: the 1000-operator scalar chain of bench_python_overhead.py / graph_overhead.py
(float32 (1,): 500 x { x = x * 1.0001; x = x + 0.0001 }, then sum), forward + backward, in us
per operator.

  dynamic_fwdbwd_us_per_op   a cg.Module call (records a new graph) + back()
  replay_fwdbwd_us_per_op    cg.compile(module): one Python->C++ call replays the schedule + back()
  torch_fwdbwd_us_per_op     the same chain in PyTorch eager + backward() (skipped without torch)

Median/min/max over --samples after --warmup; the replay's gradient is checked equal, bit for
bit, to the dynamic call's. Prints one JSON line like the other benchmarks.

usage: /usr/bin/python3 tools/bench/bench_compile.py [--build-dir build] [--samples 200] [--warmup 20]
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OPS = 1000


def summary(samples):
    return {"median": float(f"{statistics.median(samples):.4g}"), "min": float(f"{min(samples):.4g}"),
            "max": float(f"{max(samples):.4g}"), "n": len(samples)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(os.path.join(ROOT, args.build_dir)), "python"))
    import numpy as np
    from zkynet.framework import cg, op

    class Chain(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            for _ in range(OPS // 2):
                x = op.add(op.mult(x, 1.0001), 0.0001)
            return op.sum(x)

    m = Chain()
    fast = cg.compile(m)
    x0 = np.ones(1, dtype=np.float32)
    fast(x0)  # the capture
    d = m(x0)
    d.back()
    r = fast(x0)
    r.back()
    if np.asarray(d.grad(m.input("x"))).tobytes() != np.asarray(r.grad(m.input("x"))).tobytes():
        print("bench_compile.py: FAILED: the replay's gradient differs from the dynamic call's", file=sys.stderr)
        sys.exit(1)

    def timed(step):
        out = []
        for i in range(args.warmup + args.samples):
            t0 = time.perf_counter()
            step()
            t1 = time.perf_counter()
            if i >= args.warmup:
                out.append((t1 - t0) * 1e6 / OPS)
        return out

    def dynamic_step():
        m(x0).back()

    def replay_step():
        fast(x0).back()

    results = {"dynamic_fwdbwd_us_per_op": summary(timed(dynamic_step)),
               "replay_fwdbwd_us_per_op": summary(timed(replay_step))}
    meta = {"ops": OPS, "samples": args.samples, "warmup": args.warmup, "stats": fast.stats}
    try:
        import torch
        torch.set_num_threads(args.threads)

        def torch_step():
            x = torch.ones(1, requires_grad=True)
            y = x
            for _ in range(OPS // 2):
                y = y * 1.0001
                y = y + 0.0001
            y.sum().backward()

        results["torch_fwdbwd_us_per_op"] = summary(timed(torch_step))
        meta["torch"] = torch.__version__
    except ImportError:
        meta["torch"] = "not installed"
    meta["replay_speedup_at_median"] = round(
        results["dynamic_fwdbwd_us_per_op"]["median"] / results["replay_fwdbwd_us_per_op"]["median"], 3)
    print(json.dumps({"bench": "zkynet_python_compile", "results": results, "meta": meta}))


if __name__ == "__main__":
    main()
