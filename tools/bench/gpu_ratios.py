#!/usr/bin/env python3
"""zkynet's GPU suite beside PyTorch's: bench_gpu's JSON line and ../shared/peers/gpu.py's.

Prints one row per workload (zkynet, PyTorch, zkynet's speed-up: > 1 means zkynet is faster)
and the peak device memory of each training workload, and writes the same as one JSON object
to --out (tools/gpu_check.sh: $OUT/gpu_ratios.json).

usage: python3 gpu_ratios.py OURS.json PEER.json [--out ratios.json]
"""
import argparse
import json

# (key, higher is better)
WORKLOADS = [
    ("copy_gbps", True),
    ("elementwise_expr_gbps", True),
    ("chain_fwdbwd_us_per_op", False),
    ("mlp_gemm_floor_ms", False),
    ("mlp_train_step_ms", False),
    ("cnn_train_step_ms", False),
    ("lstm_fwdbwd_ms", False),
]
PEAKS = ["mlp_peak_mib", "cnn_peak_mib", "lstm_peak_mib"]


def load(path):
    """The last JSON line of a file; {"error": ...} when there is none."""
    try:
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip().startswith("{")]
        return json.loads(lines[-1])
    except Exception as e:  # a run that failed or timed out: say so in the table
        return {"error": f"{path}: {e}"}


def ratios(ours, peer):
    out = {"workloads": {}, "peak_mib": {}}
    for key, higher in WORKLOADS:
        z = ours.get("results", {}).get(key, {}).get("median")
        p = peer.get("results", {}).get(key, {}).get("median")
        speedup = (z / p if higher else p / z) if z and p else None
        out["workloads"][key] = {"zkynet": z, "pytorch": p, "zkynet_speedup": speedup}
    for key in PEAKS:
        out["peak_mib"][key] = {"zkynet": ours.get("meta", {}).get(key), "pytorch": peer.get("meta", {}).get(key)}
    out["cnn_model"] = {"zkynet": ours.get("meta", {}).get("cnn_model"), "pytorch": peer.get("meta", {}).get("cnn_model")}
    unavailable = ours.get("meta", {}).get("unavailable")
    if unavailable:
        out["zkynet_unavailable"] = unavailable
    for name, run in (("zkynet_error", ours), ("pytorch_error", peer)):
        if "error" in run:
            out[name] = run["error"]
    return out


def table(r):
    fmt = lambda v: f"{v:10.4g}" if isinstance(v, (int, float)) else f"{'-':>10s}"
    lines = [f"{'workload':28s} {'zkynet':>10s} {'pytorch':>10s} {'zkynet speed-up':>16s}"]
    for key, row in r["workloads"].items():
        lines.append(f"{key:28s} {fmt(row['zkynet'])} {fmt(row['pytorch'])} {fmt(row['zkynet_speedup']):>16s}")
    lines.append(f"{'peak device memory (MiB)':28s} {'zkynet':>10s} {'pytorch':>10s}")
    for key, row in r["peak_mib"].items():
        lines.append(f"{key:28s} {fmt(row['zkynet'])} {fmt(row['pytorch'])}")
    lines.append(f"cnn model: zkynet {r['cnn_model']['zkynet']}; pytorch {r['cnn_model']['pytorch']}")
    for key in ("zkynet_unavailable", "zkynet_error", "pytorch_error"):
        if key in r:
            lines.append(f"{key}: {r[key]}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--out")
    args = ap.parse_args()
    r = ratios(load(args.ours), load(args.peer))
    print(table(r))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(r, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
