"""The fenced code blocks of zkynet's READMEs (README.md and every folder's README*.md).

Shared by run_cpp_blocks.py (ctest docs:cpp_blocks) and tests/python/test_documented_examples.py;
the conventions they enforce are in tests/docs/README.md.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

RUN = {"cpp", "python"}                              # compiled and run / run as scripts
SHOWN = {"sh", "bash", "console", "cmake", "text"}   # shown only: commands, build snippets, layouts
MAIN_MARKER = "// inside main():"                    # splits a C++ fragment: file scope above, main() below
PRINTS = {"cpp": "// prints:", "python": "# prints:"}  # a line the program's output must contain

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_SKIP_DIRS = {"shared", "node_modules", "third_party"}


@dataclass(frozen=True)
class Block:
    path: str   # the README, relative to the repository root
    line: int   # 1-based line of the opening fence; the code starts on the next line
    lang: str   # the fence's tag ("" when untagged)
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def is_distributed(self) -> bool:
        if self.lang == "cpp":
            return "#include <zkynet/distributed" in self.text
        return re.search(r"^\s*(from zkynet import distributed|import zkynet\.distributed)", self.text,
                         re.MULTILINE) is not None


    def expected_output(self) -> list[str]:
        """The texts of the block's `// prints: TEXT` (`# prints: TEXT`) comment lines."""
        marker = PRINTS.get(self.lang)
        if marker is None:
            return []
        return [l.strip()[len(marker):].strip() for l in self.text.splitlines() if l.strip().startswith(marker)]


def missing_output(block: Block, output: str) -> list[str]:
    return [text for text in block.expected_output() if text not in output]


def readmes(root: Path) -> list[Path]:
    """README*.md files under root, skipping hidden folders, build trees and shared/."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs
                         if not d.startswith((".", "build")) and d not in _SKIP_DIRS
                         and not (Path(folder) / d / "CMakeCache.txt").exists())
        found += [Path(folder) / f for f in sorted(files) if f.startswith("README") and f.endswith(".md")]
    return found


def blocks(readme: Path, root: Path) -> list[Block]:
    rel = readme.relative_to(root).as_posix()
    lines = readme.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{rel}:{start + 1}: a ``` block that is never closed")
        out.append(Block(rel, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def all_blocks(root: Path) -> list[Block]:
    return [b for r in readmes(root) for b in blocks(r, root)]


def tag_problems(all_: list[Block]) -> list[str]:
    return [f"{b.where()}: block tagged '{b.lang or '(none)'}'; tag it cpp or python (run by the tests) "
            f"or one of {', '.join(sorted(SHOWN))} (shown only)" for b in all_ if b.lang not in RUN | SHOWN]


def cpp_source(block: Block) -> str:
    """The translation unit for a ```cpp block: a whole program as it is, or a fragment whose
    lines below MAIN_MARKER become the body of main(). #line keeps compiler messages on the
    README's own lines."""
    lines = block.text.splitlines()
    markers = [k for k, l in enumerate(lines) if l.strip() == MAIN_MARKER]
    if len(markers) > 1:
        raise ValueError(f"{block.where()}: more than one '{MAIN_MARKER}' line")
    if markers:
        lines[markers[0]] = "int main() {  " + MAIN_MARKER   # same line count: #line stays exact
        lines.append("}")
    elif not re.search(r"\bint\s+main\s*\(", block.text):
        raise ValueError(f"{block.where()}: a ```cpp block is a whole program (with main) or a fragment "
                         f"with a '{MAIN_MARKER}' line (see tests/docs/README.md)")
    return f'#line {block.line + 1} "{block.path}"\n' + "\n".join(lines) + "\n"
