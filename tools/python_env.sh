#!/usr/bin/env bash
# Makes `import zkynet` work in .venv/bin/python, from any directory, for the build in $1
# (default build/): a .pth file in the environment points at <build>/python.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$repo/${1:-build}" && pwd)
site=$("$repo/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$build/python" > "$site/zkynet-build.pth"
