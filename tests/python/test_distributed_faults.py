"""An uncaught exception on one rank of a zkynet.distributed job ends every rank within
seconds, non-zero, instead of leaving the others waiting in their communication forever.
Runs jobs of 2 ranks with mpiexec, once, from the single-process suite."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from zkynet import _zkynet

MPIEXEC = shutil.which("mpiexec")
pytestmark = [
    pytest.mark.skipif(not hasattr(_zkynet, "distributed"), reason="zkynet built without distributed/"),
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec is not installed"),
]

# Rank `failing` raises while the others wait for it: in a Recv, an Allreduce, or a backward pass.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from zkynet import distributed as dist
    from zkynet.framework import cg, op

    failing, where = int(sys.argv[1]), sys.argv[2]
    rank = dist.COMM_WORLD.rank

    class Loss(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            if rank == failing and where == "call":
                raise KeyError("failing inside a module call")
            return op.sum(dist.Allreduce(x, dist.MPI_SUM))

    if rank == failing and where == "top":
        raise RuntimeError("rank %d fails on purpose" % rank)
    if where == "top":
        dist.Recv(np.zeros(3), failing, 0)
    loss = Loss()(np.ones(3))
    if rank == failing and where == "backward":
        raise ValueError("failing before back()")
    loss.back()
    print("unreachable: every rank finished")
""")


def run_job(tmp_path, failing, where, timeout=30):
    script = tmp_path / "fails.py"
    script.write_text(SCRIPT)
    # Its own session: a job still running at the timeout is killed whole, ranks included.
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(script), str(failing), where],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        pytest.fail(f"the job still ran after {timeout} s: a failing rank left the others waiting")
    return job.returncode, out + err


@pytest.mark.parametrize("failing, where, error", [
    (1, "top", "RuntimeError: rank 1 fails on purpose"),
    (0, "call", "KeyError: 'failing inside a module call'"),
    (1, "backward", "ValueError: failing before back()"),
])
def test_one_failing_rank_ends_the_whole_job_non_zero(tmp_path, failing, where, error):
    code, output = run_job(tmp_path, failing, where)
    # Without the abort the other rank would wait forever: run_job's timeout would fail the test.
    assert code != 0, output
    assert error in output  # the traceback comes out before the job ends
    assert "unreachable" not in output
