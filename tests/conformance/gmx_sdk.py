"""The GMX SDK (`@gmx-io/sdk`) as a reference for the GMX adapter: where it is installed, how
its JavaScript is run, and what of its ABIs and contract addresses the adapter is held to.

scripts/bootstrap installs the SDK at the version pinned in scripts/toolchain/package.json into
.tools/node/node_modules. The JavaScript side is two small node scripts next to this module:
gmx_sdk_dump.cjs prints ABIs and addresses, gmx_sdk_math.cjs runs the position math on a batch.
Integers cross between Python and node as strings ending in "n" (`"123n"`), so that nothing
passes through a float.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from keeper.venues.gmx import gmx_abi

__all__ = [
    "ADAPTER_ABI_NAMES",
    "ADDRESS_FIELDS",
    "ERRORS_ABI",
    "HERE",
    "NODE_MODULES",
    "NOT_IN_SDK",
    "ROOT",
    "SDK_ABI_OF",
    "SDK_PACKAGE",
    "SUMMARY",
    "AbiItem",
    "JsNumber",
    "Sdk",
    "SdkDump",
    "adapter_items",
    "canonical",
    "canonical_components",
    "components_text",
    "find_sdk",
    "from_js",
    "load_dump",
    "pinned_version",
    "require_sdk",
    "run_math",
    "signature",
    "struct_name",
    "structs_in",
    "to_js",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE_MODULES = ROOT / ".tools" / "node" / "node_modules"
SDK_PACKAGE = "@gmx-io/sdk"
NODE_TIMEOUT = 300.0

SUMMARY: dict[str, list[str]] = {}
"""Lines the tests record for the terminal summary (tests/conformance/conftest.py), by title."""

SDK_ABI_OF: Mapping[str, str | None] = {
    "DataStore": "DataStore",
    "ERC20": "ERC20",  # viem's erc20Abi, which the SDK re-exports as abis.ERC20
    "EventEmitter": "EventEmitter",
    "ExchangeRouter": "ExchangeRouter",
    "Reader": "SyntheticsReader",  # the SDK's "Reader" is GMX v1's
    "RoleStore": None,
    "Router": "SyntheticsRouter",  # the SDK's "Router" is GMX v1's
    "SubaccountRouter": "SubaccountRouter",
}
"""Each adapter ABI fragment (abis/gmx/<name>.json) -> the SDK ABI it is compared with;
None: the SDK ships no ABI for that contract."""

ERRORS_ABI = "CustomErrors"
"""The SDK's ABI of GMX's Errors library: errors not declared in a contract's own ABI."""

ADDRESS_FIELDS: Mapping[str, str] = {
    "data_store": "DataStore",
    "reader": "SyntheticsReader",
    "exchange_router": "ExchangeRouter",
    "router": "SyntheticsRouter",
    "order_vault": "OrderVault",
    "referral_storage": "ReferralStorage",
    "event_emitter": "EventEmitter",
    "subaccount_router": "SubaccountRouter",
}
"""GmxDeployment address fields -> the SDK's contracts config key for the same contract."""

NOT_IN_SDK: Mapping[str, str] = {
    "role_store": "the SDK neither calls nor lists GMX's RoleStore",
    "multicall": (
        "the adapter batches reads through Multicall3 at its canonical address; the SDK's "
        '"Multicall" is GMX\'s own deployment of Multicall3 at another address'
    ),
}
"""GmxDeployment address fields the SDK's config has no counterpart for, and why."""


# --- locating and running the SDK ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sdk:
    """An installed SDK: the node binary, the node_modules folder holding it, its version."""

    node: str
    node_modules: Path
    version: str


def pinned_version() -> str:
    """The SDK version scripts/toolchain/package.json pins."""
    manifest = json.loads((ROOT / "scripts" / "toolchain" / "package.json").read_text())
    version: str = manifest["dependencies"][SDK_PACKAGE]
    return version


def find_sdk(node_modules: Path | None = None) -> Sdk | str:
    """The installed SDK (in `node_modules`, by default the one scripts/bootstrap fills), or
    why there is none."""
    node_modules = NODE_MODULES if node_modules is None else node_modules
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH"
    manifest = node_modules / SDK_PACKAGE / "package.json"
    if not manifest.is_file():
        return f"{SDK_PACKAGE} is not installed ({manifest} is missing): run scripts/bootstrap"
    version = str(json.loads(manifest.read_text())["version"])
    return Sdk(node, node_modules, version)


def require_sdk() -> Sdk:
    """The installed SDK at the pinned version. Without one the test is skipped, unless the
    CI environment variable is set: CI runs scripts/bootstrap, which installs it, so there a
    missing SDK fails the test. An installed SDK at another version always fails it."""
    found = find_sdk()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the GMX SDK is unavailable: {found}")
        pytest.skip(f"GMX SDK unavailable: {found}")
    pinned = pinned_version()
    if found.version != pinned:
        pytest.fail(
            f"{SDK_PACKAGE} {found.version} is installed, scripts/toolchain/package.json pins "
            f"{pinned}: run scripts/bootstrap"
        )
    return found


def _node(sdk: Sdk, script: str, *args: str) -> str:
    command = [sdk.node, str(HERE / script), str(sdk.node_modules), *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr.strip()}"
        )
    return done.stdout


class JsNumber(int):
    """An int that crosses to node as a JavaScript number (e.g. a token's decimals), not a
    BigInt; it must be a safe integer."""

    def __new__(cls, value: int) -> JsNumber:
        if abs(value) > 2**53 - 1:
            raise ValueError(f"{value} is not a safe JavaScript integer")
        return super().__new__(cls, value)


def to_js(value: Any) -> Any:
    """`value` with every int (not bool or JsNumber) as the "123n" string gmx_sdk_math.cjs
    reads as a BigInt. Floats are refused: nothing here may pass through one."""
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
    """The SDK's output with every "123n" string back as an int."""
    if isinstance(value, str) and value.endswith("n") and value[:-1].lstrip("-").isdigit():
        return int(value[:-1])
    if isinstance(value, dict):
        return {k: from_js(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_js(v) for v in value]
    return value


def run_math(sdk: Sdk, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One gmx_sdk_math.cjs run on `payload` (see that script for its shape)."""
    with tempfile.TemporaryDirectory(prefix="gmx-sdk-") as tmp:
        source, target = Path(tmp) / "in.json", Path(tmp) / "out.json"
        source.write_text(json.dumps(to_js(payload)))
        _node(sdk, "gmx_sdk_math.cjs", str(source), str(target))
        answer: dict[str, Any] = from_js(json.loads(target.read_text()))
    return answer


# --- what the SDK ships --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SdkDump:
    """gmx_sdk_dump.cjs's answer: the ABIs the adapter is compared with, and the config."""

    version: str
    abi_names: tuple[str, ...]
    abis: Mapping[str, list[dict[str, Any]]]
    contracts: Mapping[int, Mapping[str, str]]
    chain_names: Mapping[int, str]
    contracts_chain_ids: tuple[int, ...]
    contracts_chain_ids_dev: tuple[int, ...]
    oracle_keeper_urls: Mapping[int, str]


@cache
def load_dump(sdk: Sdk) -> SdkDump:
    """The SDK's ABIs (those in SDK_ABI_OF and ERRORS_ABI) and contracts config, read once."""
    wanted = sorted({n for n in SDK_ABI_OF.values() if n is not None} | {ERRORS_ABI})
    raw = json.loads(_node(sdk, "gmx_sdk_dump.cjs", *wanted))
    return SdkDump(
        version=str(raw["version"]),
        abi_names=tuple(raw["abiNames"]),
        abis=raw["abis"],
        contracts={int(k): v for k, v in raw["contracts"].items()},
        chain_names={int(k): str(v) for k, v in raw["chainNames"].items()},
        contracts_chain_ids=tuple(int(c) for c in raw["contractsChainIds"]),
        contracts_chain_ids_dev=tuple(int(c) for c in raw["contractsChainIdsDev"]),
        oracle_keeper_urls={int(k): str(v) for k, v in raw["oracleKeeperUrls"].items()},
    )


# --- ABI items -----------------------------------------------------------------------------------


ADAPTER_ABI_NAMES: tuple[str, ...] = tuple(
    sorted(
        p.name.removesuffix(".json")
        for p in resources.files("keeper.abis").joinpath("gmx").iterdir()
        if p.name.endswith(".json")
    )
)
"""The adapter's GMX ABI fragments, by file name (abis/gmx/*.json)."""


@dataclass(frozen=True, slots=True)
class AbiItem:
    """One function, event or error of an adapter ABI fragment."""

    contract: str
    kind: str
    name: str
    entry: Mapping[str, Any]

    @property
    def id(self) -> str:
        return f"{self.contract}.{self.kind}.{self.name}"


def adapter_items() -> list[AbiItem]:
    """Every function, event and error in abis/gmx/*.json."""
    return [
        AbiItem(contract, str(e["type"]), str(e["name"]), e)
        for contract in ADAPTER_ABI_NAMES
        for e in gmx_abi(contract)
        if e.get("type") in ("function", "event", "error")
    ]


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
