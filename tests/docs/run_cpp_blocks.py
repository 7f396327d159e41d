#!/usr/bin/env python3
"""ctest docs:cpp_blocks: compiles and runs every ```cpp block of the READMEs against this build.

Installs the build into <work>/prefix, writes one source per block into one CMake project
(find_package(zkynet); zkynet::zkynet, plus zkynet::distributed for blocks that include
<zkynet/distributed...>), builds them all in one configure, then runs each program in a
directory of its own (blocks including distributed headers under mpiexec -n 2). Also checks
that every block of every README carries a known tag. Conventions: tests/docs/README.md.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_blocks  # noqa: E402

SANITIZE_FLAGS = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"


def target_name(block: doc_blocks.Block) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", block.path.removesuffix(".md")).strip("_") + f"_L{block.line}"


def write_if_changed(path: Path, text: str) -> None:
    # Unchanged sources keep their time stamps, so a rerun recompiles only edited blocks.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def project(cpp: list[doc_blocks.Block], sanitize: bool) -> str:
    lines = ["cmake_minimum_required(VERSION 3.22)",
             "project(zkynet_readme_blocks LANGUAGES CXX)",
             "find_package(zkynet REQUIRED)",
             "set(CMAKE_CXX_STANDARD 20)",
             "set(CMAKE_CXX_STANDARD_REQUIRED ON)"]
    if sanitize:  # a sanitizer build's libraries load only into instrumented programs
        lines += [f"add_compile_options({SANITIZE_FLAGS})", "add_link_options(-fsanitize=address,undefined)"]
    for b in cpp:
        name = target_name(b)
        libs = "zkynet::zkynet zkynet::distributed" if b.is_distributed() else "zkynet::zkynet"
        lines += [f"add_executable({name} {name}.cpp)  # {b.where()}",
                  f"target_link_libraries({name} PRIVATE {libs})"]
    return "\n".join(lines) + "\n"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source-dir", type=Path, required=True)
    ap.add_argument("--build-dir", type=Path, required=True, help="the zkynet build tree to install and test")
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--generator", default="Ninja")
    ap.add_argument("--mpiexec", default="", help="for blocks using distributed/ (empty: they are skipped)")
    ap.add_argument("--sanitize", action="store_true", help="instrument the blocks like the libraries")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120, help="seconds per block program")
    args = ap.parse_args()

    started = time.monotonic()
    blocks = doc_blocks.all_blocks(args.source_dir)
    problems = doc_blocks.tag_problems(blocks)
    cpp = [b for b in blocks if b.lang == "cpp"]
    skipped = [b for b in cpp if b.is_distributed() and not args.mpiexec]
    cpp = [b for b in cpp if b not in skipped]

    work = args.work_dir.resolve()  # programs run in directories of their own
    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    for b in cpp:
        try:
            write_if_changed(src / f"{target_name(b)}.cpp", doc_blocks.cpp_source(b))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        print("README code blocks that break the conventions (tests/docs/README.md):\n  " + "\n  ".join(problems))
        return 1
    write_if_changed(src / "CMakeLists.txt", project(cpp, args.sanitize))

    r = run([args.cmake, "--install", str(args.build_dir), "--prefix", str(work / "prefix")])
    if r.returncode != 0:
        print(r.stdout + "\ninstalling zkynet failed")
        return 1
    r = run([args.cmake, "-S", str(src), "-B", str(work / "build"), "-G", args.generator,
             "-DCMAKE_BUILD_TYPE=Debug", f"-DCMAKE_PREFIX_PATH={work / 'prefix'}"])
    if r.returncode != 0:
        print(r.stdout + "\nconfiguring the README blocks' project failed")
        return 1
    r = run([args.cmake, "--build", str(work / "build"), "-j", str(args.jobs), "--", "-k", "0"]
            if args.generator == "Ninja" else [args.cmake, "--build", str(work / "build"), "-j", str(args.jobs)])
    if r.returncode != 0:
        # Messages point at README lines (#line); list which blocks did not compile.
        print(r.stdout)
        names = set(re.findall(r"^FAILED: .*?CMakeFiles/(\w+)\.dir", r.stdout, re.MULTILINE))
        failed = [b.where() for b in cpp if target_name(b) in names] or ["(see the output)"]
        print("README blocks that do not compile: " + ", ".join(failed))
        return 1
    built = time.monotonic()

    failures = []
    for b in cpp:
        name = target_name(b)
        rundir = work / "run" / name
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        cmd = [str(work / "build" / name)]
        if b.is_distributed():
            cmd = [args.mpiexec, "-n", "2"] + cmd
        t0 = time.monotonic()
        try:
            r = run(cmd, cwd=rundir, timeout=args.timeout)
            missing = doc_blocks.missing_output(b, r.stdout)
            ok, out = r.returncode == 0 and not missing, r.stdout
            status = f"exit {r.returncode}" + "".join(f"; did not print '{m}'" for m in missing)
        except subprocess.TimeoutExpired as e:
            ok, out, status = False, (e.stdout or ""), f"timed out after {args.timeout:.0f} s"
            out = out.decode() if isinstance(out, bytes) else out
        print(f"{'ok  ' if ok else 'FAIL'} {b.where():28} {time.monotonic() - t0:6.2f} s  {' '.join(cmd[:-1] + [name])}")
        if not ok:
            failures.append(f"{b.where()} ({status}); its output:\n{out[-4000:]}")
    for b in skipped:
        print(f"skip {b.where():28} (distributed/ not built)")
    print(f"{len(cpp)} C++ blocks: built in {built - started:.1f} s, ran in {time.monotonic() - built:.1f} s")
    if failures:
        print("\nREADME blocks that fail when run:\n" + "\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
