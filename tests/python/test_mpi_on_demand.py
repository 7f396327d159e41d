"""`import zkynet` does not load MPI: distributed/ is the separate extension
zkynet._zkynet_distributed, which only `import zkynet.distributed` loads (each check runs in a
fresh interpreter and reads its /proc/self/maps)."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

MAPPED = textwrap.dedent("""
    def mapped(prefix):
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f
                           if line.split()[-1].rsplit("/", 1)[-1].startswith(prefix)})
""")


def run(code):
    result = subprocess.run([sys.executable, "-c", MAPPED + textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_import_zkynet_and_training_load_no_mpi():
    run("""
        import numpy as np
        import zkynet
        from zkynet import nn, optim
        from zkynet.framework import op
        assert mapped("libzkynet_framework"), "the check reads the wrong maps"
        assert not mapped("libmpi") and not mapped("libzkynet_distributed"), mapped("lib")
        layer = nn.Linear(2, 1)
        opt = optim.SGD(layer.parameters(), lr=0.1)
        g = op.sum(layer(np.ones((4, 2), np.float32)))
        opt.zero_grad(); g.back(); opt.step()
        assert not mapped("libmpi"), mapped("libmpi")
    """)


@pytest.mark.skipif(importlib.util.find_spec("zkynet._zkynet_distributed") is None,
                    reason="zkynet built without distributed/")
def test_import_zkynet_distributed_loads_mpi_and_works():
    out = run("""
        import numpy as np
        import zkynet
        assert not mapped("libmpi")
        from zkynet import distributed as dist
        from zkynet.framework import cg, op
        assert mapped("libmpi") and mapped("libzkynet_distributed"), mapped("lib")

        class Loss(cg.Module):
            def __init__(self):
                super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", 2.0),))

            def call(self, x):
                return dist.Allreduce(op.sum(op.mult(x, self.param("w"))), dist.MPI_SUM)

        loss = Loss()
        g = loss(np.ones(3))                  # a zkynet graph value through the distributed extension
        g.back()
        print(dist.COMM_WORLD.size, float(g.value), float(g.grad(loss.param("w"))))
    """)
    assert out.split() == ["1", "6.0", "3.0"]


def test_without_distributed_the_error_says_how_to_build_it():
    # The package without the distributed extension: zkynet.distributed explains itself.
    run("""
        import importlib.abc, sys

        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "zkynet._zkynet_distributed":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Hide())
        try:
            import zkynet.distributed
        except ImportError as e:
            assert "built without distributed/" in str(e), e
        else:
            raise AssertionError("imported")
    """)
