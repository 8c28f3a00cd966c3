"""What the conformance tests share whichever venue's SDK they hold an adapter to: finding an
SDK installed from npm at its pinned version, running node scripts on it, passing integers to
and from JavaScript without a float, comparing ABI entries, and the terminal summary.

scripts/bootstrap installs every SDK at the version scripts/toolchain/package.json pins into
.tools/node/node_modules. A venue's module (gmx_sdk.py, gains_sdk.py) names its package and
keeps what is particular to it: its node scripts, which ABIs and addresses it compares.
Integers cross between Python and node as strings ending in "n" (`"123n"`), so that nothing
passes through a float on our side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "HERE",
    "NODE_MODULES",
    "NODE_TIMEOUT",
    "ROOT",
    "SUMMARY",
    "AbiItem",
    "JsNumber",
    "Sdk",
    "canonical",
    "canonical_components",
    "components_text",
    "find_sdk",
    "first_difference",
    "from_js",
    "pinned_version",
    "require_sdk",
    "run_node",
    "run_script",
    "signature",
    "struct_name",
    "structs_in",
    "summary",
    "to_js",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE_MODULES = ROOT / ".tools" / "node" / "node_modules"
NODE_TIMEOUT = 300.0

SUMMARY: dict[str, dict[str, list[str]]] = {}
"""What the tests measured, for the terminal summary (tests/conformance/conftest.py): section
(one per SDK, e.g. "GMX SDK conformance") -> title -> lines. A venue module binds its section
with `summary()`."""


def summary(section: str) -> dict[str, list[str]]:
    """The summary lines of `section` (title -> lines), created empty on first use."""
    return SUMMARY.setdefault(section, {})


# --- locating and running an SDK -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sdk:
    """An installed SDK: its npm package, the node binary, the node_modules folder holding it,
    its installed version."""

    package: str
    node: str
    node_modules: Path
    version: str


def pinned_version(package: str) -> str:
    """The version of `package` that scripts/toolchain/package.json pins."""
    manifest = json.loads((ROOT / "scripts" / "toolchain" / "package.json").read_text())
    version: str = manifest["dependencies"][package]
    return version


def find_sdk(package: str, node_modules: Path | None = None) -> Sdk | str:
    """The installed `package` (in `node_modules`, by default the one scripts/bootstrap fills),
    or why there is none."""
    node_modules = NODE_MODULES if node_modules is None else node_modules
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH"
    manifest = node_modules / package / "package.json"
    if not manifest.is_file():
        return f"{package} is not installed ({manifest} is missing): run scripts/bootstrap"
    version = str(json.loads(manifest.read_text())["version"])
    return Sdk(package, node, node_modules, version)


def require_sdk(package: str, label: str) -> Sdk:
    """The installed `package` at the pinned version (`label` names it in messages, e.g. "GMX
    SDK"). Without one the test is skipped, unless the CI environment variable is set: CI runs
    scripts/bootstrap, which installs it, so there a missing SDK fails the test. An installed
    SDK at another version always fails it."""
    found = find_sdk(package)
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the {label} is unavailable: {found}")
        pytest.skip(f"{label} unavailable: {found}")
    pinned = pinned_version(package)
    if found.version != pinned:
        pytest.fail(
            f"{package} {found.version} is installed, scripts/toolchain/package.json pins "
            f"{pinned}: run scripts/bootstrap"
        )
    return found


def run_node(sdk: Sdk, script: str, *args: str) -> str:
    """Runs tests/conformance/`script` under node as `node script NODE_MODULES args...` and
    returns its stdout; RuntimeError with its stderr when it fails."""
    command = [sdk.node, str(HERE / script), str(sdk.node_modules), *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr.strip()}"
        )
    return done.stdout


def run_script(sdk: Sdk, script: str, payload: Mapping[str, Any]) -> Any:
    """One run of a batch script (`node script NODE_MODULES IN.json OUT.json`): `payload` goes
    in through `to_js`, the answer comes back through `from_js`."""
    with tempfile.TemporaryDirectory(prefix="sdk-conformance-") as tmp:
        source, target = Path(tmp) / "in.json", Path(tmp) / "out.json"
        source.write_text(json.dumps(to_js(payload)))
        run_node(sdk, script, str(source), str(target))
        return from_js(json.loads(target.read_text()))


class JsNumber(int):
    """An int that crosses to node as a JavaScript number (e.g. a token's decimals), not a
    BigInt; it must be a safe integer."""

    def __new__(cls, value: int) -> JsNumber:
        if abs(value) > 2**53 - 1:
            raise ValueError(f"{value} is not a safe JavaScript integer")
        return super().__new__(cls, value)


def to_js(value: Any) -> Any:
    """`value` with every int (not bool or JsNumber) as the "123n" string the node scripts
    read as a BigInt. Floats are refused: nothing here may pass through one."""
    if value is None or isinstance(value, bool | str | JsNumber):
        return int(value) if isinstance(value, JsNumber) else value
    if isinstance(value, int):
        return f"{value}n"
    if isinstance(value, Mapping):
        return {str(k): to_js(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [to_js(v) for v in value]
    raise TypeError(f"cannot pass {type(value).__name__} to the SDK")


def from_js(value: Any) -> Any:
    """A node script's output with every "123n" string back as an int."""
    if isinstance(value, str) and value.endswith("n") and value[:-1].lstrip("-").isdigit():
        return int(value[:-1])
    if isinstance(value, dict):
        return {k: from_js(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_js(v) for v in value]
    return value


# --- ABI entries ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbiItem:
    """One function, event or error of an adapter ABI fragment (`contract`: the fragment's name)."""

    contract: str
    kind: str
    name: str
    entry: Mapping[str, Any]

    @property
    def id(self) -> str:
        return f"{self.contract}.{self.kind}.{self.name}"


def _param(p: Mapping[str, Any], *, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.get("name", ""), "type": p["type"]}
    if top and "indexed" in p:
        out["indexed"] = bool(p["indexed"])
    if "components" in p:
        out["struct"] = struct_name(p)
        out["components"] = [_param(c, top=False) for c in p["components"]]
    return out


def canonical(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What is compared of an ABI entry: kind, name, every input and output with its name and
    type, tuple components (their names, types and struct name, recursively), the indexed flag
    of event inputs, a function's state mutability and an event's anonymous flag."""
    out: dict[str, Any] = {
        "type": entry["type"],
        "name": entry.get("name", ""),
        "inputs": [_param(p, top=True) for p in entry.get("inputs", [])],
    }
    if entry["type"] == "function":
        out["outputs"] = [_param(p, top=True) for p in entry.get("outputs", [])]
        out["stateMutability"] = entry.get("stateMutability")
    if entry["type"] == "event":
        out["anonymous"] = bool(entry.get("anonymous", False))
    return out


def first_difference(ours: Any, theirs: Any, path: str = "") -> str:
    """Where two canonical ABI values first differ, e.g. "inputs[0].components[3].type"."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                return first_difference(ours.get(key), theirs.get(key), f"{path}.{key}")
    if isinstance(ours, list) and isinstance(theirs, list):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            if a != b:
                return first_difference(a, b, f"{path}[{i}]")
        if len(ours) != len(theirs):
            return f"{path}: {len(ours)} entries here, {len(theirs)} in the SDK"
    return f"{path.lstrip('.')}: {ours!r} here, {theirs!r} in the SDK"


def canonical_components(p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What is compared of a struct: its components' names, types and nested structs."""
    return [_param(c, top=False) for c in p["components"]]


def _type(p: Mapping[str, Any], *, top: bool) -> str:
    kind = str(p["type"])
    if kind.startswith("tuple"):
        inner = ", ".join(_type(c, top=False) for c in p["components"])
        kind = f"{struct_name(p) or 'tuple'}({inner}){kind.removeprefix('tuple')}"
    if top and p.get("indexed"):
        kind += " indexed"
    name = p.get("name")
    return f"{kind} {name}" if name else kind


def signature(entry: Mapping[str, Any]) -> str:
    """A readable one-line signature with names, struct names and components."""
    inputs = ", ".join(_type(p, top=True) for p in entry.get("inputs", []))
    text = f"{entry['type']} {entry.get('name', '')}({inputs})"
    if entry["type"] == "function":
        outputs = ", ".join(_type(p, top=True) for p in entry.get("outputs", []))
        text += f" {entry.get('stateMutability')} returns ({outputs})"
    if entry.get("anonymous"):
        text += " anonymous"
    return text


def components_text(p: Mapping[str, Any]) -> str:
    """A struct parameter's components as text: "(uint256 min, uint256 max)"."""
    return "(" + ", ".join(_type(c, top=False) for c in p["components"]) + ")"


def struct_name(p: Mapping[str, Any]) -> str:
    """A tuple's struct name from its internalType ("struct Position.Props[]" -> "Position.Props");
    "" when the ABI does not say."""
    internal = str(p.get("internalType", ""))
    if not internal.startswith("struct "):
        return ""
    return internal.removeprefix("struct ").split("[", 1)[0]


def structs_in(entries: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(struct name, tuple parameter) for every struct-typed parameter, nested ones included."""

    def walk(params: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for p in params:
            if "components" in p:
                name = struct_name(p)
                if name:
                    yield name, p
                yield from walk(p["components"])

    for e in entries:
        yield from walk([*e.get("inputs", []), *e.get("outputs", [])])
