"""The GMX SDK (`@gmx-io/sdk`) as a reference for the GMX adapter: what of its ABIs and
contract addresses the adapter is held to, and its two node scripts: gmx_sdk_dump.cjs prints
ABIs and addresses, gmx_sdk_math.cjs runs the position math on a batch. Finding the SDK,
running node and the ABI comparison are tests/conformance/sdk.py's, shared with the other
venues' SDKs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from keeper.venues.gmx import gmx_abi
from tests.conformance import sdk
from tests.conformance.sdk import AbiItem, Sdk

__all__ = [
    "ADAPTER_ABI_NAMES",
    "ADDRESS_FIELDS",
    "ERRORS_ABI",
    "NOT_IN_SDK",
    "SDK_ABI_OF",
    "SDK_PACKAGE",
    "SUMMARY",
    "SdkDump",
    "adapter_items",
    "load_dump",
    "require_sdk",
    "run_math",
]

SDK_PACKAGE = "@gmx-io/sdk"

SUMMARY: dict[str, list[str]] = sdk.summary("GMX SDK conformance")
"""Lines the GMX tests record for the terminal summary (tests/conformance/conftest.py), by
title."""

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


# --- the installed SDK -------------------------------------------------------------------------


def require_sdk() -> Sdk:
    """The installed GMX SDK at the pinned version (tests.conformance.sdk.require_sdk: skips
    without one, fails under CI or at another version)."""
    return sdk.require_sdk(SDK_PACKAGE, "GMX SDK")


def run_math(gmx: Sdk, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One gmx_sdk_math.cjs run on `payload` (see that script for its shape)."""
    answer: dict[str, Any] = sdk.run_script(gmx, "gmx_sdk_math.cjs", payload)
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
def load_dump(gmx: Sdk) -> SdkDump:
    """The SDK's ABIs (those in SDK_ABI_OF and ERRORS_ABI) and contracts config, read once."""
    wanted = sorted({n for n in SDK_ABI_OF.values() if n is not None} | {ERRORS_ABI})
    raw = json.loads(sdk.run_node(gmx, "gmx_sdk_dump.cjs", *wanted))
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


def adapter_items() -> list[AbiItem]:
    """Every function, event and error in abis/gmx/*.json."""
    return [
        AbiItem(contract, str(e["type"]), str(e["name"]), e)
        for contract in ADAPTER_ABI_NAMES
        for e in gmx_abi(contract)
        if e.get("type") in ("function", "event", "error")
    ]
