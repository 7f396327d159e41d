#!/usr/bin/env bash
# Sets up the machine, builds zkynet and runs every test suite.
#   tools/test.sh              Release build in build/
#   tools/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-sanitize/
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=OFF
build_dir=build
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=ON
  build_dir=build-sanitize
fi

bash tools/setup.sh
jobs=$(nproc)
# The release build compiles every CUDA source when the toolkit is there (ZKYNET_CUDA=AUTO); the
# sanitizer build leaves CUDA out: ASan's shadow memory and the CUDA runtime's mappings collide.
# The release build takes ZKYNET_NATIVE's default (off: portable; python:pip_install builds with
# the same flags, so ccache serves it these objects); the sanitizer build, never installed, stays
# -march=native as before.
native=()
[ $sanitize = OFF ] || native=(-DZKYNET_NATIVE=ON)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZKYNET_SANITIZE=$sanitize "${native[@]}" \
      -DZKYNET_BUILD_BENCHMARKS=$([ $sanitize = ON ] && echo OFF || echo ON) \
      -DZKYNET_BUILD_PYTHON=$([ $sanitize = ON ] && echo OFF || echo ON) \
      -DZKYNET_CUDA=$([ $sanitize = ON ] && echo OFF || echo AUTO)
cmake --build "$build_dir" -j "$jobs"
[ $sanitize = ON ] || bash tools/python_env.sh "$build_dir"

export OMP_NUM_THREADS=2
if [ $sanitize = ON ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
