#!/usr/bin/env python3
"""Writes type stubs (.pyi) for zkynet's compiled extension from the signatures pybind11 puts in
its docstrings, so editors and type checkers see every class, method and argument name.

    gen_stubs.py BUILD/python      # writes BUILD/python/zkynet/_zkynet/{__init__,framework,...}.pyi

The build runs it after linking the extension (python/CMakeLists.txt): the stubs always match
the binary. A stub package directory without __init__.py sits beside _zkynet.*.so; Python
imports the extension, type checkers read the stubs.
"""
import inspect
import os
import re
import sys
import types

SIGNATURE = re.compile(r"^(?:\d+\. )?(\w+)\((.*)\)(?: -> (.+))?$")
BUILTIN_TYPES = {"int", "float", "str", "bool", "None", "bytes", "object", "complex", "slice"}
ALIASES = {"handle": "Any", "object": "Any", "args": "Any", "kwargs": "Any", "numpy.ndarray": "Any",
           "capsule": "Any", "function": "Callable[..., Any]", "iterator": "Iterator[Any]",
           "sequence": "Sequence[Any]", "buffer": "Any", "iterable": "Iterable[Any]", "type": "type", "float_": "float",
           "numpy.float64": "float", "datetime.timedelta": "Any", "slice": "slice"}


class Writer:
    def __init__(self, module_name):
        self.module_name = module_name  # e.g. zkynet._zkynet.framework
        self.imports = set()  # sibling stub modules referred to
        self.names = set()    # classes of the extension's top level referred to

    def type_of(self, text):
        """A pybind11 type string as a stub annotation."""
        text = re.sub(r"\b\w+(?:::\w+)+", "Any", text.strip())  # C++ names pybind11 could not map
        text = re.sub(r"\bList\[", "list[", text)
        text = re.sub(r"\bDict\[", "dict[", text)
        text = re.sub(r"\bTuple\[", "tuple[", text)
        text = re.sub(r"\bSet\[", "set[", text)
        text = re.sub(r"\bCallable\[", "Callable[", text)

        def name(match):
            word = match.group(0)
            generic = match.end() < len(match.string) and match.string[match.end()] == "["
            if word in ("list", "dict", "tuple", "set") and not generic:
                return {"list": "list[Any]", "dict": "dict[Any, Any]", "tuple": "tuple[Any, ...]",
                        "set": "set[Any]"}[word]
            if word in ALIASES:
                return ALIASES[word]
            if word in BUILTIN_TYPES or word in {"list", "dict", "tuple", "set", "Callable", "Optional", "Union",
                                                 "Any", "Iterator", "Iterable", "Sequence"}:
                return word
            if word.startswith("zkynet._zkynet."):
                owner, _, cls = word.rpartition(".")
                if owner == self.module_name:
                    return f'"{cls}"'
                if owner == "zkynet._zkynet":  # a class of the extension's top level
                    self.names.add(cls)
                    return cls
                sub = owner[len("zkynet._zkynet."):]
                if "." in sub:
                    return "Any"
                self.imports.add(sub)
                return f"{sub}.{cls}"
            return "Any"

        return re.sub(r"[A-Za-z_][\w.]*", name, text)

    def parameters(self, text, method):
        params, depth, current = [], 0, ""
        for ch in text:
            if ch in "[(":
                depth += 1
            elif ch in "])":
                depth -= 1
            if ch == "," and depth == 0:
                params.append(current)
                current = ""
            else:
                current += ch
        if current.strip():
            params.append(current)
        out = []
        for i, p in enumerate(params):
            p = p.strip()
            if p in ("*", "/"):
                out.append(p)
                continue
            star = ""
            if p.startswith("**"):
                star, p = "**", p[2:]
            elif p.startswith("*"):
                star, p = "*", p[1:]
            name, _, rest = p.partition(":")
            annotation, has_default, _ = rest.partition("=")
            name = name.strip()
            if method and i == 0 and name == "self":
                out.append("self")
                continue
            if not name.isidentifier():
                name = f"arg{i}"
            typ = self.type_of(annotation) if annotation.strip() else "Any"
            out.append(f"{star}{name}: {typ}" + (" = ..." if has_default else ""))
        return ", ".join(out)

    def signatures(self, obj, name):
        """[(params, returns)] from a pybind11 docstring's signature lines."""
        doc = getattr(obj, "__doc__", None) or ""
        found = []
        for line in doc.splitlines():
            m = SIGNATURE.match(line.strip())
            if m and m.group(1) == name:
                found.append((m.group(2), m.group(3) or "None"))
        # "Overloaded function." docs open with a catch-all (*args, **kwargs) line: the numbered ones say more.
        specific = [f for f in found if "*args" not in f[0]]
        return specific or found

    def summary(self, obj):
        doc = getattr(obj, "__doc__", None) or ""
        lines = [ln for ln in doc.splitlines() if ln.strip() and not SIGNATURE.match(ln.strip())
                 and ln.strip() != "Overloaded function."]
        return lines[0].strip().replace('"""', "'''").replace("\\", "\\\\") if lines else ""

    def function(self, obj, name, indent="", method=False, decorators=()):
        sigs = self.signatures(obj, name)
        if not sigs and isinstance(obj, types.FunctionType):  # defined in Python (zkynet's .py files)
            try:
                params = str(inspect.signature(obj))[1:].rpartition(")")[0]
            except (TypeError, ValueError):
                params = None
            if params is not None:
                params = re.sub(r"=[^,]+", "= ...", params)
                return [f"{indent}def {name}({params}) -> Any: ..."]
        if not sigs:
            params = "self, *args: Any, **kwargs: Any" if method else "*args: Any, **kwargs: Any"
            sigs_out = [(params, "Any")]
        else:
            sigs_out = [(self.parameters(p, method), self.type_of(r)) for p, r in sigs]
        lines = []
        doc = self.summary(obj)
        for params, returns in sigs_out:
            for d in decorators:
                lines.append(f"{indent}@{d}")
            if len(sigs_out) > 1:
                lines.append(f"{indent}@overload")
            body = f'\n{indent}    """{doc}"""' if doc and len(sigs_out) == 1 else " ..."
            if body == " ...":
                lines.append(f"{indent}def {name}({params}) -> {returns}: ...")
            else:
                lines.append(f"{indent}def {name}({params}) -> {returns}:{body}")
        return lines

    def klass(self, cls):
        bases = []
        for base in cls.__bases__:
            if base.__module__.startswith("zkynet._zkynet"):
                bases.append(self.type_of(f"{base.__module__}.{base.__name__}").strip('"'))
        lines = [f"class {cls.__name__}({', '.join(bases)}):" if bases else f"class {cls.__name__}:"]
        doc = self.summary(cls)
        if doc:
            lines.append(f'    """{doc}"""')
        members = 0
        for name, attr in sorted(vars(cls).items()):
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                continue
            if name in ("__doc__", "__module__", "__dict__", "__weakref__", "_pybind11_conduit_v1_"):
                continue
            if isinstance(attr, property):
                getter = attr.fget
                ret = "Any"
                doc = getattr(getter, "__doc__", "") or ""
                m = re.search(r"-> (.+)$", doc.splitlines()[0]) if doc else None
                if m:
                    ret = self.type_of(m.group(1))
                lines.append("    @property")
                lines.append(f"    def {name}(self) -> {ret}: ...")
                if attr.fset is not None:
                    lines.append(f"    @{name}.setter")
                    lines.append(f"    def {name}(self, value: Any) -> None: ...")
                members += 1
            elif isinstance(attr, cls):  # an enum's values
                lines.append(f'    {name}: "{cls.__name__}"')
                members += 1
            elif isinstance(attr, staticmethod):
                lines += self.function(attr.__func__, name, "    ", decorators=("staticmethod",))
                members += 1
            elif callable(attr) and type(attr).__name__ in ("instancemethod", "builtin_function_or_method",
                                                             "function", "method_descriptor", "wrapper_descriptor"):
                if name.startswith("__") and not self.signatures(attr, name):
                    continue
                lines += self.function(attr, name, "    ", method=True)
                members += 1
        if members == 0:
            lines.append("    ...")
        return lines

    def module(self, mod):
        body = []
        for name, attr in sorted(vars(mod).items()):
            if name.startswith("__"):
                continue
            if isinstance(attr, type):
                if attr.__module__ == mod.__name__:
                    body += self.klass(attr) + [""]
                else:
                    body.append(f"{name} = {self.type_of(attr.__module__ + '.' + attr.__name__).strip(chr(34))}")
            elif isinstance(attr, types.ModuleType):
                continue
            elif callable(attr):
                body += self.function(attr, name) + [""]
            else:
                body.append(f"{name}: {type(attr).__name__ if type(attr).__name__ in BUILTIN_TYPES else 'Any'}")
        header = [f'"""Type stubs of {mod.__name__}, generated by tools/gen_stubs.py from the binary."""',
                  "from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union, overload", ""]
        own = mod.__name__.rpartition(".")[2]
        wanted = sorted(s for s in self.imports if s != own)
        if mod.__name__ != "zkynet._zkynet":
            wanted += sorted(self.names)
        if wanted:
            header.insert(2, "from . import " + ", ".join(wanted))
        return "\n".join(header + body).rstrip() + "\n"


def main(build_python):
    sys.path.insert(0, build_python)
    import zkynet._zkynet as ext  # noqa: E402

    out_dir = os.path.join(build_python, "zkynet", "_zkynet")
    os.makedirs(out_dir, exist_ok=True)
    submodules = {name: m for name, m in vars(ext).items() if isinstance(m, types.ModuleType)
                  and m.__name__.startswith("zkynet._zkynet.")}
    for name, mod in submodules.items():
        text = Writer(mod.__name__).module(mod)
        with open(os.path.join(out_dir, name + ".pyi"), "w") as f:
            f.write(text)
    top = Writer(ext.__name__).module(ext)
    top = top.replace("from typing import", "from . import " + ", ".join(sorted(submodules)) + "\nfrom typing import", 1)
    with open(os.path.join(out_dir, "__init__.pyi"), "w") as f:
        f.write(top)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
