#!/usr/bin/env bash
# One command on a GPU machine (<= 8 minutes, GPU_CHECK_BUDGET seconds, default 450): the CUDA
# suite (every operator of the table, training tools), communication on CUDA tensors staged
# through host memory (1 rank, then 2 ranks with the bundled mpiexec) and through NCCL (1 rank:
# NCCL refuses two ranks on one GPU, so the 2-rank NCCL test reports skipped on a one-GPU
# machine), the staged-vs-NCCL allreduce benchmark (1 rank), the input pipeline (pinned,
# prefetching DataLoader vs pageable copies; its JSON line goes into summary.txt), the examples on the CPU
# and on CUDA side by side (digits MLP and CNN accuracy, sunspots LSTM RMSE), and the GPU
# benchmarks beside PyTorch CUDA (../shared/peers/gpu.py, packed in the bundle) with the ratios
# (tools/bench/gpu_ratios.py). Each step's timeout is its cap or the time left, whichever is
# less, so the whole check ends in time. $OUT gets at most 8 files (what comes back from a GPU
# machine): summary.txt, gpu_ratios.json, bench_gpu.json, peer_gpu.json, bench_allreduce_cuda.json,
# test_cuda.log and logs.tar.gz (every other log; written on exit, whatever failed).
# Needs gpu-bundle.tar.xz from tools/gpu_bundle.sh (the GPU machine has no Debian
# xtensor/OpenBLAS/HDF5/MPICH to build with) and pip's CUDA libraries (cuBLAS, cuDNN, NCCL) next to
# PyTorch. The distributed programs link libnccl.so.2 (the bundle leaves it out: 200 MB); without
# pip's nvidia-nccl wheel their steps are skipped, and the summary says so.
#   GPU_BENCH_SAMPLES (default 10) timed calls per workload, after 3 warm-up calls, on both sides
#   (bench_gpu takes fewer where a workload would outlast 15 s: its JSON says n).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
start=$(date +%s)
budget=${GPU_CHECK_BUDGET:-450}
samples=${GPU_BENCH_SAMPLES:-10}
# left CAP: the seconds a step may take: CAP, or what is left of the budget (at least 1).
left() {
  local rest=$((budget - ($(date +%s) - start)))
  [ "$rest" -lt "$1" ] && echo $((rest > 1 ? rest : 1)) || echo "$1"
}
[ -f gpu-bundle.tar.xz ] || { echo "gpu_check: gpu-bundle.tar.xz missing: run tools/gpu_bundle.sh where zkynet builds"; exit 2; }
work=$(mktemp -d)
L=$work/logs
mkdir -p "$L"
trap 'tar -C "$work" -czf "$OUT/logs.tar.gz" logs' EXIT
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
export PATH="$bundle/bin:$PATH"  # mpiexec.hydra finds hydra_pmi_proxy here
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$L/nvidia_smi.txt" 2>&1
# Which cuDNN the suite will load (conv2d runs in it; built against 9.19, a 9.x runtime serves
# the legacy convolution API it calls).
ls -d ${nvidia_libs//:/ } >> "$L/nvidia_smi.txt" 2>&1
# NCCL: pip's nvidia-nccl-cu* wheel (nvidia/nccl/lib), found with the other wheels above.
nccl_lib=""
for dir in ${nvidia_libs//:/ }; do
  [ -e "$dir/libnccl.so.2" ] && nccl_lib="$dir/libnccl.so.2"
done
echo "libnccl: ${nccl_lib:-absent}" >> "$L/nvidia_smi.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" \
  >> "$L/nvidia_smi.txt" 2>&1

echo "== CUDA suite"
timeout "$(left 200)" "$bundle/bin/test_cuda" -r console > "$OUT/test_cuda.log" 2>&1
suite=$?
tail -n 5 "$OUT/test_cuda.log"

echo "== communication on CUDA tensors (staged through host memory): 1 rank, then 2"
staging1="skipped (no libnccl.so.2)" staging2=$staging1 nccl1=$staging1 nccl2=$staging1 staged_as_nccl=$staging1
if [ -n "$nccl_lib" ]; then
  timeout "$(left 30)" "$bundle/bin/test_cuda_staging" > "$L/staging_np1.log" 2>&1
  staging1=$?
  timeout "$(left 40)" "$bundle/bin/mpiexec.hydra" -launcher fork -n 2 "$bundle/bin/test_cuda_staging" \
    > "$L/staging_np2.log" 2>&1
  staging2=$?
  tail -n 2 "$L/staging_np1.log" "$L/staging_np2.log"
  echo "== NCCL collectives on CUDA tensors: 1 rank, 2 ranks (skipped: one device), staging cases via NCCL"
  timeout "$(left 30)" "$bundle/bin/test_cuda_nccl" > "$L/nccl_np1.log" 2>&1
  nccl1=$?
  timeout "$(left 40)" "$bundle/bin/mpiexec.hydra" -launcher fork -n 2 "$bundle/bin/test_cuda_nccl" \
    > "$L/nccl_np2.log" 2>&1
  nccl2=$?
  ZKYNET_CUDA_COLLECTIVES=nccl timeout "$(left 30)" "$bundle/bin/test_cuda_staging" > "$L/staging_as_nccl_np1.log" 2>&1
  staged_as_nccl=$?
  tail -n 2 "$L/nccl_np1.log" "$L/nccl_np2.log" "$L/staging_as_nccl_np1.log"
fi

echo "== examples on the CPU and on CUDA (the same seeded runs)"
export ZKYNET_DIGITS="$bundle/data/digits.csv.gz" ZKYNET_SUNSPOTS="$bundle/data/sunspots.csv"
examples_status=""
for example in digits_mlp digits_cnn sunspots_lstm; do
  for device in cpu cuda; do
    timeout "$(left 60)" "$bundle/bin/$example" "$work/graphs-$device" --device "$device" \
      > "$L/${example}_$device.log" 2>&1
    examples_status+="$example --device $device: $? "
  done
done
grep -h "test accuracy\|test RMSE" "$L"/digits_mlp_*.log "$L"/digits_cnn_*.log "$L"/sunspots_lstm_*.log \
  | tee "$L/examples.txt"

echo "== zkynet GPU benchmarks, then the PyTorch peer (same workloads, --samples $samples)"
timeout "$(left 120)" "$bundle/bin/bench_gpu" --samples "$samples" --warmup 3 --budget-s 15 \
  > "$OUT/bench_gpu.json" 2> "$L/bench_gpu.err"
timeout "$(left 90)" "$PY" "$bundle/peers/gpu.py" --samples "$samples" --warmup 3 \
  > "$OUT/peer_gpu.json" 2> "$L/peer_gpu.err"

echo "== input pipeline: DataLoader(pin_memory, device) vs blocking pageable copies, the same MLP steps"
timeout "$(left 45)" "$bundle/bin/bench_gpu" --only input --samples 5 --warmup 2 --budget-s 15 \
  > "$L/bench_input.json" 2> "$L/bench_input.err"

if [ -n "$nccl_lib" ]; then
  echo "== allreduce of CUDA tensors, staged vs NCCL (1 rank, 1 KB to 256 MB)"
  timeout "$(left 60)" "$bundle/bin/bench_allreduce" --device cuda --samples "$samples" --warmup 2 \
    > "$OUT/bench_allreduce_cuda.json" 2> "$L/bench_allreduce_cuda.err"
  tail -n 10 "$L/bench_allreduce_cuda.err"
fi

"$PY" "$repo/tools/bench/gpu_ratios.py" "$OUT/bench_gpu.json" "$OUT/peer_gpu.json" --out "$OUT/gpu_ratios.json" \
  | tee "$OUT/summary.txt"
{
  echo "CUDA suite exit status: $suite (0 passed, 77 skipped: no device answered)"
  echo "staging test: 1 rank $staging1, 2 ranks $staging2 (0 passed)"
  echo "NCCL test: 1 rank $nccl1, 2 ranks $nccl2 (0 passed, 77 skipped: fewer devices than ranks);" \
       "staging test with ZKYNET_CUDA_COLLECTIVES=nccl: $staged_as_nccl"
  echo "input pipeline (bench_gpu --only input): $(cat "$L/bench_input.json" 2>/dev/null || echo missing)"
  echo "examples (exit statuses): $examples_status"
  cat "$L/examples.txt"
  echo "check took $(( $(date +%s) - start )) s of $budget"
} | tee -a "$OUT/summary.txt"
exit $suite
