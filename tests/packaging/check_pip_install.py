#!/usr/bin/env python3
"""`pip install .` as the README gives it, checked end to end: a fresh virtual environment
(Debian's python3 with --system-site-packages, for Debian's numpy), then

    pip install --no-build-isolation --no-index <source>

then, from another directory and with no PYTHONPATH, `python -I -c SMOKE`: the installed package
imports without loading MPI, trains a tiny model one step (forward, back, optimizer step), and
`import zkynet.distributed` then loads MPI and works (one rank, no mpiexec).

    check_pip_install.py --source-dir SRC --work-dir DIR [--cmake-args="-DZKYNET_CUDA=OFF ..."]
                         [--distributed ON|OFF]   (OFF: the build has no distributed/, skip that part)

The CMake build directory DIR/build is kept between runs (setup.py's ZKYNET_BUILD_DIR): a second
run rebuilds only what changed, and with ccache a first run compiles little when the build that
runs this test has the same flags (tests/CMakeLists.txt passes them). The environment is made
anew each run."""
import argparse
import os
import shutil
import subprocess
import sys
import time

SMOKE = r'''
import os, sys
import numpy as np
import zkynet
from zkynet import nn, optim
from zkynet.framework import cg, op


def mapped(prefix):
    """Libraries mapped into this process whose file name starts with prefix."""
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if line.split()[-1].rsplit("/", 1)[-1].startswith(prefix)})


package = os.path.dirname(zkynet.__file__)
assert package.startswith(sys.prefix + os.sep), f"zkynet imported from {package}, not from {sys.prefix}"
assert mapped("libzkynet_framework") == [os.path.join(package, "libzkynet_framework.so")], mapped("libzkynet_")
assert not mapped("libmpi"), f"import zkynet loaded MPI: {mapped('libmpi')}"


class Loss(cg.Module):
    def __init__(self, model):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y").requires_grad(False)))
        self.model = model

    def call(self, x, y):
        return op.mse_loss(self.model(x), y)


nn.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
loss = Loss(model)
opt = optim.SGD(model.parameters(), lr=0.05)
x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
y = x.sum(axis=1, keepdims=True)
r = loss(x, y)                                   # forward
opt.zero_grad(); r.back(); opt.step()            # back, one step
before, after = float(r.value), float(loss(x, y).value)
assert after < before, (before, after)
assert not mapped("libmpi"), f"training loaded MPI: {mapped('libmpi')}"
print(f"installed zkynet {zkynet.__version__} in {package}: loss {before:.4f} -> {after:.4f} after one SGD step")
if sys.argv[1] == "OFF":                         # built without distributed/
    sys.exit(0)

from zkynet import distributed as dist           # noqa: E402  only now: MPI
assert mapped("libmpi"), "import zkynet.distributed did not load MPI"
assert dist.COMM_WORLD.size == 1 and dist.COMM_WORLD.rank == 0
assert (dist.allreduce_array(np.ones(3)) == 1).all()
print(f"MPI loaded by zkynet.distributed only ({os.path.basename(mapped('libmpi')[0])}), one rank")
'''


def run(cmd, **kwargs):
    print("+", " ".join("SMOKE" if arg == SMOKE else arg for arg in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--cmake-args", default="", help="setup.py's ZKYNET_CMAKE_ARGS")
    ap.add_argument("--python", default="/usr/bin/python3", help="the interpreter the environment is made from")
    ap.add_argument("--distributed", choices=("ON", "OFF"), default="ON", help="whether distributed/ is built")
    args = ap.parse_args()

    work = os.path.abspath(args.work_dir)
    venv, elsewhere = os.path.join(work, "venv"), os.path.join(work, "elsewhere")
    shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(elsewhere, ignore_errors=True)
    os.makedirs(elsewhere)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(ZKYNET_BUILD_DIR=os.path.join(work, "build"), ZKYNET_CMAKE_ARGS=args.cmake_args,
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")

    started = time.monotonic()
    run([args.python, "-m", "venv", "--system-site-packages", venv], env=env)
    python = os.path.join(venv, "bin", "python")
    made = time.monotonic()
    run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index", args.source_dir], env=env, cwd=elsewhere)
    installed = time.monotonic()
    run([python, "-I", "-c", SMOKE, args.distributed], env=env, cwd=elsewhere)
    done = time.monotonic()
    print(f"venv {made - started:.1f} s, pip install {installed - made:.1f} s, smoke test {done - installed:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
