#!/usr/bin/env bash
# Sets up the machine, builds zkynet and runs the main examples: SimpleModel's values,
# gradients and Jacobians (C++); the digits MLP and a character-level GPT (on the fortunes
# package's text) trained from Python; the digits MLP and CNN and
# the sunspots LSTM forecaster trained from C++; the digits MLP trained on two pipeline stages
# under MPI (one graph per rank, merged into one picture). Graphs go to zkynet-graphs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
bash tools/python_env.sh build
export OMP_NUM_THREADS=2
./build/examples/simple_model zkynet-graphs
.venv/bin/python examples/python/train_digits.py --graphs zkynet-graphs
.venv/bin/python examples/python/char_gpt.py --d-model 64 --context 64 --steps 1000 --graphs zkynet-graphs
./build/examples/digits_mlp zkynet-graphs
./build/examples/digits_cnn zkynet-graphs
./build/examples/sunspots_lstm zkynet-graphs
mpiexec -n 2 ./build/examples/digits_pipeline zkynet-graphs
/usr/bin/python3 tools/merge_rank_graphs.py zkynet-graphs/pipeline_rank0.dot zkynet-graphs/pipeline_rank1.dot \
  -o zkynet-graphs/pipeline_merged.dot --png
echo "graphs: $(pwd)/zkynet-graphs/"
