"""Every module of byu_motor stays readable: at most 400 lines, no function or method over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import byu_motor

PACKAGE = Path(byu_motor.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path, root: Path = PACKAGE.parent) -> str:
    return path.relative_to(root).as_posix()


def _long_functions(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``module:line name (n lines)`` for each function, method or nested function over the limit."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - start + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{_name(path, root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_the_package_has_modules():
    names = {_name(p) for p in _modules()}
    assert "byu_motor/metric.py" in names and len(names) > 20


def test_no_module_is_over_400_lines():
    long = [
        f"{_name(p)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: " + "; ".join(long)


def test_no_function_is_over_80_lines():
    long = [entry for p in _modules() for entry in _long_functions(p)]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


def test_the_function_check_sees_methods_and_nested_functions(tmp_path):
    body = "\n".join(f"            x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "m.py"
    path.write_text(
        f"class A:\n    def f(self):\n        def g():\n{body}\n        return g\n\n    def h(self):\n        pass\n"
    )
    found = _long_functions(path, root=tmp_path)
    assert [e.split()[1] for e in found] == ["f", "g"], found
    assert found[0].startswith("m.py:2 f (")
