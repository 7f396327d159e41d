"""Runs under `mpiexec -n N python3 -m pytest`: every rank runs every test, in the same order.

A test failing on one rank would leave the others waiting in their next communication until
the CTest timeout: the failing rank prints its report and ends the whole job instead.
"""
import sys
import time

from zkynet import distributed as dist


def pytest_runtest_logreport(report):
    if not report.failed or dist.COMM_WORLD.size == 1:
        return
    rank = dist.COMM_WORLD.rank
    sys.stderr.write(f"\n[rank {rank}] {report.nodeid} failed ({report.when}):\n{report.longreprtext}\n")
    sys.stderr.flush()
    time.sleep(0.25)  # mpiexec forwards output asynchronously; MPI_Abort could drop the report
    dist.abort(f"{report.nodeid} failed", 1)
