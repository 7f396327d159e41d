#!/usr/bin/env bash
# Sets up the machine, builds zkynet and runs the main example: SimpleModel's values,
# gradients and Jacobians, and its graphs written as DOT and PNG to zkynet-graphs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
bash tools/python_env.sh build
./build/examples/simple_model zkynet-graphs
