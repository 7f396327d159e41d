#!/usr/bin/env bash
# Installs the Debian packages zkynet needs to build, test and benchmark.
# Idempotent: packages already present are skipped without touching the network.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libxtensor-dev xtl-dev libxsimd-dev libopenblas-dev
  catch2 graphviz
  python3 python3-dev python3-venv python3-numpy python3-pytest python3-torch python3-sklearn python3-hypothesis
  python3-pip python3-setuptools python3-wheel
  pybind11-dev libdlpack-dev
  libhdf5-dev python3-h5py
  zlib1g-dev python3-statsmodels
  mpich libmpich-dev
  fortunes
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "zkynet setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The interpreter the README names: Debian's python3 in a virtual environment that still sees
# Debian's numpy, pytest and torch. tools/python_env.sh points it at a build's package.
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$repo/.venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$repo/.venv"
fi
