#!/usr/bin/env bash
# Builds what the GPU machine runs and packs it, with the shared libraries it needs that the GPU
# machine lacks (OpenBLAS, HDF5, MPICH and theirs; not CUDA's: the GPU machine has pip's cuBLAS and
# cuDNN), into gpu-bundle.tar.xz at the repository root (ignored by git; carry it:
# run(carry=["gpu-bundle.tar.xz"])). MPICH's launcher (mpiexec.hydra, hydra_pmi_proxy) travels in bin/
# so that the staging test runs on 2 ranks there too.
#   bash tools/gpu_bundle.sh            then, on the GPU machine: bash tools/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# -march=native would tie the binaries to this machine's CPU: the GPU machine's may differ.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DZKYNET_CUDA=ON -DZKYNET_NATIVE=OFF \
      -DZKYNET_BUILD_PYTHON=OFF -DZKYNET_BUILD_DISTRIBUTED=ON -DZKYNET_BUILD_EXAMPLES=ON
programs="test_cuda test_cuda_staging test_cuda_nccl bench_gpu bench_allreduce digits_mlp digits_cnn sunspots_lstm"
cmake --build build-gpu -j "$(nproc)" --target $programs

stage=$(mktemp -d)
mkdir -p "$stage/gpu-bundle/bin" "$stage/gpu-bundle/lib" "$stage/gpu-bundle/peers"
cp build-gpu/tests/test_cuda build-gpu/tests/test_cuda_staging build-gpu/tests/test_cuda_nccl \
   build-gpu/tools/bench/bench_gpu build-gpu/tools/bench/bench_allreduce \
   build-gpu/examples/digits_mlp build-gpu/examples/digits_cnn build-gpu/examples/sunspots_lstm "$stage/gpu-bundle/bin/"
cp "$(command -v mpiexec.hydra)" "$(command -v hydra_pmi_proxy)" "$stage/gpu-bundle/bin/"
# The digits (scikit-learn's copy) and the sunspots (statsmodels'): the GPU machine has neither.
mkdir -p "$stage/gpu-bundle/data"
cp /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz "$stage/gpu-bundle/data/"
cp /usr/lib/python3/dist-packages/statsmodels/datasets/sunspots/sunspots.csv "$stage/gpu-bundle/data/"
# Every library the programs load, but the C runtime, the driver and CUDA's own libraries
# (cuBLAS, cuDNN, NCCL: the GPU machine's pip wheels provide them, cuDNN's front library must
# match the sub-libraries it loads from there, and libnccl alone is 200 MB).
for program in "$stage"/gpu-bundle/bin/*; do
  ldd "$program" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*|libcublas*|libcudart*|libcudnn*|libnccl*) ;;
    *) cp -L "$lib" "$stage/gpu-bundle/lib/" ;;
  esac
done
cp ../shared/peers/gpu.py ../shared/peers/_common.py "$stage/gpu-bundle/peers/"
tar -C "$stage" -cJf gpu-bundle.tar.xz gpu-bundle
rm -rf "$stage"
ls -la gpu-bundle.tar.xz
