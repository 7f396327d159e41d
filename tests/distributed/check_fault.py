"""Runs a job in which one rank fails and requires it to end non-zero within seconds.

    check_fault.py --mpiexec mpiexec --program fault_rank_fails --mode throw --expect "fails on purpose"
"""
import argparse
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--program", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--expect", default="", help="text the job's output must contain")
    parser.add_argument("--within", type=float, default=20.0, help="seconds")
    args = parser.parse_args()

    start = time.monotonic()
    try:
        job = subprocess.run([args.mpiexec, "-n", str(args.ranks), args.program, args.mode],
                             capture_output=True, text=True, timeout=args.within)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: the job still ran after {args.within:.0f} s (a rank failed and the others hang)")
    elapsed = time.monotonic() - start
    output = job.stdout + job.stderr
    print(output)
    print(f"exit status {job.returncode} after {elapsed:.2f} s")
    if job.returncode == 0:
        sys.exit("FAIL: the job exited 0 although a rank failed")
    if args.expect not in output:
        sys.exit(f"FAIL: the output does not mention {args.expect!r}")


if __name__ == "__main__":
    main()
