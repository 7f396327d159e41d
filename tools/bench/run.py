#!/usr/bin/python3
"""Runs zkynet's core benchmarks side by side with the PyTorch peers, in one run.

Workloads (the core issue's benchmarks):
  1. per-operator overhead: a 1000-operator scalar chain, forward + backward, us per op
       zkynet  build/tools/bench/bench_graph_overhead (C++)
       peer    shared/peers/graph_overhead.py (PyTorch eager + autograd, Python)
               shared/peers/graph_overhead.cpp (libtorch C++), only where libtorch-dev's
               headers are installed (compiled here into <build-dir>/peers/)
  2. elementwise c = a*b + a on 10M float32, effective GB/s (12 B / element); reductions on 10M
     float32 (bench_reduce, peer tools/bench/peers/reduce.py), ms
       zkynet  build/tools/bench/bench_elementwise
       peer    shared/peers/elementwise.py (torch_expr, torch_out2, torch_addcmul_out)
  3. per-operator overhead from Python: the same chain driven through zkynet's Python
     bindings (a cg.Module's call(), ModuleGraph.back()), us per op
       zkynet  tools/bench/bench_python_overhead.py (imports <build-dir>/python/zkynet)
       peer    shared/peers/graph_overhead.py's figures (already run for workload 1)
  plus, as context, the machine's STREAM bandwidth (shared/peers/stream.c, compiled here)
  unless --no-stream.
Training workloads (--suite training or all), ms per step, float32, 2 threads:
  4. MLP 784-512-512-10, batch 128, cross-entropy + SGD train step
       zkynet  build/tools/bench/bench_mlp
       peer    shared/peers/mlp.py, twice: "default" and "tuned" PyTorch configurations
  5. CNN Conv(1,16,3)-ReLU-MaxPool(2)-Conv(16,32,3)-ReLU-MaxPool(2)-Flatten-Linear(800,10),
     batch 64, train step
       zkynet  build/tools/bench/bench_cnn          peer  shared/peers/cnn.py (default, tuned)
  6. LSTM(10->64), T 50, batch 32, forward + backward
       zkynet  build/tools/bench/bench_lstm         peer  shared/peers/lstm.py (default, tuned)
       ("not available" when bench_lstm is not built: nn::LSTM missing)
Distributed workload (--suite distributed; not part of all: it needs MPI, keeps both cores
spinning and takes ~30 s):
  7. allreduce SUM of float32 buffers, 1 KB to 64 MB, on --mpi-ranks ranks (default 2)
       zkynet  build/tools/bench/bench_allreduce under mpiexec: dist::allreduce (forward, and
               forward + backward in a graph) and the eager dist::allreduce_, checked mode on
               and off, against a raw MPI_Allreduce of the same buffer (the reference)
  "tuned" = the caller's environment plus TUNED_ENV below (glibc malloc keeps freed memory,
  libgomp threads sleep instead of spinning): the fastest PyTorch configuration on the VM.

Every program runs in the same environment: the caller's, with OMP_NUM_THREADS set to
--threads (default 2) for all of them (the tuned PyTorch runs add TUNED_ENV, nothing else);
the torch scripts also get --threads.
Prints a table (zkynet, PyTorch, zkynet's speed-up, the issue's target: per-op fwd+bwd
<= 1 us from C++, <= 2 us from Python; elementwise >= 40 GB/s; MLP <= 3.0 ms, CNN <= 4.2 ms,
LSTM <= 6.1 ms; the distributed suite prints its own table, allreduce op <= 5 % over raw
MPI from 1 MB up) and writes every program's raw JSON line, the commands, the environment
and the table to --out.

usage: /usr/bin/python3 tools/bench/run.py [--build-dir build] [--out FILE] [--threads 2]
                                           [--suite all|core|training|distributed] [--samples 200]
                                           [--train-steps 100] [--reps 1] [--no-stream]
                                           [--mpi-ranks 2] [--ar-samples 25]
Build first:  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DZKYNET_NATIVE=ON &&
              ninja -C build bench_graph_overhead bench_elementwise bench_reduce _zkynet \
                             bench_mlp bench_cnn bench_lstm bench_allreduce
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_PEERS = os.path.abspath(os.path.join(ROOT, "..", "shared", "peers"))
PY = "/usr/bin/python3"  # Debian's python: has torch and numpy
LIBTORCH_INCLUDE = "/usr/include/torch/csrc/api/include"

# The issue's targets.
TARGET_US_PER_OP = 1.0  # per-operator fwd+bwd overhead from C++, at most
TARGET_PY_US_PER_OP = 2.0  # per-operator fwd+bwd overhead driven from Python, at most
TARGET_GBPS = 40.0  # elementwise effective bandwidth, at least
# Distributed: the allreduce operator's time over a raw MPI_Allreduce's, at most, from this size up.
TARGET_DIST_OVERHEAD_PCT = 5.0
TARGET_DIST_MIN_BYTES = 1 << 20
# Training workloads: (zkynet program, peer script, result key of the step, target ms at most,
# the issue's PyTorch figures in ms (default, tuned), label).
TRAINING = [
    ("mlp", "bench_mlp", "mlp.py", "train_step_ms", 3.0, (12.6, 3.7),
     "MLP 784-512-512-10 b128 train step (CE+SGD)"),
    ("cnn", "bench_cnn", "cnn.py", "train_step_ms", 4.2, (16.3, 4.2),
     "CNN conv-pool x2 + linear b64 train step (CE+SGD)"),
    ("lstm", "bench_lstm", "lstm.py", "fwdbwd_step_ms", 6.1, (22.8, 9.3),
     "LSTM(10->64) T50 b32 fwd+bwd"),
]
# The "tuned" PyTorch configuration (shared/peers/run_all.py's malloc_passive).
TUNED_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295",
             "OMP_WAIT_POLICY": "PASSIVE"}


def proc_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"total": sum(v[:8]), "idle": v[3] + v[4], "steal": v[7]}


class Finished:
    """A finished program: its exit status, output, and peak resident memory."""
    def __init__(self, returncode, stdout, stderr, peak_rss_kib):
        self.returncode, self.stdout, self.stderr, self.peak_rss_kib = returncode, stdout, stderr, peak_rss_kib


def run_measuring_rss(cmd, env, cwd, timeout):
    """subprocess.run with the child's own peak RSS (os.wait4's rusage; for mpiexec, the
    largest of its processes); None on timeout."""
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    readers = [threading.Thread(target=lambda k, f: out.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("stdout", p.stdout), ("stderr", p.stderr))]
    for r in readers:
        r.start()
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    _, status, usage = os.wait4(p.pid, 0)
    timed_out = not killer.is_alive()
    killer.cancel()
    for r in readers:
        r.join()
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if timed_out:
        return None
    return Finished(p.returncode, out.get("stdout", ""), out.get("stderr", ""), usage.ru_maxrss)


def run_json(name, cmd, env, cwd, timeout, env_extra=None):
    """Runs cmd, returns a record with the JSON line it printed (the last line starting '{').
    env_extra: variables added to env for this program only (recorded)."""
    t0 = time.time()
    load0 = os.getloadavg()
    rec = {"name": name, "cmd": cmd, "cwd": cwd}
    if env_extra:
        env = dict(env, **env_extra)
        rec["env_extra"] = dict(env_extra)
    p = run_measuring_rss(cmd, env, cwd, timeout)
    if p is None:
        rec.update(rc=None, error=f"timed out after {timeout} s", wall_s=round(time.time() - t0, 2))
        return rec
    rec["peak_rss_mib"] = round(p.peak_rss_kib / 1024, 1)
    rec.update(rc=p.returncode, wall_s=round(time.time() - t0, 2),
               loadavg_start=[round(x, 2) for x in load0],
               loadavg_end=[round(x, 2) for x in os.getloadavg()])
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        rec["error"] = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}")[-2000:]
        return rec
    try:
        rec["result"] = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        rec["error"] = f"bad JSON: {e}: {lines[-1][:500]}"
    if p.stderr.strip():
        rec["stderr"] = p.stderr.strip()[-2000:]
    return rec


def git_state():
    """The commit and the locally modified files of framework/, ops/, nn/, python/ and distributed/ (what the programs measure)."""
    def git(*a):
        try:
            p = subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True)
        except OSError:
            return None
        return p.stdout.rstrip("\n") if p.returncode == 0 else None
    dirty = git("status", "--porcelain", "--", "framework", "ops", "nn", "python", "distributed")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "modified": [ln[3:] for ln in dirty.splitlines() if ln.strip()] if dirty else []}


def compile_peer(src, out, cmd_tail, env):
    """Compiles a C/C++ peer program into out (skipped when up to date); returns an error or None."""
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return None
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = cmd_tail(src, out)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return f"{' '.join(cmd)}: {p.stderr.strip()[-1500:]}"
    return None


def figures(recs, key, field):
    out = []
    for rec in recs or []:
        try:
            out.append(float(rec["result"]["results"][key][field]))
        except (KeyError, TypeError):
            pass
    return out


def median(recs, key):
    """Figure `key`: the median over runs (reps) of each run's median, or None."""
    v = figures(recs, key, "median")
    return statistics.median(v) if v else None


def best(recs, key, lower_better):
    """Figure `key`: the best sample of all runs (min time, max rate), or None."""
    v = figures(recs, key, "min" if lower_better else "max")
    return (min(v) if lower_better else max(v)) if v else None


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    return f"{x:.3g}{unit}" if abs(x) < 100 else f"{x:.0f}{unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build", help="CMake build dir (relative to the repo root)")
    ap.add_argument("--out", default=None, help="raw JSON output (default <build-dir>/bench_results.json)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=200, help="samples of the per-op chain (after 20 warm-ups)")
    ap.add_argument("--el-samples", type=int, default=21, help="samples of the elementwise calls (after 3)")
    ap.add_argument("--peers", default=DEFAULT_PEERS, help="folder of the PyTorch peer scripts")
    ap.add_argument("--no-stream", action="store_true", help="skip the STREAM bandwidth context row")
    ap.add_argument("--reps", type=int, default=1, help="runs of each program, interleaved (median of medians)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per program")
    ap.add_argument("--suite", choices=("all", "core", "training", "distributed"), default="all",
                    help="core: per-op overhead and elementwise; training: MLP, CNN, LSTM steps; all: both; "
                         "distributed: allreduce vs raw MPI under mpiexec (not in all)")
    ap.add_argument("--mpi-ranks", type=int, default=2, help="ranks of the distributed suite")
    ap.add_argument("--ar-samples", type=int, default=25, help="samples per size of bench_allreduce (after 3)")
    ap.add_argument("--train-steps", type=int, default=100, help="timed steps of the training workloads (after 10)")
    ap.add_argument("--zkynet-tuned", action="store_true",
                    help="also run the zkynet training programs under the tuned environment (context rows)")
    args = ap.parse_args()
    core = args.suite in ("all", "core")
    training = args.suite in ("all", "training")
    distributed = args.suite == "distributed"

    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    out_path = args.out or os.path.join(build, "bench_results.json")
    bench_dir = os.path.join(build, "tools", "bench")
    ours = {b: os.path.join(bench_dir, b)
            for b in ("bench_graph_overhead", "bench_elementwise", "bench_reduce", "bench_mlp", "bench_cnn", "bench_lstm",
                      "bench_allreduce", "bench_dp_mlp")}
    py_bench = os.path.join(HERE, "bench_python_overhead.py")
    required = (["bench_graph_overhead", "bench_elementwise", "bench_reduce"] if core else []) + \
        (["bench_mlp", "bench_cnn"] if training else []) + (["bench_allreduce"] if distributed else [])
    missing = [ours[b] for b in required if not os.access(ours[b], os.X_OK)]
    if missing:
        sys.exit(f"run.py: not built: {', '.join(missing)}\n  build with: cmake -S . -B {args.build_dir} -G Ninja "
                 f"-DCMAKE_BUILD_TYPE=Release -DZKYNET_NATIVE=ON && ninja -C {args.build_dir} {' '.join(os.path.basename(m) for m in missing)}")
    have_py_pkg = os.path.isdir(os.path.join(build, "python", "zkynet"))
    if not os.access(PY, os.X_OK):
        sys.exit(f"run.py: {PY} not found (the peers need Debian's python3-torch)")
    # The PyTorch peers live outside this repository (--peers): without them, say so and how to go on.
    peers_dir = os.path.abspath(args.peers)
    needed = (["_common.py", "graph_overhead.py", "elementwise.py"] if core else []) + \
        ([entry[2] for entry in TRAINING] if training else []) + (["mlp.py"] if distributed else [])
    absent = [name for name in needed if not os.path.isfile(os.path.join(peers_dir, name))]
    if absent:
        found = "does not exist" if not os.path.isdir(peers_dir) else "lacks " + ", ".join(absent)
        sys.exit(f"run.py: the PyTorch peer scripts are missing: {peers_dir} {found}.\n"
                 f"  run.py measures zkynet's programs beside them (graph_overhead.py, elementwise.py, mlp.py, "
                 f"cnn.py, lstm.py, ...).\n"
                 f"  Pass --peers DIR (default: ../shared/peers beside the repository), or run zkynet's programs "
                 f"alone, e.g.\n    OMP_NUM_THREADS={args.threads} {os.path.join(bench_dir, 'bench_mlp')}\n"
                 f"  (tools/bench/README.md, \"Single programs\").")

    # One environment for every program.
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    t = str(args.threads)
    peers = args.peers
    notes = []
    if native_setting(build) != "ON":
        notes.append(f"{args.build_dir} is not tuned for this CPU (ZKYNET_NATIVE is off, the default for builds "
                     "that are installed): for benchmark figures configure with -DZKYNET_NATIVE=ON")
    jobs = []  # (name, cmd, cwd[, env_extra])
    if core:
        add_core_jobs(jobs, notes, args, ours, py_bench, build, env, have_py_pkg)
    if training:
        add_training_jobs(jobs, notes, args, ours)
    if distributed:
        mpiexec = shutil.which("mpiexec.hydra") or shutil.which("mpiexec")
        if not mpiexec:
            sys.exit("run.py: mpiexec not found (Debian: apt-get install mpich)")
        # One thread per rank: the ranks share the cores.
        jobs.append(("zkynet_allreduce", [mpiexec, "-n", str(args.mpi_ranks), ours["bench_allreduce"],
                                          "--samples", str(args.ar_samples), "--warmup", "3"], ROOT,
                     {"OMP_NUM_THREADS": "1"}))
        add_data_parallel_jobs(jobs, notes, args, ours, mpiexec)
    return run_and_report(jobs, notes, args, env, build, out_path)


def native_setting(build):
    """ZKYNET_NATIVE in the build directory's CMake cache ("ON", "OFF"), or None."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("ZKYNET_NATIVE:"):
                    return line.strip().partition("=")[2].upper()
    except OSError:
        pass
    return None


def add_core_jobs(jobs, notes, args, ours, py_bench, build, env, have_py_pkg):
    t = str(args.threads)
    peers = args.peers
    # ---- 1. per-operator overhead -----------------------------------------------------------
    jobs.append(("zkynet_graph_overhead",
                 [ours["bench_graph_overhead"], "--samples", str(args.samples), "--warmup", "20"], ROOT))
    jobs.append(("torch_graph_overhead_py",
                 [PY, os.path.join(peers, "graph_overhead.py"), "--threads", t, "--samples", str(args.samples)],
                 peers))
    cpp_src = os.path.join(peers, "graph_overhead.cpp")
    if os.path.isdir(LIBTORCH_INCLUDE) and shutil.which("g++"):
        exe = os.path.join(build, "peers", "graph_overhead_cpp")
        err = compile_peer(cpp_src, exe, lambda s, o: [
            "g++", "-O2", "-std=c++17", "-DNDEBUG", s, "-o", o, f"-I{LIBTORCH_INCLUDE}",
            "-ltorch", "-ltorch_cpu", "-lc10"], env)
        if err:
            notes.append(f"libtorch C++ peer not built: {err}")
        else:
            jobs.append(("torch_graph_overhead_cpp", [exe, str(args.samples), t], peers))
    else:
        notes.append("libtorch C++ per-op figure skipped: libtorch-dev headers are not installed "
                     f"({LIBTORCH_INCLUDE} missing); PyTorch figure is the Python one only")

    # ---- 3. per-operator overhead from Python (run here, next to its peer graph_overhead.py) -
    if have_py_pkg:
        jobs.append(("zkynet_python_overhead",
                     [PY, py_bench, "--build-dir", build, "--samples", str(args.samples), "--warmup", "20"], ROOT))
    else:
        notes.append(f"from-Python rows skipped: the bindings are not built ({os.path.join(build, 'python', 'zkynet')} "
                     "missing; build the _zkynet target)")

    # ---- 2. elementwise c = a*b + a --------------------------------------------------------
    jobs.append(("zkynet_elementwise",
                 [ours["bench_elementwise"], "--samples", str(args.el_samples), "--warmup", "3"], ROOT))
    jobs.append(("torch_elementwise_py",
                 [PY, os.path.join(peers, "elementwise.py"), "--threads", t, "--samples", str(args.el_samples)],
                 peers))

    # ---- 2b. reductions on 10M float32 ---------------------------------------------------------
    jobs.append(("zkynet_reduce", [ours["bench_reduce"], "--samples", str(args.el_samples), "--warmup", "3"], ROOT))
    jobs.append(("torch_reduce_py", [PY, os.path.join(HERE, "peers", "reduce.py"), "--threads", t,
                                     "--samples", str(args.el_samples), "--peers", peers], ROOT))

    # ---- context: the machine's bandwidth ----------------------------------------------------
    if not args.no_stream:
        exe = os.path.join(build, "peers", "stream_c")
        err = compile_peer(os.path.join(peers, "stream.c"), exe, lambda s, o: [
            "gcc", "-O3", "-march=native", "-fopenmp", s, "-o", o], env)
        if err:
            notes.append(f"STREAM context skipped: {err}")
        else:
            # 8M float64 per array (64 MiB): 3 arrays, like the 10M-float32 workload's 120 MB.
            jobs.append(("stream_c", [exe, str(8 * 1024 * 1024)], peers))


def add_training_jobs(jobs, notes, args, ours):
    """zkynet's program, then the PyTorch peer in the default and the tuned configuration."""
    t = str(args.threads)
    steps = ["--steps", str(args.train_steps), "--warmup", "10"]
    for key, prog, script, _, _, _, label in TRAINING:
        if os.access(ours[prog], os.X_OK):
            jobs.append((f"zkynet_{key}", [ours[prog], *steps], ROOT))
            if args.zkynet_tuned:
                jobs.append((f"zkynet_{key}_tuned_env", [ours[prog], *steps], ROOT, TUNED_ENV))
        else:
            notes.append(f"{label}: zkynet figure not available ({prog} not built"
                         + ("; nn::LSTM (nn/include/zkynet/nn/recurrent.h) missing)" if key == "lstm" else ")"))
        peer_cmd = [PY, os.path.join(args.peers, script), "--threads", t, *steps]
        jobs.append((f"torch_{key}_default", peer_cmd, args.peers))
        jobs.append((f"torch_{key}_tuned", peer_cmd, args.peers, TUNED_ENV))


def add_data_parallel_jobs(jobs, notes, args, ours, mpiexec):
    """The MLP trained data-parallel on 1 and 2 ranks (the cores split between them), next to
    PyTorch's single-process MLP (shared/peers/mlp.py, tuned) on the same global batch."""
    if not os.access(ours["bench_dp_mlp"], os.X_OK):
        notes.append("data-parallel MLP rows skipped: bench_dp_mlp not built")
        return
    steps = ["--steps", str(args.train_steps), "--warmup", "10"]
    threads = os.cpu_count() or 1
    for ranks in (1, 2):
        jobs.append((f"zkynet_dp_mlp_np{ranks}", [mpiexec, "-n", str(ranks), ours["bench_dp_mlp"], *steps], ROOT,
                     {"OMP_NUM_THREADS": str(max(1, threads // ranks))}))
    jobs.append(("torch_mlp_tuned", [PY, os.path.join(args.peers, "mlp.py"), "--threads", str(args.threads), *steps],
                 args.peers, TUNED_ENV))


def data_parallel_table(by):
    """Samples/s of the data-parallel MLP on 1 and 2 ranks and of PyTorch's single process; printed, returned."""
    torch_ms = median(by.get("torch_mlp_tuned"), "train_step_ms")
    rows = []
    for name, label in (("zkynet_dp_mlp_np1", "zkynet DataParallel, 1 rank x 2 threads"),
                        ("zkynet_dp_mlp_np2", "zkynet DataParallel, 2 ranks x 1 thread"),
                        ("torch_mlp_tuned", "PyTorch 1.13 tuned, 1 process x 2 threads")):
        ms = median(by.get(name), "train_step_ms")
        rows.append({"config": label, "step_ms": ms, "samples_per_s": None if ms is None else 128e3 / ms,
                     "allreduce_ms": median(by.get(name), "gradient_allreduce_ms"),
                     "vs_torch": None if ms is None or torch_ms is None else torch_ms / ms})
    table = [["MLP 784-512-512-10, global batch 128, CE + SGD", "step ms", "samples/s", "grad allreduce ms",
              "speed vs PyTorch"]]
    for r in rows:
        table.append([r["config"], fmt(r["step_ms"]), fmt(r["samples_per_s"]), fmt(r["allreduce_ms"]),
                      "n/a" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x"])
    print_table(table, left=(0,))
    return rows


def print_memory_table(by):
    """Peak resident memory of each training program next to its PyTorch peers (the median
    over reps). The peers' figure includes the Python interpreter and libtorch."""
    def rss(name):
        v = [r["peak_rss_mib"] for r in by.get(name) or [] if "peak_rss_mib" in r]
        return statistics.median(v) if v else None
    table = [["peak RSS (MiB)", "zkynet", "torch default", "torch tuned"]]
    for key, _, _, _, _, _, label in TRAINING:
        values = [rss(f"zkynet_{key}"), rss(f"torch_{key}_default"), rss(f"torch_{key}_tuned")]
        if any(v is not None for v in values):
            table.append([label] + [fmt(v) for v in values])
    if len(table) > 1:
        print_table(table, left=(0,))
        print("peak RSS: the process's maximum resident set (getrusage via wait4); PyTorch's includes "
              "the Python interpreter and libtorch (about 200 MiB before any tensor)")


def print_table(table, left):
    """Prints rows of strings (the first one the header) in aligned columns; `left`: left-aligned columns."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    print()
    for i, line in enumerate(table):
        print("  ".join(c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()


def size_bytes(name):
    """'1KB' / '64MB' (bench_allreduce's size names) in bytes."""
    return int(name[:-2]) << (20 if name.endswith("MB") else 10)


def distributed_table(recs):
    """bench_allreduce's figures per size (median over runs of each run's median), printed; returns the rows."""
    if not recs or not any("result" in r for r in recs):
        return []
    first = next(r for r in recs if "result" in r)["result"]
    sizes = first["meta"].get("sizes", [])

    def pct(a, b, times=1):
        return None if a is None or not b else 100.0 * (a - times * b) / (times * b)

    rows = []
    for sz in sizes:
        f = {k: median(recs, f"{k}_us_{sz}") for k in
             ("raw", "raw_inplace", "op_fwd", "op_fwd_unchecked", "op_fwdbwd", "eager", "eager_unchecked")}
        raw_best, op_best = best(recs, f"raw_us_{sz}", True), best(recs, f"op_fwd_us_{sz}", True)
        overhead = pct(f["op_fwd"], f["raw"])
        target = size_bytes(sz) >= TARGET_DIST_MIN_BYTES
        rows.append({"size": sz, "raw_us": f["raw"], "raw_best_us": raw_best, "op_us": f["op_fwd"], "op_best_us": op_best,
                     "overhead_pct": overhead, "overhead_best_pct": pct(op_best, raw_best),
                     "op_unchecked_us": f["op_fwd_unchecked"], "unchecked_overhead_pct": pct(f["op_fwd_unchecked"], f["raw"]),
                     "fwdbwd_us": f["op_fwdbwd"], "fwdbwd_vs_2raw_pct": pct(f["op_fwdbwd"], f["raw"], 2),
                     "eager_us": f["eager"], "eager_vs_inplace_pct": pct(f["eager"], f["raw_inplace"]),
                     "eager_unchecked_us": f["eager_unchecked"],
                     "eager_unchecked_vs_inplace_pct": pct(f["eager_unchecked"], f["raw_inplace"]),
                     "target": f"<= {TARGET_DIST_OVERHEAD_PCT:g} %" if target else "",
                     "meets_target": (overhead <= TARGET_DIST_OVERHEAD_PCT) if target and overhead is not None else None})

    def p(x):
        return "n/a" if x is None else f"{x:+.1f} %"

    table = [["size", "raw MPI us", "(best)", "zkynet op us", "(best)", "overhead", "(best)", "unchecked us", "overhead",
              "fwd+bwd us", "vs 2x raw", "eager us", "vs in-place", "unchecked", "vs in-place", "target", "met"]]
    for r in rows:
        table.append([r["size"], fmt(r["raw_us"]), fmt(r["raw_best_us"]), fmt(r["op_us"]), fmt(r["op_best_us"]),
                      p(r["overhead_pct"]), p(r["overhead_best_pct"]), fmt(r["op_unchecked_us"]),
                      p(r["unchecked_overhead_pct"]), fmt(r["fwdbwd_us"]), p(r["fwdbwd_vs_2raw_pct"]),
                      fmt(r["eager_us"]), p(r["eager_vs_inplace_pct"]), fmt(r["eager_unchecked_us"]),
                      p(r["eager_unchecked_vs_inplace_pct"]), r["target"],
                      "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")])
    print_table(table, left=(0, 15, 16))
    meta = first["meta"]
    print(f"allreduce SUM float32 on {meta.get('ranks')} ranks ({meta.get('mpi_library')}): the slowest rank's time per "
          f"call, median of {meta.get('samples')} samples ({len(recs)} run(s): the median of their medians), (best) = "
          "fastest sample; zkynet op = dist::allreduce(NodeRef) forward, checked mode on (the default: one small "
          "signature allreduce first); unchecked = dist::set_checked(false); fwd+bwd = a Lambda call + back(seed) "
          "(two allreduces) against 2 x raw; eager = dist::allreduce_ (in place) against MPI_IN_PLACE; "
          f"target: op within {TARGET_DIST_OVERHEAD_PCT:g} % of raw MPI from "
          f"{TARGET_DIST_MIN_BYTES >> 20} MB up, by the medians")
    return rows


def run_and_report(jobs, notes, args, env, build, out_path):
    # Repetitions interleave (rep 1 of everything, then rep 2...), so that a noisy spell on
    # the shared machine does not hit every rep of one program.
    runs = []
    stat0, load0, t_start = proc_stat(), os.getloadavg(), time.time()
    for rep in range(args.reps):
        for name, cmd, cwd, *extra in jobs:
            rec = run_json(name, cmd, env, cwd, args.timeout, extra[0] if extra else None)
            rec["rep"] = rep + 1
            runs.append(rec)

    stat1 = proc_stat()
    dt = max(1, stat1["total"] - stat0["total"])
    by = {}
    for r in runs:
        by.setdefault(r["name"], []).append(r)
    for r in runs:
        if "error" in r:
            notes.append(f"{r['name']} FAILED (rc={r.get('rc')}): {r['error']}")

    # ---- the table -----------------------------------------------------------------------------
    zo, po, co = by.get("zkynet_graph_overhead"), by.get("torch_graph_overhead_py"), by.get("torch_graph_overhead_cpp")
    ze, pe = by.get("zkynet_elementwise"), by.get("torch_elementwise_py")
    zp = by.get("zkynet_python_overhead")
    rows = []

    def row(workload, unit, ours_rk, peer_label, peer_rk, lower_better, target=None, issue=None):
        """ours_rk / peer_rk: (run record, result key) or None; issue: the issue's peer figure."""
        ours_v = median(*ours_rk) if ours_rk else None
        peer_v = median(*peer_rk) if peer_rk else None
        ours_b = best(*ours_rk, lower_better) if ours_rk else None
        peer_b = best(*peer_rk, lower_better) if peer_rk else None
        ratio = None
        if ours_v and peer_v:
            ratio = peer_v / ours_v if lower_better else ours_v / peer_v
        met = None
        if target is not None and ours_v is not None:
            met = ours_v <= target if lower_better else ours_v >= target
        rows.append({"workload": workload, "unit": unit, "zkynet": ours_v, "zkynet_best": ours_b,
                     "peer": peer_label, "peer_value": peer_v, "peer_best": peer_b, "zkynet_speedup": ratio,
                     "target": None if target is None else (("<= " if lower_better else ">= ") + f"{target:g}"),
                     "meets_target": met, "issue_peer_value": issue})

    core = args.suite in ("all", "core")
    training = args.suite in ("all", "training")
    if core:
        for key, label, target in [("fwdbwd_us_per_op", "per-op fwd+bwd", TARGET_US_PER_OP),
                                   ("fwd_grad_us_per_op", "per-op fwd (recording)", None),
                                   ("bwd_us_per_op", "per-op bwd", None),
                                   ("fwd_nograd_us_per_op", "per-op fwd no-grad", None)]:
            row(label, "us/op", (zo, key), "torch python", (po, key), True, target)
            if co is not None:
                row(label, "us/op", (zo, key), "libtorch C++", (co, key), True, target)
        row("per-op fwd+bwd, hoisted f32 consts", "us/op", (zo, "fwdbwd_us_per_op_hoisted"),
            "torch python", (po, "fwdbwd_us_per_op"), True, TARGET_US_PER_OP)
        row("per-op fwd+bwd+graph teardown", "us/op", (zo, "fwdbwd_teardown_us_per_op"),
            "torch python", (po, "fwdbwd_us_per_op"), True, TARGET_US_PER_OP)

        if zp:  # skipped (with a note) when the bindings are not built
            for key, label, target in [("fwdbwd_us_per_op", "from Python: per-op fwd+bwd", TARGET_PY_US_PER_OP),
                                       ("fwd_grad_us_per_op", "from Python: per-op fwd (recording)", None),
                                       ("bwd_us_per_op", "from Python: per-op bwd", None),
                                       ("fwd_nograd_us_per_op", "from Python: per-op fwd no-grad", None)]:
                row(label, "us/op", (zp, key), "torch python", (po, key), True, target)
            row("from Python: per-op fwd+bwd, hoisted f32 const nodes", "us/op", (zp, "fwdbwd_us_per_op_hoisted"),
                "torch python", (po, "fwdbwd_us_per_op"), True, TARGET_PY_US_PER_OP)
            row("from Python: per-op fwd+bwd+graph teardown", "us/op", (zp, "fwdbwd_teardown_us_per_op"),
                "torch python", (po, "fwdbwd_us_per_op"), True, TARGET_PY_US_PER_OP)

        for peer_key in ("torch_expr", "torch_out2", "torch_addcmul_out"):
            row("elementwise a*b+a, 2 ops (op::add(op::mult))", "GB/s", (ze, "zkynet_expr_GBps_eff"), peer_key,
                (pe, f"{peer_key}_GBps_eff"), False, TARGET_GBPS)
        for peer_key in ("torch_addcmul_out", "torch_expr"):
            row("elementwise fused op::elementwise(Fma)", "GB/s", (ze, "zkynet_fused_GBps_eff"), peer_key,
                (pe, f"{peer_key}_GBps_eff"), False, TARGET_GBPS)
        row("elementwise reference: parallel_for, preallocated", "GB/s", (ze, "parallel_for_prealloc_GBps_eff"),
            "numpy_out2 (1 thread)", (pe, "numpy_out2_GBps_eff"), False)
        zr, pr = by.get("zkynet_reduce"), by.get("torch_reduce_py")
        for key, label in (("sum_all", "sum of 10M float32"), ("sum_rows", "sum over axis 0 of (10000,1000)"),
                           ("sum_cols", "sum over axis 1 of (10000,1000)"),
                           ("mean_nchw", "mean over (0,2,3) of (100,10,100,100)"), ("mse", "mse_loss of 10M float32")):
            row(label, "ms", (zr, f"zkynet_{key}_ms"), "torch", (pr, f"torch_{key}_ms"), True)
        st = by.get("stream_c")
        if st:
            for k in ("copy", "triad"):
                row(f"machine: STREAM {k} (C+OpenMP, 3x64 MiB f64)", "GB/s", None, "C", (st, f"{k}_GBps"), False)

    if training:
        for key, prog, script, step_key, target, issue, label in TRAINING:
            zr = by.get(f"zkynet_{key}")
            for cfg, i in (("default", 0), ("tuned", 1)):
                row(label, "ms", (zr, step_key) if zr else None, f"torch {cfg}", (by.get(f"torch_{key}_{cfg}"), step_key),
                    True, target, issue[i])
            for cfg in ("default", "tuned"):
                row(label.split(" train step")[0].split(" fwd+bwd")[0] + " inference (no-grad fwd)", "ms",
                    (zr, "infer_nograd_ms") if zr else None, f"torch {cfg}",
                    (by.get(f"torch_{key}_{cfg}"), "infer_nograd_ms"), True)
            zt = by.get(f"zkynet_{key}_tuned_env")
            if zt:
                row(label + ", zkynet in the tuned env", "ms", (zt, step_key), "torch tuned",
                    (by.get(f"torch_{key}_tuned"), step_key), True, target, issue[1])

    header = ["workload", "unit", "zkynet", "(best)", "PyTorch", "", "(best)", "(issue)", "zkynet speed-up",
              "target", "met"]
    table = [header]
    for r in rows:
        table.append([r["workload"], r["unit"],
                      "not available" if r["zkynet"] is None and r["unit"] == "ms" else fmt(r["zkynet"]),
                      fmt(r["zkynet_best"]), r["peer"], fmt(r["peer_value"]), fmt(r["peer_best"]),
                      "" if r["issue_peer_value"] is None else fmt(r["issue_peer_value"]),
                      "n/a" if r["zkynet_speedup"] is None else f"{r['zkynet_speedup']:.2f}x",
                      r["target"] or "", "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")])
    if rows:
        print_table(table, left=(0, 1, 4, 9, 10))
        print_memory_table(by)
    dist_rows = distributed_table(by.get("zkynet_allreduce")) if args.suite == "distributed" else []
    dp_rows = data_parallel_table(by) if args.suite == "distributed" else []
    if rows:
        print(f"medians ({args.reps} run(s) of each program; with several, the median of their medians),"
              " (best) = fastest sample; speed-up = PyTorch median time / zkynet median time (us/op)"
              " or zkynet median GB/s / PyTorch median GB/s; met: zkynet's median against the target;"
              " 'from Python' rows: the chain driven through zkynet's Python bindings"
              " (bench_python_overhead.py) against the same PyTorch-from-Python figures;"
              " ms rows: time per training step (or inference call), (issue) = the PyTorch figure quoted in the issue,"
              " torch tuned = + " + " ".join(f"{k}={v}" for k, v in TUNED_ENV.items()) + ";"
              f" {args.threads} threads (OMP_NUM_THREADS={args.threads}, torch --threads {args.threads})")
    busy = round(1 - (stat1["idle"] - stat0["idle"]) / dt, 3)
    steal = round((stat1["steal"] - stat0["steal"]) / dt, 4)
    print(f"machine: {os.cpu_count()} CPUs, loadavg at start {[round(x, 2) for x in load0]}, "
          f"busy {busy:.0%} of all CPUs during the run, steal {steal:.1%}; wall {time.time() - t_start:.0f} s")
    for r in runs:
        if "result" in r:
            print(f"  {r['name']} (rep {r['rep']}): {r['wall_s']} s, "
                  f"loadavg {r['loadavg_start'][0]} -> {r['loadavg_end'][0]}")
    pmeta = ((zp or [{}])[0]).get("result", {}).get("meta", {})
    zmeta = ((zo or [{}])[0]).get("result", {}).get("meta", {})
    if zmeta:
        print(f"zkynet graph: {zmeta.get('graph_nodes')} nodes per chain; per op (fwd+bwd) "
              f"{zmeta.get('heap_allocs_per_op_fwdbwd')} heap allocations, "
              f"{zmeta.get('tensor_buffers_per_op_fwdbwd')} tensor buffers; grad check {zmeta.get('grad_check')}")
    if pmeta:
        print(f"zkynet from Python: {pmeta.get('graph_nodes')} nodes per chain; grad check {pmeta.get('grad_check')};"
              f" package {pmeta.get('zkynet_package')}")
    if training:
        print("zkynet training steps, phase breakdown (medians of a separate run of the same steps, ms):")
        for key, *_ in TRAINING:
            for r in by.get(f"zkynet_{key}") or []:
                res, meta = r.get("result", {}).get("results", {}), r.get("result", {}).get("meta", {})
                if not res:
                    continue
                ph = " ".join(f"{p}={fmt(res.get(f'phase_{p}_ms', {}).get('median'))}"
                              for p in ("zero_grad", "forward", "backward", "update", "graph_teardown"))
                print(f"  {key} (rep {r['rep']}): {ph}; loss {meta.get('first_loss')} -> {meta.get('final_loss')}; "
                      f"{meta.get('graph_nodes_per_step')} graph nodes, {meta.get('heap_allocs_per_step')} heap "
                      f"allocations, {meta.get('tensor_buffers_per_step')} tensor buffers per step; "
                      f"allocator misses while timing {meta.get('allocator_misses_while_timing_train')}")
                diag = [k for k in res if k.startswith(("floor_", "grad_accumulate_", "weights_in_out_"))]
                if diag:
                    print("      diagnostics (medians, ms): "
                          + ", ".join(f"{k[:-3] if k.endswith('_ms') else k}={fmt(res[k].get('median'))}" for k in diag))
    gs = git_state()
    print(f"zkynet tree: commit {gs['commit']}"
          + (f", modified in framework/ops/nn/python/distributed: {', '.join(gs['modified'])}" if gs["modified"]
             else ", framework/ops/nn/python/distributed clean"))
    for n in notes:
        print("note: " + n)

    record = {
        "runner": {
            "argv": sys.argv, "python": sys.executable, "platform": platform.platform(),
            "host_cpus": os.cpu_count(), "threads": args.threads,
            "env": {k: env[k] for k in sorted(env)
                    if k.startswith(("OPENBLAS", "OMP", "MKL", "GOMP", "KMP", "GLIBC_TUNABLES", "MALLOC"))},
            "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "busy_frac_all_cpus": busy, "steal_frac": steal, "wall_s": round(time.time() - t_start, 1),
            "git": gs,
            "suite": args.suite, "tuned_env": TUNED_ENV,
            "targets": {"us_per_op_max": TARGET_US_PER_OP, "python_us_per_op_max": TARGET_PY_US_PER_OP,
                        "elementwise_GBps_min": TARGET_GBPS,
                        "allreduce_overhead_pct_max": TARGET_DIST_OVERHEAD_PCT,
                        "allreduce_target_min_bytes": TARGET_DIST_MIN_BYTES,
                        **{f"{key}_ms_max": target for key, _, _, _, target, _, _ in TRAINING}},
            "issue_peer_ms": {key: {"default": issue[0], "tuned": issue[1]} for key, *_, issue, _ in TRAINING},
            "notes": notes,
        },
        "runs": runs,
        "table": rows,
        "distributed_table": dist_rows,
        "data_parallel_table": dp_rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"raw JSON: {out_path}")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
