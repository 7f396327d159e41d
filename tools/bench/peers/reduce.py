#!/usr/bin/python3
"""The reduction workloads of tools/bench/bench_reduce.cpp in PyTorch, on 10,000,000 float32:
sum_all (sum of a (10M,) tensor), sum_rows (sum over axis 0 of (10000, 1000)), sum_cols (axis 1),
mean_nchw (mean over (0, 2, 3) of (100, 10, 100, 100)), mse (mse_loss of two (10M,) tensors).
Prints one JSON line in the peers' format (shared/peers/_common.py).

usage: /usr/bin/python3 reduce.py [--threads 2] [--samples 21] [--peers shared/peers]
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=21)
    ap.add_argument("--peers", default=os.path.join(os.path.dirname(__file__), "../../../../shared/peers"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.peers))
    from _common import Env, emit, stats, time_calls  # noqa: E402
    env = Env()
    import torch
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(10_000_000, generator=gen)
    b = torch.randn(10_000_000, generator=gen)
    m = a.reshape(10000, 1000)
    img = a.reshape(100, 10, 100, 100)
    work = {
        "sum_all": lambda: a.sum(),
        "sum_rows": lambda: m.sum(0),
        "sum_cols": lambda: m.sum(1),
        "mean_nchw": lambda: img.mean((0, 2, 3)),
        "mse": lambda: torch.nn.functional.mse_loss(a, b),
    }
    results = {}
    with torch.no_grad():
        for name, fn in work.items():
            st = stats(time_calls(fn, 3, args.samples))
            results["torch_" + name + "_ms"] = {k: (v * 1e3 if k != "n" else v) for k, v in st.items()}
    emit("reduce", results, env)


if __name__ == "__main__":
    main()
