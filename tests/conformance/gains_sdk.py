"""The Gains Network SDK (`@gainsnetwork/sdk`) as a reference for the Gains adapter
(keeper/venues/gains.py): what of its diamond ABI and its contract addresses the adapter is
held to, which diamond functions and events the adapter's code calls, and its two node
scripts: gains_sdk_dump.cjs prints the ABI and the addresses, gains_sdk_math.cjs runs the
SDK's liquidation price on a batch of trades. Finding the SDK, running node and comparing ABI
entries are tests/conformance/sdk.py's, shared with the other venues' SDKs.
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from keeper.venues import gains
from keeper.venues.gains import gains_abi
from tests.conformance import sdk
from tests.conformance.sdk import AbiItem, Sdk

__all__ = [
    "ADAPTER_ABI_NAMES",
    "ADDRESS_FIELDS",
    "DIAMOND",
    "NOT_IN_SDK",
    "SDK_PACKAGE",
    "SUMMARY",
    "GainsDump",
    "adapter_items",
    "code_uses",
    "load_dump",
    "preset_chain_name",
    "require_sdk",
    "run_math",
]

SDK_PACKAGE = "@gainsnetwork/sdk"
DIAMOND = "GNSMultiCollatDiamond"
"""The one contract of Gains the adapter talks to, by its name in abis/gains and the SDK."""

SUMMARY: dict[str, list[str]] = sdk.summary("Gains SDK conformance")
"""Lines the Gains tests record for the terminal summary (tests/conformance/conftest.py), by
title."""

ADDRESS_FIELDS: Mapping[str, str] = {"diamond": "gnsMultiCollatDiamond"}
"""GainsDeployment address fields -> the key of the same contract in the SDK's addresses.json
(its "global" entry per chain, which getContractAddressesForChain returns)."""

NOT_IN_SDK: Mapping[str, str] = {
    "multicall": (
        "the adapter batches reads through Multicall3 at its canonical address; the SDK's "
        "addresses.json lists only Gains' own contracts (the diamond, and per collateral the "
        "gToken vault and its open-pnl feed)"
    ),
}
"""GainsDeployment address fields the SDK has no counterpart for, and why."""


def require_sdk() -> Sdk:
    """The installed Gains SDK at the pinned version (tests.conformance.sdk.require_sdk: skips
    without one, fails under CI or at another version)."""
    return sdk.require_sdk(SDK_PACKAGE, "Gains SDK")


def run_math(gains_sdk: Sdk, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One gains_sdk_math.cjs run on `payload` (see that script for its shape): one answer per
    case, in order."""
    answer: list[dict[str, Any]] = sdk.run_script(gains_sdk, "gains_sdk_math.cjs", payload)
    return answer


# --- what the SDK ships --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GainsDump:
    """gains_sdk_dump.cjs's answer.

    `addresses` is contracts/addresses.json as shipped, by its own keys (decimal chain ids, and
    "421614-release"); `chain_ids` the SDK's ChainId enum (name -> id); `diamonds` the diamond
    address getContractAddressesForChain resolves for each chain of that enum, `unresolved` the
    SDK's error for those it cannot."""

    version: str
    diamond_abi: list[dict[str, Any]]
    addresses: Mapping[str, Mapping[str, Mapping[str, str]]]
    chain_ids: Mapping[str, int]
    diamonds: Mapping[int, str]
    unresolved: Mapping[int, str]

    def chain_name(self, chain_id: int) -> str | None:
        """The SDK's ChainId name of `chain_id` ("ARBITRUM_SEPOLIA"), None when it has none."""
        return next((n for n, i in self.chain_ids.items() if i == chain_id), None)


@cache
def load_dump(gains_sdk: Sdk) -> GainsDump:
    """The SDK's diamond ABI, addresses and chain ids, read once."""
    raw = json.loads(sdk.run_node(gains_sdk, "gains_sdk_dump.cjs"))
    return GainsDump(
        version=str(raw["version"]),
        diamond_abi=raw["diamondAbi"],
        addresses=raw["addresses"],
        chain_ids={str(k): int(v) for k, v in raw["chainIds"].items()},
        diamonds={int(k): str(v) for k, v in raw["diamonds"].items()},
        unresolved={int(k): str(v) for k, v in raw["unresolved"].items()},
    )


def preset_chain_name(preset: str) -> str:
    """The SDK ChainId name a preset's name stands for: "arbitrum-sepolia" -> "ARBITRUM_SEPOLIA"."""
    return preset.upper().replace("-", "_")


# --- the adapter's side --------------------------------------------------------------------------


ADAPTER_ABI_NAMES: tuple[str, ...] = tuple(
    sorted(
        p.name.removesuffix(".json")
        for p in resources.files("keeper.abis").joinpath("gains").iterdir()
        if p.name.endswith(".json")
    )
)
"""The adapter's Gains ABI fragments, by file name (abis/gains/*.json)."""


def adapter_items() -> list[AbiItem]:
    """Every function, event and error in abis/gains/*.json."""
    return [
        AbiItem(contract, str(e["type"]), str(e["name"]), e)
        for contract in ADAPTER_ABI_NAMES
        for e in gains_abi(contract)
        if e.get("type") in ("function", "event", "error")
    ]


CODE_HELPERS: Mapping[str, str] = {"_diamond": "function", "_event_topic": "event"}
"""The helpers of keeper/venues/gains.py that take a diamond function's or event's name from
the ABI fragment -> the kind of ABI entry they look up."""


def code_uses() -> list[tuple[str, str, int]]:
    """(kind, name, line) for every `_diamond("name")` and `_event_topic("name")` in
    keeper/venues/gains.py: the diamond functions and events the adapter's code uses."""
    tree = ast.parse(inspect.getsource(gains))
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = CODE_HELPERS.get(node.func.id)
        if kind is None:
            continue
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant):
            raise AssertionError(
                f"keeper/venues/gains.py:{node.lineno}: {node.func.id}(...) must take the name "
                "as a string literal, so that this test can read it"
            )
        found.append((kind, str(node.args[0].value), node.lineno))
    return sorted(found, key=lambda u: u[2])
