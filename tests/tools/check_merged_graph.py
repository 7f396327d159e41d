#!/usr/bin/python3
"""CTest tools:merge_rank_graphs: runs examples/distributed/ring_graph under mpiexec, merges the
ranks' graphs with tools/merge_rank_graphs.py and checks the merged picture: one cluster per
rank, the ring's Send -> Recv edges, the collectives' links. With --pipeline, the same for
examples/distributed/digits_pipeline on two ranks: each stage one call without inputs, its
micro-batches drawn in order, the parameters by their paths in the Sequential. Then the tool on
small hand-written graphs (mixed blocking / non-blocking messages, another communicator, ranks
from file names, the layout attributes it carries over) and its error messages.

usage: check_merged_graph.py --mpiexec MPIEXEC --example RING_GRAPH --tool MERGE_TOOL
                             --work-dir DIR [--ranks 3] [--pipeline DIGITS_PIPELINE]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

NODE = re.compile(r'^\s*(\S+) \[label="((?:[^"\\]|\\.)*)"')
EDGE = re.compile(r"^\s*(\S+) -> (\S+)(?: \[(.*)\])?;$")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(cmd, expect_ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if expect_ok and p.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def read_merged(path):
    """-> clusters, {node: first label line}, [(from, to, attrs)]."""
    with open(path) as f:
        text = f.read()
    clusters = re.findall(r"subgraph cluster_rank(\d+) \{", text)
    labels, edges = {}, []
    for line in text.splitlines():
        m = NODE.match(line)
        if m:
            labels[m.group(1)] = m.group(2).split("\\n")[0]
            continue
        m = EDGE.match(line)
        if m:
            edges.append((m.group(1), m.group(2), m.group(3) or ""))
    return clusters, labels, edges


def rank_of(node):
    m = re.match(r"r(\d+)_", node)
    return int(m.group(1)) if m else None


def message_edges(labels, edges):
    """The cross-rank message edges, as (sender rank, sender label, receiver rank, receiver label)."""
    out = []
    for a, b, attrs in edges:
        ra, rb = rank_of(a), rank_of(b)
        if ra is not None and rb is not None and ra != rb:
            out.append((ra, labels.get(a), rb, labels.get(b)))
    return out


def collective_links(labels, edges):
    """{collective node: sorted [(rank, label of the rank's node)]}."""
    links = {}
    for a, b, _ in edges:
        if rank_of(b) is None and rank_of(a) is not None:
            links.setdefault(b, []).append((rank_of(a), labels.get(a)))
    return {k: sorted(v) for k, v in links.items()}


def ring(args, work):
    graphs = os.path.join(work, "graphs")
    p = run([args.mpiexec, "-n", str(args.ranks), args.example, graphs])
    check(f"wrote {args.ranks} graphs" in p.stdout, f"ring_graph's rank 0 says where the files are: {p.stdout.strip()!r}")
    files = [os.path.join(graphs, f"rank{r}.dot") for r in range(args.ranks)]
    for f in files:
        check(os.path.isfile(f), f"{f} written")
    merged = os.path.join(work, "merged.dot")
    # Reversed on purpose: the ranks come from the file names.
    p = run([sys.executable, args.tool, *reversed(files), "-o", merged])
    print(p.stdout.strip())
    clusters, labels, edges = read_merged(merged)
    n = args.ranks
    check(sorted(map(int, clusters)) == list(range(n)), f"{n} rank clusters: {clusters}")
    got = sorted(message_edges(labels, edges))
    want = sorted((r, f"ISend to {(r + 1) % n} tag 0 #0 @world", (r + 1) % n, f"Recv from {r} tag 0 #0 @world")
                  for r in range(n))
    check(got == want, f"{n} ring messages ISend -> Recv: {got}")
    links = collective_links(labels, edges)
    want = {f"{what} @world": [(r, f"{what} @world") for r in range(n)]
            for what in ("Bcast from 0 #0", "Allreduce SUM #1")}
    check(sorted(links.values()) == sorted(want.values()), f"2 collectives linked on every rank: {links}")
    check(f"{n} point-to-point messages, 2 collectives" in p.stdout, "the tool's summary")
    if shutil.which("dot"):
        p = run(["dot", "-Tsvg", "-o", os.devnull, merged])
        check(p.returncode == 0, "Graphviz reads the merged file")


def drawn_clusters(path):
    """{rank cluster label: [labels of the clusters inside it, top to bottom]}, from Graphviz."""
    p = run(["dot", "-Tjson", path])
    objects = json.loads(p.stdout).get("objects", [])
    boxes = []
    for o in objects:
        if "bb" in o:
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
            boxes.append((o.get("label", ""), x0, y0, x1, y1))
    out = {}
    for label, x0, y0, x1, y1 in boxes:
        if not label.startswith("rank "):
            continue
        inside = [(b[4], b[0]) for b in boxes
                  if b[0] != label and b[1] >= x0 and b[3] <= x1 and b[2] >= y0 and b[4] <= y1]
        out[label] = [name for _, name in sorted(inside, reverse=True)]  # Graphviz's y grows upwards
    return out


def pipeline(args, work):
    graphs = os.path.join(work, "pipeline")
    env = dict(os.environ, ZKYNET_DIST_WAIT="sleep")
    p = subprocess.run([args.mpiexec, "-n", "2", args.pipeline, graphs], capture_output=True, text=True,
                       timeout=120, env=env)
    if p.returncode != 0:
        sys.exit(f"FAILED: digits_pipeline exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    merged = os.path.join(work, "pipeline_merged.dot")
    run([sys.executable, args.tool, os.path.join(graphs, "pipeline_rank0.dot"),
         os.path.join(graphs, "pipeline_rank1.dot"), "-o", merged])
    with open(merged) as f:
        text = f.read()
    _, labels, edges = read_merged(merged)
    check("unused" not in text and "Lambda" not in text, "no dangling 'unused' input, no anonymous Lambda cluster")
    check('label="stage 0 (Pipeline) #0"' in text and 'label="stage 1 (Pipeline) #0"' in text,
          "each stage is one call, labelled")
    firsts = set(labels.values())
    check({"0.weight", "0.bias", "2.weight", "2.bias"} <= firsts,
          f"parameters labelled by their paths in the Sequential: {sorted(f for f in firsts if '.' in f)}")
    check(len(message_edges(labels, edges)) == 4, "4 micro-batches' activations sent from stage 0 to stage 1")
    check("mclimit=" in text and "ordering=out;" in text, "the merged graph keeps the ranks' declared order")
    if not shutil.which("dot"):
        print("skip the drawn order: Graphviz's dot is not installed")
        return
    micro = [f"micro-batch {m} (MicroBatch)" for m in range(4)]
    for rank, inside in sorted(drawn_clusters(merged).items()):
        drawn = [c.split(" #")[0] for c in inside if c.startswith("micro-batch")]
        check(drawn == micro, f"{rank}: micro-batches drawn top to bottom in order: {drawn}")


def rank_dot(title, labels):
    nodes = "".join(f'  n{i} [label="{text}\\n(2)", shape=box];\n' for i, text in enumerate(labels))
    chain = "".join(f"  n{i} -> n{i + 1};\n" for i in range(len(labels) - 1))
    return f'digraph "{title}" {{\n  rankdir=LR;\n  subgraph cluster_0 {{\n  label="M";\n{nodes}  }}\n{chain}}}\n'


def synthetic(args, work):
    split = "@world/split(color 0)"
    r0 = ["Send to 1 tag 3 #0 @world", "ISend to 1 tag 3 #1 @world", f"Allreduce MAX #0 {split}",
          f"Send to 1 tag 0 #0 {split}", "Gather to 0 #0 @world"]
    r1 = ["Recv from 0 tag 3 #1 @world", "IRecv from 0 tag 3 #0 @world", f"Allreduce MAX #0 {split}",
          f"Recv from 0 tag 0 #0 {split}", "Send to 0 tag 9 #0 @world"]
    a, b = os.path.join(work, "first.dot"), os.path.join(work, "second.dot")
    with open(a, "w") as f:
        f.write(rank_dot("step", r0))
    with open(b, "w") as f:
        f.write(rank_dot("step", r1))
    merged = os.path.join(work, "synthetic.dot")
    p = run([sys.executable, args.tool, a, b, "-o", merged])
    clusters, labels, edges = read_merged(merged)
    check(sorted(clusters) == ["0", "1"], "ranks from the positions when the names have none")
    got = sorted(message_edges(labels, edges))
    want = sorted([(0, r0[0], 1, r1[1]), (0, r0[1], 1, r1[0])])
    check(got == want, f"messages matched by sequence number, Send -> IRecv and ISend -> Recv: {got}")
    links = collective_links(labels, edges)
    check(list(links.values()) == [[(0, r0[2]), (1, r1[2])]],
          f"a collective on another communicator linked by its text; a one-rank one not: {links}")
    check("no matching receive" in p.stderr and "another communicator" in p.stderr,
          f"unmatched and non-world messages reported: {p.stderr.strip()!r}")

    # Layout attributes to_dot sets to keep repeated calls in order carry over to the merged graph.
    ordered = os.path.join(work, "ordered.dot")
    with open(ordered, "w") as f:
        f.write(rank_dot("step", r1).replace("  rankdir=LR;\n", "  rankdir=LR;\n  mclimit=0.05;\n  ordering=out;\n"))
    run([sys.executable, args.tool, a, ordered, "-o", merged])
    with open(merged) as f:
        text = f.read()
    check("  mclimit=0.05;\n" in text and "  ordering=out;\n" in text,
          "a rank graph's mclimit and ordering are the merged graph's")

    # Errors: a missing file, a file that is not DOT, a truncated one.
    p = run([sys.executable, args.tool, a, os.path.join(work, "missing.dot"), "-o", merged], expect_ok=False)
    check(p.returncode != 0 and "missing.dot: no such file" in p.stderr and "Traceback" not in p.stderr,
          f"missing file: {p.stderr.strip()!r}")
    bad = os.path.join(work, "bad.dot")
    with open(bad, "w") as f:
        f.write("hello world\n")
    p = run([sys.executable, args.tool, bad, "-o", merged], expect_ok=False)
    check(p.returncode != 0 and "bad.dot:1: expected 'digraph'" in p.stderr and "Traceback" not in p.stderr,
          f"not DOT: {p.stderr.strip()!r}")
    with open(bad, "w") as f:
        f.write(rank_dot("step", r0)[:-3])
    p = run([sys.executable, args.tool, bad, "-o", merged], expect_ok=False)
    check(p.returncode != 0 and "expected" in p.stderr and "the end of the file" in p.stderr and "Traceback" not in p.stderr,
          f"truncated DOT: {p.stderr.strip()!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--example", required=True, help="the ring_graph executable")
    ap.add_argument("--tool", required=True, help="tools/merge_rank_graphs.py")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--pipeline", help="the digits_pipeline executable (optional)")
    args = ap.parse_args()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(args.work_dir)
    ring(args, args.work_dir)
    if args.pipeline:
        pipeline(args, args.work_dir)
    synthetic(args, args.work_dir)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all checks passed")


if __name__ == "__main__":
    main()
