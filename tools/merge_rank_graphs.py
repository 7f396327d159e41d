#!/usr/bin/python3
"""Merges the per-rank DOT graphs of a distributed zkynet run into one picture.

    merge_rank_graphs.py graphs/rank0.dot graphs/rank1.dot ... -o merged.dot [--png]

Each input is one rank's graph, as zkynet::render_graph / zkynet::to_dot write it. Its rank
is the number in a `rank<N>` in the file name when every file name has a distinct one, else
the file's position in the list. The output draws each rank as a cluster `rank N` (its
module clusters nested inside, node ids prefixed `r<N>_`), and joins the ranks:

  * point to point: each Send / ISend node to the Recv / IRecv node of the same message,
    a bold red edge. Nodes are labelled `Send to 1 tag 0 #2 @world`: the message is
    (sender, receiver, tag, #n, communicator), as MPI matches messages in order. Peers are
    ranks of the communicator, so only `@world` messages are matched;
  * collectives: the nodes with the same label text on several ranks (`Allreduce SUM #3
    @world`: the n-th collective on that communicator) each point to one small shared
    diamond, with dashed green edges. Communicators made by split() are named after their
    color, so two splits with the same color can share a name.

A rank graph's layout attributes that keep repeated calls in order (`mclimit`, `ordering`,
which to_dot sets for a pipeline's micro-batches) are the merged graph's too.

--png also runs Graphviz (`dot -Tpng`) on the output, when it is installed.
Standard library only.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

P2P = re.compile(r"^(I?)(Send to|Recv from) (\d+) tag (\d+) #(\d+) @(.+)$")
COLLECTIVE = re.compile(r"^.+ #\d+ @.+$")
BARE_ID = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
# Whitespace, comments (// /* */, and # lines), quoted strings, edge operators, punctuation, names.
TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|^#[^\n]*|"(?:[^"\\]|\\.)*"|->|--|[{}\[\];,=:]|[^\s{}\[\];,=:"]+',
                   re.S | re.M)


class DotError(Exception):
    pass


# ---- reading: the DOT subset to_dot writes (nodes, edges, attributes, nested subgraphs) -------

def tokenize(text, path):
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise DotError(f"{path}:{line}: cannot read {text[pos:pos + 20]!r}")
        tok = m.group(0)
        if not (tok.isspace() or tok.startswith(("//", "/*", "#"))):
            tokens.append((tok, line))
        line += tok.count("\n")
        pos = m.end()
    return tokens


class Parser:
    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            self.tokens = tokenize(f.read(), path)
        self.i = 0

    def peek(self):
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def fail(self, what):
        line = self.tokens[min(self.i, len(self.tokens) - 1)][1] if self.tokens else 1
        found = "the end of the file" if self.peek() is None else repr(self.peek())
        raise DotError(f"{self.path}:{line}: expected {what}, found {found}")

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            self.fail(repr(expected) if expected else "more")
        self.i += 1
        return tok

    def ident(self):
        tok = self.peek()
        if tok is None or tok in "{}[];,=:" or tok in ("->", "--"):
            self.fail("a name")
        return self.take()

    def graph(self):
        """digraph NAME { ... } -> (name, statements)."""
        if self.peek() == "strict":
            self.take()
        if self.peek() != "digraph":
            self.fail("'digraph' (is this a DOT file from zkynet::to_dot?)")
        self.take()
        name = self.ident() if self.peek() != "{" else '""'
        body = self.block()
        if self.peek() is not None:
            self.fail("nothing after the graph's closing '}'")
        return name, body

    def block(self):
        self.take("{")
        stmts = []
        while self.peek() != "}":
            if self.peek() is None:
                self.fail("'}'")
            stmts.append(self.statement())
            while self.peek() in (";", ","):
                self.take()
        self.take("}")
        return stmts

    def attrs(self):
        out = []
        while self.peek() == "[":
            self.take("[")
            while self.peek() != "]":
                key = self.ident()
                self.take("=")
                out.append((key, self.ident()))
                while self.peek() in (";", ","):
                    self.take()
            self.take("]")
        return out

    def statement(self):
        tok = self.peek()
        if tok == "subgraph" or tok == "{":
            if tok == "subgraph":
                self.take()
            name = self.ident() if self.peek() != "{" else None
            return ("subgraph", name, self.block())
        if tok in ("graph", "node", "edge") and self.i + 1 < len(self.tokens) and self.tokens[self.i + 1][0] == "[":
            self.take()
            return ("default", tok, self.attrs())
        first = self.ident()
        if self.peek() == "=":
            self.take()
            return ("set", first, self.ident())
        ids = [first]
        while self.peek() in ("->", "--"):
            self.take()
            ids.append(self.ident())
        if len(ids) == 1:
            return ("node", first, self.attrs())
        return ("edge", ids, self.attrs())


def unquote(tok):
    """A DOT value as text: quotes removed, \\" and \\\\ undone, \\n \\l \\r turned into newlines."""
    if not tok.startswith('"'):
        return tok
    out, body, i = [], tok[1:-1], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\n" if nxt in "nlr" else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def prefixed(ident, prefix):
    if BARE_ID.match(ident):
        return prefix + ident
    inner = ident[1:-1] if ident.startswith('"') else ident
    return '"' + prefix + inner + '"'


def read_rank_graph(path):
    if not os.path.exists(path):
        raise DotError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise DotError(f"{path}: not a file")
    try:
        return Parser(path).graph()
    except UnicodeDecodeError as e:
        raise DotError(f"{path}: not a text file ({e})")


# ---- writing ---------------------------------------------------------------------------------

def attr_list(attrs):
    return f" [{', '.join(f'{k}={v}' for k, v in attrs)}]" if attrs else ""


def write_statements(out, stmts, prefix, depth, labels):
    """Writes one rank's statements with prefixed ids; records each node's first label line."""
    pad = "  " * depth
    for stmt in stmts:
        kind = stmt[0]
        if kind == "subgraph":
            _, name, body = stmt
            # Clusters stay clusters: their new names must still start with "cluster".
            if name:
                name = prefixed(name, ("cluster_" if unquote(name).startswith("cluster") else "") + prefix)
            out.append(f"{pad}subgraph {name} {{\n")
            write_statements(out, body, prefix, depth + 1, labels)
            out.append(f"{pad}}}\n")
        elif kind == "default":
            out.append(f"{pad}{stmt[1]}{attr_list(stmt[2])};\n")
        elif kind == "set":
            out.append(f"{pad}{stmt[1]}={stmt[2]};\n")
        elif kind == "node":
            _, ident, attrs = stmt
            new_id = prefixed(ident, prefix)
            label = dict(attrs).get("label")
            if label is not None:
                labels.append((new_id, unquote(label).split("\n")[0]))
            out.append(f"{pad}{new_id}{attr_list(attrs)};\n")
        elif kind == "edge":
            _, ids, attrs = stmt
            out.append(f"{pad}{' -> '.join(prefixed(i, prefix) for i in ids)}{attr_list(attrs)};\n")


def rank_of_files(paths):
    found = [re.findall(r"rank(\d+)", os.path.basename(p)) for p in paths]
    ranks = [int(f[-1]) if f else None for f in found]
    if None not in ranks and len(set(ranks)) == len(ranks):
        return ranks
    if any(r is not None for r in ranks):
        print("merge_rank_graphs: the file names do not give distinct ranks (rank<N>); "
              "using their positions in the list", file=sys.stderr)
    return list(range(len(paths)))


def merge(paths, title):
    ranks = rank_of_files(paths)
    graphs = [(rank, path, *read_rank_graph(path)) for rank, path in sorted(zip(ranks, paths))]
    # A rank graph that asks Graphviz to keep its declared order (to_dot's mclimit and
    # ordering, for repeated calls such as a pipeline's micro-batches) gets it for the merged
    # picture too: the links between ranks would otherwise shuffle them.
    mclimits, orderings = [], set()
    for *_, stmts in graphs:
        for s in stmts:
            if s[0] == "set" and s[1] == "mclimit":
                try:
                    mclimits.append(float(unquote(s[2])))
                except ValueError:
                    pass
            elif s[0] == "set" and s[1] == "ordering" and unquote(s[2]) in ("in", "out"):
                orderings.add(unquote(s[2]))
    keep_order = (f"  mclimit={min(mclimits):g};\n" if mclimits else "") + \
        (f"  ordering={orderings.pop()};\n" if len(orderings) == 1 else "")
    out = [f"digraph {quote(title)} {{\n", f"  label={quote(title)};\n  labelloc=t;\n",
           "  rankdir=LR;\n  compound=true;\n" + keep_order + "  node [fontname=\"Helvetica\", fontsize=10];\n"]
    sends, recvs, collectives, other_p2p = {}, {}, {}, []
    for rank, path, name, stmts in graphs:
        # The rank's own graph attributes (title, rankdir) stay out: the cluster gets its label.
        body = [s for s in stmts if s[0] != "set" and not (s[0] == "default" and s[1] == "graph")]
        own_title = unquote(name)
        label = f"rank {rank}" + (f": {own_title}" if own_title and own_title != f"rank {rank}" else "")
        out.append(f"  subgraph cluster_rank{rank} {{\n    label={quote(label)};\n"
                   "    style=\"rounded,filled\"; fillcolor=\"#f7f7f7\"; color=\"#333333\"; penwidth=2;\n")
        labels = []
        write_statements(out, body, f"r{rank}_", 2, labels)
        out.append("  }\n")
        for node, text in labels:
            m = P2P.match(text)
            if m:
                _, verb, peer, tag, seq, comm = m.groups()
                if comm != "world":
                    other_p2p.append((rank, text))
                elif verb == "Send to":
                    sends.setdefault((rank, int(peer), int(tag), int(seq), comm), []).append(node)
                else:
                    recvs.setdefault((int(peer), rank, int(tag), int(seq), comm), []).append(node)
            elif COLLECTIVE.match(text):
                collectives.setdefault(text, []).append((rank, node))

    given = {rank for rank, *_ in graphs}

    def missing(rank):
        return "" if rank in given else f" (rank {rank} is not among the inputs)"

    messages, unmatched = 0, []
    for key, senders in sorted(sends.items()):
        receivers = recvs.pop(key, [])
        for s in senders:
            for r in receivers:
                out.append(f"  {s} -> {r} [color=\"#cc0000\", penwidth=2.5, style=bold, "
                           f"tooltip={quote(f'rank {key[0]} -> rank {key[1]}, tag {key[2]} #{key[3]}')}];\n")
                messages += 1
        if not receivers:
            unmatched.append(f"rank {key[0]}: send to {key[1]} tag {key[2]} #{key[3]} has no matching receive"
                             + missing(key[1]))
    for key in sorted(recvs):
        unmatched.append(f"rank {key[1]}: receive from {key[0]} tag {key[2]} #{key[3]} has no matching send"
                         + missing(key[0]))

    joined = 0
    for k, (text, nodes) in enumerate(sorted(collectives.items())):
        if len({rank for rank, _ in nodes}) < 2:
            continue
        what, where = text.rsplit(" @", 1)
        label = f"{what}\n@{where}"
        out.append(f"  coll{k} [label={quote(label)}, shape=diamond, style=filled, "
                   "fillcolor=\"#d9ead3\", color=\"#38761d\", fontsize=8];\n")
        for _, node in nodes:
            out.append(f"  {node} -> coll{k} [style=dashed, color=\"#38761d\", arrowhead=none];\n")
        joined += 1
    out.append("}\n")
    notes = unmatched + [f"rank {r}: {t}: not matched (peers are ranks of another communicator)"
                         for r, t in other_p2p]
    return "".join(out), {"ranks": len(graphs), "messages": messages, "collectives": joined}, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: merge_rank_graphs.py graphs/rank*.dot -o graphs/merged.dot --png")
    ap.add_argument("inputs", nargs="+", help="one DOT file per rank")
    ap.add_argument("-o", "--output", required=True, help="merged DOT file to write")
    ap.add_argument("--png", action="store_true", help="also render <output without .dot>.png with Graphviz")
    ap.add_argument("--title", default=None, help="title of the merged picture")
    args = ap.parse_args()

    title = args.title or f"{len(args.inputs)} ranks"
    try:
        text, counts, notes = merge(args.inputs, title)
    except (DotError, OSError) as e:
        sys.exit(f"merge_rank_graphs: {e}")
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        sys.exit(f"merge_rank_graphs: cannot write {args.output}: {e}")
    for note in notes:
        print(f"merge_rank_graphs: note: {note}", file=sys.stderr)
    print(f"wrote {args.output}: {counts['ranks']} ranks, {counts['messages']} point-to-point messages, "
          f"{counts['collectives']} collectives")
    if args.png:
        if not shutil.which("dot"):
            print("merge_rank_graphs: Graphviz's dot is not installed; no PNG written", file=sys.stderr)
            return 0
        png = os.path.splitext(args.output)[0] + ".png"
        p = subprocess.run(["dot", "-Tpng", "-o", png, args.output], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"merge_rank_graphs: dot -Tpng failed: {p.stderr.strip()}")
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
