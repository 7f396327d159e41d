"""A zkynet.distributed job that goes wrong ends every rank within seconds, non-zero, with a
message saying why, instead of leaving ranks waiting in their communication forever: an
uncaught exception on one rank, ranks calling different collectives, a rank that finishes
while another waits for it, a rank that skips back(), the timeout. Runs jobs of 2 ranks with
mpiexec, once, from the single-process suite."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

MPIEXEC = shutil.which("mpiexec")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("zkynet._zkynet_distributed") is None,
                       reason="zkynet built without distributed/"),
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


def run_job(tmp_path, failing, where, timeout=30, script_text=SCRIPT, env=None):
    script = tmp_path / "fails.py"
    script.write_text(script_text)
    # Its own session: a job still running at the timeout is killed whole, ranks included.
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(script), str(failing), where],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))
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


# Rank 1 does something other than rank 0, which calls Allreduce in a module and back().
MISMATCH_SCRIPT = textwrap.dedent("""
    import sys
    import time
    import numpy as np
    from zkynet import distributed as dist
    from zkynet.framework import cg, op

    _, where = int(sys.argv[1]), sys.argv[2]
    rank = dist.COMM_WORLD.rank
    if where == "timeout":
        dist.set_timeout(1.0)

    class Loss(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))

        def call(self, x):
            return op.sum(op.mult(dist.Allreduce(x, dist.MPI_SUM), x))

    if rank == 1 and where == "barrier":
        dist.COMM_WORLD.barrier()
    elif rank == 1 and where == "finish":
        sys.exit(0)
    elif rank == 1 and where == "timeout":
        time.sleep(30)  # computing, for too long
    loss = Loss()(np.ones(3))
    if rank == 0 or where != "skip_back":
        loss.back()
    Loss()(np.ones(3)).back()
    print("unreachable: every rank finished")
""")


@pytest.mark.parametrize("where, env, messages", [
    # Checked mode compares every collective call, barrier included, across ranks.
    ("barrier", {}, ["collective calls on world differ (checked mode)", "rank 1: Barrier @world [call 0]",
                     "rank 0: Allreduce SUM #0 @world float64 (3,) [call 0] at Loss (Loss)"]),
    # A rank that ends normally says so; the one waiting for it aborts the job.
    ("finish", {}, ["rank 0 aborts the job: Allreduce SUM #0 @world (collective call 0 on world, called at Loss "
                    "(Loss)) cannot complete: rank 1 has finished (its program ended normally)"]),
    # back()'s collectives are checked too: a rank whose backward has none is caught.
    ("skip_back", {}, ["rank 0: backward of Allreduce SUM #0 @world float64 (3,) [call 1] at Loss (Loss)",
                       "rank 1: Allreduce SUM #1 @world float64 (3,) [call 1] at Loss (Loss)"]),
    ("timeout", {}, ["rank 0 aborts the job: timeout: Allreduce SUM #0 @world (collective call 0 on world, called "
                     "at Loss (Loss)) did not complete within 1 s", "Not there: rank 1 did not answer"]),
    # ZKYNET_DIST_TIMEOUT sets the timeout without code changes.
    ("finish", {"ZKYNET_DIST_TIMEOUT": "0.5"}, ["did not complete within 0.5 s", "rank 1 has finished"]),
])
def test_ranks_that_part_ways_end_the_job_with_a_message_naming_both_sides(tmp_path, where, env, messages):
    code, output = run_job(tmp_path, 0, where, script_text=MISMATCH_SCRIPT, env=env)
    assert code == 1, output
    for message in messages:
        assert message in output
    assert "unreachable" not in output

