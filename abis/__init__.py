"""ABI and bytecode of the contracts the keeper talks to, shipped with the package.

The reference exchange's files are generated from contracts/ by scripts/export_abis.py; a test
fails when they differ from a fresh build, so the Python side never needs forge at run time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any


class AbiNotFoundError(LookupError):
    """No ABI file of that name ships with the package."""


@cache
def _load(name: str) -> dict[str, Any]:
    path = resources.files(__package__).joinpath(f"{name}.json")
    if not path.is_file():
        raise AbiNotFoundError(f"no ABI named {name!r} in abis")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def abi(name: str) -> list[dict[str, Any]]:
    """The ABI of contract `name` (e.g. "PerpExchange")."""
    entries: list[dict[str, Any]] = _load(name)["abi"]
    return entries


def bytecode(name: str) -> str:
    """The creation bytecode of contract `name`, 0x-prefixed; empty for interfaces."""
    code: str = _load(name).get("bytecode", "")
    return code


def abi_type(item: Mapping[str, Any]) -> str:
    """The canonical type of an ABI input or output, tuples spelled out (for signatures)."""
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in item.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind
