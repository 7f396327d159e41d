"""Runs a job that goes wrong on purpose and requires it to end within seconds, non-zero (or
with --status), its output containing every --expect text and never "unreachable":

    check_fault.py --mpiexec mpiexec --program fault_job --mode throw --expect "fails on purpose"
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--program", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--expect", action="append", default=[], help="text the job's output must contain")
    parser.add_argument("--status", type=int, help="the exit status required (default: any but 0)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the job")
    parser.add_argument("--within", type=float, default=20.0, help="seconds")
    args = parser.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.update(item.split("=", 1) for item in args.env)
    start = time.monotonic()
    # Its own session: a job still running at the deadline is killed whole, ranks included.
    job = subprocess.Popen([args.mpiexec, "-n", str(args.ranks), args.program, args.mode], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        output, _ = job.communicate(timeout=args.within)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        print(output)
        sys.exit(f"FAIL: the job still ran after {args.within:.0f} s (its ranks hang)")
    elapsed = time.monotonic() - start
    print(output)
    print(f"exit status {job.returncode} after {elapsed:.2f} s")
    if args.status is None and job.returncode == 0:
        sys.exit("FAIL: the job exited 0 although it went wrong")
    if args.status is not None and job.returncode != args.status:
        sys.exit(f"FAIL: the job exited {job.returncode}, expected {args.status}")
    for text in args.expect:
        if text not in output:
            sys.exit(f"FAIL: the output does not mention {text!r}")
    if "unreachable" in output:
        sys.exit("FAIL: a rank went on past the fault")


if __name__ == "__main__":
    main()
