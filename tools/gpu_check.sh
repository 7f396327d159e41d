#!/usr/bin/env bash
# One command on a GPU machine (<= 8 minutes): the CUDA suite (every operator of the table,
# conv2d in cuDNN, pooling and normalization included) and the GPU benchmarks beside
# PyTorch CUDA (../shared/peers/gpu.py, packed in the bundle), logs and JSON under $OUT, a short
# table last. Needs gpu-bundle.tar.xz from tools/gpu_bundle.sh (the GPU machine has no Debian
# xtensor/OpenBLAS/HDF5 to build with) and pip's CUDA libraries (cuBLAS, cuDNN) next to PyTorch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
[ -f gpu-bundle.tar.xz ] || { echo "gpu_check: gpu-bundle.tar.xz missing: run tools/gpu_bundle.sh where zkynet builds"; exit 2; }
work=$(mktemp -d)
tar -C "$work" -xJf gpu-bundle.tar.xz
bundle=$work/gpu-bundle
PY=$(command -v python3)
# pip's nvidia-* wheels (what PyTorch uses): cuBLAS 13 for the bundle's programs.
nvidia_libs=$("$PY" - <<'PYEOF' 2>/dev/null
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in glob.glob(os.path.join(base, "nvidia", "*", "lib")):
        dirs.add(lib)
print(":".join(sorted(dirs)))
PYEOF
)
export LD_LIBRARY_PATH="$bundle/lib:${nvidia_libs}:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia_smi.txt" 2>&1
# Which cuDNN the suite will load (conv2d runs in it; built against 9.19, a 9.x runtime serves
# the legacy convolution API it calls).
ls -d ${nvidia_libs//:/ } >> "$OUT/nvidia_smi.txt" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" \
  >> "$OUT/nvidia_smi.txt" 2>&1

echo "== CUDA suite"
timeout 300 "$bundle/bin/test_cuda" -r console > "$OUT/test_cuda.log" 2>&1
suite=$?
tail -n 5 "$OUT/test_cuda.log"

echo "== zkynet GPU benchmarks"
timeout 180 "$bundle/bin/bench_gpu" > "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.err"
echo "== PyTorch peer (same workloads)"
timeout 180 "$PY" "$bundle/peers/gpu.py" --only elementwise,chain,mlp > "$OUT/peer_gpu.json" 2> "$OUT/peer_gpu.err"

echo "== examples/digits_mlp on the CPU and on CUDA (the same seeded run)"
export ZKYNET_DIGITS="$bundle/data/digits.csv.gz"
timeout 120 "$bundle/bin/digits_mlp" "$work/graphs-cpu" --device cpu > "$OUT/digits_cpu.log" 2>&1
timeout 120 "$bundle/bin/digits_mlp" "$work/graphs-cuda" --device cuda > "$OUT/digits_cuda.log" 2>&1
digits=$?
grep -h "test accuracy" "$OUT/digits_cpu.log" "$OUT/digits_cuda.log"

"$PY" - "$OUT/bench_gpu.json" "$OUT/peer_gpu.json" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys
def load(path):
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except Exception as e:
        return {"results": {}, "error": str(e)}
ours, peer = load(sys.argv[1]), load(sys.argv[2])
higher = {"copy_gbps", "elementwise_expr_gbps"}
print(f"{'workload':28s} {'zkynet':>10s} {'pytorch':>10s} {'zkynet speed-up':>16s}")
for key in ["copy_gbps", "elementwise_expr_gbps", "chain_fwdbwd_us_per_op", "mlp_gemm_floor_ms", "mlp_train_step_ms"]:
    z = ours.get("results", {}).get(key, {}).get("median")
    p = peer.get("results", {}).get(key, {}).get("median")
    ratio = (z / p if key in higher else p / z) if z and p else None
    fmt = lambda v: f"{v:10.4g}" if v is not None else f"{'-':>10s}"
    print(f"{key:28s} {fmt(z)} {fmt(p)} {fmt(ratio)}")
if ours.get("meta", {}).get("unavailable"):
    print("zkynet workloads not available:", ours["meta"]["unavailable"])
PYEOF
echo "CUDA suite exit status: $suite (0 passed, 77 skipped: no device answered); digits_mlp --device cuda: $digits"
exit $suite
