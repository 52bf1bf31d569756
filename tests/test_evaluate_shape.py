"""The evaluation package stays readable: no module over ~400 lines, no function over ~60 (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import txtrayalign.evaluate

PACKAGE = Path(txtrayalign.evaluate.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_where_the_test_looks():
    names = {p.relative_to(PACKAGE).as_posix() for p in modules()}
    assert {"evaluation.py", "inputs.py", "scoring.py", "protocols/__init__.py"} <= names


def test_the_package_docstring_lists_every_module():
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {"protocols"}
    unlisted = sorted(name for name in names if f"`{name}`" not in txtrayalign.evaluate.__doc__)
    assert not unlisted, f"txtrayalign/evaluate/__init__.py does not list {unlisted}"


def test_no_module_is_over_the_limit():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_the_limit():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_protocol_keeps_the_contract():
    import inspect

    from txtrayalign.evaluate.protocols import PROTOCOLS

    names = [protocol.NAME for protocol in PROTOCOLS]
    assert len(set(names)) == len(names)
    for protocol in PROTOCOLS:
        for function, parameters in (("run", ["inputs", "context"]), ("summary_section", ["runs", "k"]),
                                     ("summary_columns", ["result", "method", "k"])):
            assert list(inspect.signature(getattr(protocol, function)).parameters) == parameters, (
                protocol.__name__, function)
        if hasattr(protocol, "figures"):
            assert list(inspect.signature(protocol.figures).parameters) == ["result", "out_dir", "experiment"]
