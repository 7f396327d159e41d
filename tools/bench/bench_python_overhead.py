#!/usr/bin/python3
"""Per-operator overhead from Python: the 1000-operator scalar chain driven through zkynet's
Python bindings, forward + backward, in us per op.

Same workload as shared/peers/graph_overhead.py (PyTorch from Python) and bench_graph_overhead
(zkynet from C++):
    x0 = numpy.ones(1, dtype=float32)                   shape (1,)
    500 x { x = op.mult(x, 1.0001) ; x = op.add(x, 0.0001) }      (1000 operators)
    y = op.sum(x); y.back()                             (sum is one extra operator)
The chain is the call() of a cg.Module, so calling it records its graph (a ModuleGraph);
ModuleGraph.back() then runs reverse mode over it.

Reported per operator (time / 1000), median/min/max over --samples samples after --warmup:
  fwd_grad_us_per_op         module call while recording the graph (the sum included)
  bwd_us_per_op              ModuleGraph.back()
  fwdbwd_us_per_op           forward + backward, timed together
  fwd_nograd_us_per_op       the same chain (no sum) called as a module under cg.no_grad()
  fwd_nograd_eager_us_per_op the chain as a plain Python function on x0 under cg.no_grad(),
                             no module call (how graph_overhead.py spells its no-grad chain)
  teardown_us_per_op         `del g`: destroying the recorded graph (PyTorch's fwd figure
                             includes freeing the previous sample's graph: Python rebinds `y`)
  fwdbwd_teardown_us_per_op  forward + backward + teardown
Two spellings of the constants (--variant):
  literal   op.mult(x, 1.0001): a Python float per operator, converted to a new 0-d float64
            constant each time, like `x * 1.0001` in PyTorch (the headline figure)
  hoisted   the constants made once, outside the chain, as float32 0-d constant nodes
            (op.reshape(numpy.float32(..), [])): suffix _hoisted
Checks d(out)/dx = 1.0001^500 (1e-3 relative, float32, shape (1,)) after every sample and
exits 1 otherwise. Prints ONE JSON line like the C++ benchmarks:
  {"bench": "zkynet_python_overhead", "results": {KEY: {median, min, max, n}}, "meta": {...}}

usage: /usr/bin/python3 tools/bench/bench_python_overhead.py [--build-dir build] [--samples 200]
           [--warmup 20] [--variant literal|hoisted|both]
       [--loop N]   (profiling: N fwd+bwd chains, no JSON; e.g. under perf record -g)
Build first:  ninja -C build _zkynet   (the package lands in <build-dir>/python)
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OPS = 1000
SCALE, SHIFT = 1.0001, 0.0001
ENV_PREFIXES = ("OPENBLAS", "OMP", "MKL", "GOMP", "KMP", "GLIBC_TUNABLES", "MALLOC")


def fail(what):
    print(f"bench_python_overhead: FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def num(x):
    """4 significant digits, as bench_common.h's num() ("%.4g")."""
    return float(f"{x:.4g}")


def stats(v):
    s = sorted(v)
    return {"median": num(statistics.median(s)), "min": num(s[0]), "max": num(s[-1]), "n": len(s)}


def import_zkynet(build_dir):
    build = build_dir if os.path.isabs(build_dir) else os.path.join(ROOT, build_dir)
    pkg = os.path.join(build, "python")
    if not os.path.isdir(os.path.join(pkg, "zkynet")):
        fail(f"{pkg}/zkynet not found; build it with: ninja -C {build_dir} _zkynet")
    sys.path.insert(0, pkg)
    import numpy as np
    try:
        import zkynet
        from zkynet.framework import cg, op
    except ImportError as e:
        fail(f"cannot import zkynet from {pkg} (rebuild: ninja -C {build_dir} _zkynet): {e}")
    return np, zkynet, cg, op


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build", help="CMake build dir (relative to the repo root); "
                    "<build-dir>/python goes on sys.path")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--variant", choices=("literal", "hoisted", "both"), default="both")
    ap.add_argument("--loop", type=int, default=0, help="profiling: N fwd+bwd chains, no statistics")
    args = ap.parse_args()
    if args.samples < 1 or args.warmup < 0:
        fail("--samples must be >= 1 and --warmup >= 0")

    load0 = os.getloadavg()
    np, zkynet, cg, op = import_zkynet(args.build_dir)
    mult, add, zsum = op.mult, op.add, op.sum
    expect = SCALE ** (OPS // 2)

    def make_constants(variant):
        if variant == "literal":
            return SCALE, SHIFT
        # Constant nodes made once (outside any call): float32 0-d tensors.
        return (op.reshape(np.float32(SCALE), []), op.reshape(np.float32(SHIFT), []))

    def chain_fn(x, scale, shift):
        for _ in range(OPS // 2):
            x = mult(x, scale)
            x = add(x, shift)
        return x

    class Chain(cg.Module):
        def __init__(self, variant, with_sum):
            super().__init__(inputs=(cg.Variable("x"),))
            self._consts = make_constants(variant)
            self._with_sum = with_sum

        def call(self, x):
            scale, shift = self._consts
            for _ in range(OPS // 2):
                x = mult(x, scale)
                x = add(x, shift)
            return zsum(x) if self._with_sum else x

    def check_grad(g, chain, variant):
        grad = g.grad(chain.input("x"))
        if grad.dtype != np.float32 or grad.shape != (1,):
            fail(f"{variant}: gradient has dtype/shape {grad.dtype} {grad.shape}")
        got = float(grad[0])
        if not abs(got - expect) <= 1e-3 * expect:
            fail(f"{variant}: gradient {got}, expected 1.0001^500 = {expect}")
        return got

    if args.loop > 0:  # profiling mode: fwd + bwd (+ teardown) only
        variant = "hoisted" if args.variant == "hoisted" else "literal"
        chain = Chain(variant, True)
        grad = 0.0
        t0 = time.perf_counter_ns()
        for _ in range(args.loop):
            g = chain(np.ones(1, dtype=np.float32))
            g.back()
            grad = check_grad(g, chain, "loop")
            del g
        us = (time.perf_counter_ns() - t0) / 1e3 / args.loop / OPS
        print(f"{args.loop} chains ({variant}), {us:.3f} us per op fwd+bwd+teardown, grad {grad:.6f}",
              file=sys.stderr)
        return 0

    def measure(variant):
        chain = Chain(variant, True)
        chain_nograd = Chain(variant, False)
        scale, shift = make_constants(variant)
        fwd, bwd, both, nograd, eager, teardown, total = [], [], [], [], [], [], []
        grad, nodes = 0.0, 0
        for i in range(args.warmup + args.samples):
            x0 = np.ones(1, dtype=np.float32)
            t0 = time.perf_counter_ns()
            g = chain(x0)
            t1 = time.perf_counter_ns()
            g.back()
            t2 = time.perf_counter_ns()
            grad = check_grad(g, chain, variant)
            nodes = g.num_nodes
            t3 = time.perf_counter_ns()
            del g
            t4 = time.perf_counter_ns()
            with cg.no_grad():
                t5 = time.perf_counter_ns()
                chain_nograd(x0)
                t6 = time.perf_counter_ns()
                y = chain_fn(x0, scale, shift)
                t7 = time.perf_counter_ns()
            if i == 0:  # the no-grad chain computes the same value (no sum: shape (1,))
                v = np.asarray(y.value).reshape(-1)
                want = 1.0
                for _ in range(OPS // 2):
                    want = want * SCALE + SHIFT
                if v.shape != (1,) or not abs(float(v[0]) - want) <= 1e-3 * want:
                    fail(f"{variant}: no-grad chain value {v}, expected {want}")
            del y
            if i >= args.warmup:
                fwd.append((t1 - t0) / 1e3 / OPS)
                bwd.append((t2 - t1) / 1e3 / OPS)
                both.append((t2 - t0) / 1e3 / OPS)
                teardown.append((t4 - t3) / 1e3 / OPS)
                total.append((t2 - t0 + t4 - t3) / 1e3 / OPS)
                nograd.append((t6 - t5) / 1e3 / OPS)
                eager.append((t7 - t6) / 1e3 / OPS)
        res = {"fwd_grad_us_per_op": stats(fwd), "bwd_us_per_op": stats(bwd), "fwdbwd_us_per_op": stats(both),
               "fwd_nograd_us_per_op": stats(nograd), "fwd_nograd_eager_us_per_op": stats(eager),
               "teardown_us_per_op": stats(teardown), "fwdbwd_teardown_us_per_op": stats(total)}
        return res, {"grad_check": num(grad), "graph_nodes": nodes}

    results, meta = {}, {}
    for variant in ("literal", "hoisted"):
        if args.variant not in (variant, "both"):
            continue
        suffix = "" if variant == "literal" else "_hoisted"
        res, m = measure(variant)
        results.update({k + suffix: v for k, v in res.items()})
        meta.update({k + suffix: v for k, v in m.items()})
    meta.update({
        "ops": OPS, "samples": args.samples, "warmup": args.warmup,
        "zkynet_num_threads": zkynet.num_threads(),
        "variant_default": "literal: op.mult(x, 1.0001) / op.add(x, 0.0001) in a cg.Module's call()",
        "zkynet_package": os.path.dirname(os.path.abspath(zkynet.__file__)),
        "python": sys.executable, "python_version": platform.python_version(), "gc_enabled": gc.isenabled(),
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(ENV_PREFIXES)},
    })
    print(json.dumps({"bench": "zkynet_python_overhead", "results": results, "meta": meta}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
