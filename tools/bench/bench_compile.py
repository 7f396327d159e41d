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

Whole steps (cg.compile of a train_step function that runs the model, back() and the update):
  chain_step_*_us_per_op       the chain's forward + backward as one step: dynamic, compiled, torch
  digits_mlp_step_*_us         the digits MLP (64-64-10, batch 32, cross-entropy, SGD momentum 0.9):
                               zero_grad, forward, backward, update; dynamic, compiled, torch eager
                               (the same initial weights copied into torch.nn); the compiled step's
                               parameters are checked equal, bit for bit, to the dynamic step's
The ratios (meta.*_x) are dynamic / compiled and torch / compiled at the medians.

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
    whole_steps(args, results, meta, timed, np, cg, op)
    print(json.dumps({"bench": "zkynet_python_compile", "results": results, "meta": meta}))


def whole_steps(args, results, meta, timed, np, cg, op):
    from zkynet import nn, optim

    def chain_fn(x):
        y = x
        for _ in range(OPS // 2):
            y = op.add(op.mult(y, 1.0001), 0.0001)
        s = op.sum(y)
        s.back()
        return s

    x0 = np.ones(1, dtype=np.float32)
    compiled_chain = cg.compile(chain_fn)
    compiled_chain(x0)

    def chain_dynamic():
        class Once(cg.Module):
            def __init__(self):
                super().__init__(inputs=(cg.Variable("x"),))

            def call(self, x):
                return chain_fn(x)
        Once()(x0)

    results["chain_step_dynamic_us_per_op"] = summary(timed(chain_dynamic))
    results["chain_step_compiled_us_per_op"] = summary(timed(lambda: compiled_chain(x0)))

    def per_step(step):
        out = []
        for i in range(args.warmup + args.samples):
            t0 = time.perf_counter()
            step()
            t1 = time.perf_counter()
            if i >= args.warmup:
                out.append((t1 - t0) * 1e6)
        return out

    def mlp():
        nn.manual_seed(1)
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    dyn, fast = mlp(), mlp()
    dyn_opt = optim.SGD(dyn.parameters(), lr=0.01, momentum=0.9)
    fast_opt = optim.SGD(fast.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(2)
    xb = rng.standard_normal((32, 64)).astype(np.float32)
    yb = (np.arange(32) % 10).astype(np.int64)

    def dynamic_step():
        dyn_opt.zero_grad()
        loss = op.cross_entropy(dyn(xb), yb)
        loss.back()
        dyn_opt.step()

    def train_step(x, y):
        fast_opt.zero_grad()
        loss = op.cross_entropy(fast(x), y)
        loss.back()
        fast_opt.step()
        return loss

    compiled = cg.compile(train_step)
    for _ in range(3):
        dynamic_step()
        compiled(xb, yb)
    results["digits_mlp_step_dynamic_us"] = summary(per_step(dynamic_step))
    results["digits_mlp_step_compiled_us"] = summary(per_step(lambda: compiled(xb, yb)))
    same = all(np.asarray(a.value).tobytes() == np.asarray(b.value).tobytes()
               for a, b in zip(dyn.parameters(), fast.parameters()))
    if not same:
        print("bench_compile.py: FAILED: the compiled step's parameters differ from the dynamic step's", file=sys.stderr)
        sys.exit(1)
    meta["digits_mlp_memory_plan"] = compiled.last.memory_plan
    try:
        import torch
        tm = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        with torch.no_grad():
            for tp, (_, zp) in zip(tm.parameters(), fast.named_parameters()):
                tp.copy_(torch.from_numpy(np.array(zp.value)))
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(xb), torch.from_numpy(yb)

        def torch_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

        def torch_chain():
            x = torch.ones(1, requires_grad=True)
            y = x
            for _ in range(OPS // 2):
                y = y * 1.0001
                y = y + 0.0001
            y.sum().backward()

        results["digits_mlp_step_torch_us"] = summary(per_step(torch_step))
        results["chain_step_torch_us_per_op"] = summary(timed(torch_chain))
    except ImportError:
        pass
    med = {k: v["median"] for k, v in results.items()}
    meta["chain_step_dynamic_over_compiled_x"] = round(med["chain_step_dynamic_us_per_op"] / med["chain_step_compiled_us_per_op"], 3)
    meta["digits_mlp_step_dynamic_over_compiled_x"] = round(med["digits_mlp_step_dynamic_us"] / med["digits_mlp_step_compiled_us"], 3)
    if "digits_mlp_step_torch_us" in med:
        meta["chain_step_torch_over_compiled_x"] = round(med["chain_step_torch_us_per_op"] / med["chain_step_compiled_us_per_op"], 3)
        meta["digits_mlp_step_torch_over_compiled_x"] = round(med["digits_mlp_step_torch_us"] / med["digits_mlp_step_compiled_us"], 3)


if __name__ == "__main__":
    main()
