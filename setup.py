"""`pip install .`: builds zkynet with CMake and installs the `zkynet` Python package.

    pip install --no-build-isolation --no-index .     # offline, with the environment's setuptools, wheel

Metadata is in pyproject.toml; this file only drives CMake. It configures a build directory of its
own (kept between installs, so a second install only rebuilds what changed; ccache, when
installed, serves objects another build of the same flags already compiled), builds the target
`zkynet_python` (the libraries and the extensions `zkynet._zkynet` and, when MPI is there,
`zkynet._zkynet_distributed`), then installs the CMake components `python` (the package) and
`python_libs` (libzkynet_*.so, placed beside the extensions, which find them through their
$ORIGIN run path) into the wheel. The libraries are shared, not linked statically into each
extension: both extensions must use one copy of the framework's state (allocators, operator
registries). System libraries (OpenBLAS, HDF5, MPICH, the CUDA runtime) stay the system's.

Environment variables:
    ZKYNET_BUILD_DIR     the CMake build directory (default: build-pip/ in the source tree)
    ZKYNET_CMAKE_ARGS    extra CMake options, e.g. "-DZKYNET_CUDA=AUTO" (the CUDA kernels, when
                         nvcc is installed; slow to compile) or "-DZKYNET_BUILD_DISTRIBUTED=OFF"
    CMAKE_BUILD_PARALLEL_LEVEL   compile jobs (default: ninja's, all cores)

Defaults: a Release build of the libraries and bindings only (no tests, examples or benchmarks),
no CUDA (-DZKYNET_CUDA=OFF) and no -march=native (the package must run on other machines).
"""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.abspath(os.environ.get("ZKYNET_BUILD_DIR") or os.path.join(ROOT, "build-pip"))
# setuptools' own scratch files (build/lib..., the egg-info) go there too, not into the source tree's
# build/ (the README's CMake build directory).
SETUPTOOLS_DIR = os.path.join(BUILD_DIR, "setuptools")

DEFAULT_CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DZKYNET_BUILD_PYTHON=ON",
    "-DZKYNET_BUILD_TESTS=OFF",
    "-DZKYNET_BUILD_EXAMPLES=OFF",
    "-DZKYNET_BUILD_BENCHMARKS=OFF",
    "-DZKYNET_NATIVE=OFF",
    "-DZKYNET_CUDA=OFF",
]


def cache_value(name):
    """A variable of the build directory's CMakeCache.txt, or None."""
    with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key.split(":")[0] == name:
                return value
    return None


class CMakeBuild(build_ext):
    def run(self):
        if self.inplace:
            sys.exit("zkynet: editable installs are not supported; build with CMake and use tools/python_env.sh "
                     "(README.md), or pip install . again after a change")
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("zkynet: cmake not found (Debian: apt-get install cmake ninja-build; or bash tools/setup.sh)")
        args = [cmake, "-S", ROOT, "-B", BUILD_DIR]
        if not os.path.exists(os.path.join(BUILD_DIR, "CMakeCache.txt")) and shutil.which("ninja"):
            args += ["-G", "Ninja"]
        args += DEFAULT_CMAKE_ARGS + [f"-DPython_EXECUTABLE={sys.executable}"]
        args += shlex.split(os.environ.get("ZKYNET_CMAKE_ARGS", ""))
        self.spawn(args)
        self.spawn([cmake, "--build", BUILD_DIR, "--target", "zkynet_python"])

        # The package as `cmake --install` lays it out, staged, then copied into the wheel's tree.
        with tempfile.TemporaryDirectory(prefix="zkynet-stage-", dir=BUILD_DIR) as stage:
            env = dict(os.environ, DESTDIR=stage)
            for component in ("python", "python_libs"):
                subprocess.run([cmake, "--install", BUILD_DIR, "--prefix", "/prefix", "--component", component],
                               env=env, check=True)
            where = cache_value("ZKYNET_PYTHON_INSTALL_DIR")
            package = os.path.join(stage, where.lstrip("/") if os.path.isabs(where) else os.path.join("prefix", where),
                                   "zkynet")
            if not os.path.isfile(os.path.join(package, "__init__.py")):
                sys.exit(f"zkynet: cmake --install left no package in {package}")
            target = os.path.join(os.path.abspath(self.build_lib), "zkynet")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(package, target)

    def get_outputs(self):
        return []


os.makedirs(SETUPTOOLS_DIR, exist_ok=True)
setup(
    packages=[],
    py_modules=[],
    # One placeholder: CMake builds both extensions; it makes the wheel platform-specific.
    ext_modules=[Extension("zkynet._zkynet", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": SETUPTOOLS_DIR}, "egg_info": {"egg_base": SETUPTOOLS_DIR}},
    zip_safe=False,
)
