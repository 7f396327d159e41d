"""The typed package: py.typed, and stubs for the compiled extension generated at build time
(tools/gen_stubs.py) that name every function, class, method and property it has."""
import ast
import re
import os
import types

import zkynet
from zkynet import _zkynet

PACKAGE = os.path.dirname(zkynet.__file__)
STUBS = os.path.join(PACKAGE, "_zkynet")


def submodules():
    return {name: m for name, m in vars(_zkynet).items() if isinstance(m, types.ModuleType)
            and m.__name__.startswith("zkynet._zkynet.")}


def stub(name):
    with open(os.path.join(STUBS, name + ".pyi")) as f:
        return ast.parse(f.read())


def defined(tree):
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets})
    return names


def test_the_package_says_it_is_typed():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))


def test_every_extension_module_has_a_stub_that_parses():
    for name in list(submodules()) + ["__init__"]:
        stub(name)


def test_the_stubs_name_every_public_function_class_method_and_property():
    missing = []
    for name, module in submodules().items():
        names = defined(stub(name))
        for attr, value in vars(module).items():
            if attr.startswith("_") or isinstance(value, types.ModuleType):
                continue
            if attr not in names:
                missing.append(f"{name}.{attr}")
            elif isinstance(value, type) and value.__module__ == module.__name__:
                body = names[attr].body
                members = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
                members |= {n.target.id for n in body if isinstance(n, ast.AnnAssign)}
                missing += [f"{name}.{attr}.{m}" for m in vars(value)
                            if not m.startswith("_") and m not in members]
    assert not missing, missing


def test_a_stub_keeps_argument_names_and_types():
    add = defined(stub("ops"))["add"]
    assert [a.arg for a in add.args.args] == ["a", "b"]
    assert ast.unparse(add.returns) == "framework.Node"


def test_every_public_class_of_the_extension_has_a_docstring():
    undocumented = [f"{m.__name__}.{n}" for m in [_zkynet, *submodules().values()]
                    for n, v in vars(m).items()
                    if isinstance(v, type) and not n.startswith("_") and v.__module__ == m.__name__
                    and not (v.__doc__ or "").strip()]
    assert not undocumented, undocumented


def test_zkynet_op_is_zkynet_framework_op():
    import zkynet.op
    from zkynet.framework import op
    assert zkynet.op is op
    assert all(callable(getattr(op, name)) for name in op.__all__)


def test_every_public_function_of_the_extension_says_what_it_does():
    signature = re.compile(r"^(\d+\. )?\w+\(.*\)( -> .*)?$")
    silent = []
    for m in [_zkynet, *submodules().values()]:
        for name, value in vars(m).items():
            if name.startswith("_") or isinstance(value, (type, types.ModuleType)) or not callable(value):
                continue
            text = [ln for ln in (value.__doc__ or "").splitlines()
                    if ln.strip() and not signature.match(ln.strip()) and ln.strip() != "Overloaded function."]
            if not text:
                silent.append(f"{m.__name__}.{name}")
    assert not silent, silent
