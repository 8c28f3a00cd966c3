"""keeper/abis.pyi (what mypy reads) declares exactly the public names of abis/__init__.py (what
runs), with the same signatures."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keeper.abis

ROOT = Path(__file__).resolve().parents[2]


def test_the_stub_matches_the_package() -> None:
    assert Path(keeper.abis.__file__).resolve() == ROOT / "abis" / "__init__.py"
    stub = ast.parse((ROOT / "keeper" / "abis.pyi").read_text())
    declared = {
        node.name: node for node in stub.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
    public = {
        name: value
        for name, value in vars(keeper.abis).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == "keeper.abis"
    }
    assert sorted(declared) == sorted(public)
    for name, node in declared.items():
        if isinstance(node, ast.FunctionDef):
            real = inspect.signature(public[name])
            assert [a.arg for a in node.args.args] == list(real.parameters), name
            assert ast.unparse(node.returns) == real.return_annotation, name  # type: ignore[arg-type]
