"""The adapter's GMX ABI fragments (abis/gmx/*.json) and deployment presets
(keeper/venues/gmx.py) against GMX's own SDK, `@gmx-io/sdk` at the version scripts/bootstrap
installs: every function, event, error and struct the adapter uses, and every preset address."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import pytest

from keeper.venues.gmx import PRESETS, GmxDeployment, gmx_abi
from tests.conformance.gmx_sdk import (
    ADAPTER_ABI_NAMES,
    ADDRESS_FIELDS,
    ERRORS_ABI,
    NOT_IN_SDK,
    SDK_ABI_OF,
    SUMMARY,
    SdkDump,
    adapter_items,
)
from tests.conformance.sdk import (
    AbiItem,
    canonical,
    canonical_components,
    components_text,
    first_difference,
    signature,
    structs_in,
)

ZERO_ADDRESS = "0x" + "0" * 40
ITEMS = adapter_items()
TALLY: dict[str, int] = {}


def _tally(outcome: str) -> None:
    """Count compared ABI items by outcome, for the summary."""
    TALLY[outcome] = TALLY.get(outcome, 0) + 1
    SUMMARY["ABI items (functions, events, errors, structs) compared with the SDK"] = [
        ", ".join(f"{k}: {n}" for k, n in sorted(TALLY.items()))
    ]


def _item_param(item: AbiItem) -> Any:
    if SDK_ABI_OF.get(item.contract, "") is None:
        return pytest.param(item, id=f"{item.id}-no-SDK-ABI")
    return pytest.param(item, id=item.id)


def _sdk_entries(dump: SdkDump, item: AbiItem) -> tuple[list[str], list[Mapping[str, Any]]]:
    """The SDK ABIs searched for `item` and its same-named entries of the same kind in them: a
    contract's own ABI, and for errors also GMX's Errors library (CustomErrors)."""
    sdk_name = SDK_ABI_OF[item.contract]
    assert sdk_name is not None
    searched = [sdk_name] + ([ERRORS_ABI] if item.kind == "error" else [])
    found: list[Mapping[str, Any]] = [
        e
        for name in searched
        for e in dump.abis[name]
        if e.get("type") == item.kind and e.get("name") == item.name
    ]
    return searched, found


def test_every_adapter_abi_is_mapped_to_the_sdk() -> None:
    """Each fragment in abis/gmx has an entry in SDK_ABI_OF (an SDK ABI, or None)."""
    assert sorted(SDK_ABI_OF) == list(ADAPTER_ABI_NAMES), (
        f"abis/gmx has {list(ADAPTER_ABI_NAMES)}; "
        f"tests/conformance/gmx_sdk.py SDK_ABI_OF maps {sorted(SDK_ABI_OF)}"
    )


def test_sdk_ships_the_mapped_abis(sdk_dump: SdkDump) -> None:
    """The SDK has every ABI SDK_ABI_OF names, and still none for the contracts mapped to None
    (so that the skips below stay true)."""
    wanted = {n for n in SDK_ABI_OF.values() if n is not None} | {ERRORS_ABI}
    missing = sorted(wanted - set(sdk_dump.abi_names))
    assert not missing, f"@gmx-io/sdk {sdk_dump.version} has no ABI named {missing}"
    for contract, sdk_name in SDK_ABI_OF.items():
        if sdk_name is None:
            assert contract not in sdk_dump.abi_names, (
                f"@gmx-io/sdk {sdk_dump.version} now ships a {contract} ABI: map it in SDK_ABI_OF"
            )


@pytest.mark.parametrize("item", [_item_param(i) for i in ITEMS])
def test_abi_item_matches_sdk(item: AbiItem, sdk_dump: SdkDump) -> None:
    """Name, inputs and outputs (names, types, tuple components recursively), indexed flags,
    state mutability: the adapter's entry must equal one of the SDK's entries of that name."""
    if SDK_ABI_OF[item.contract] is None:
        assert item.contract not in sdk_dump.abi_names
        _tally("no SDK ABI")
        pytest.skip(f"@gmx-io/sdk {sdk_dump.version} ships no {item.contract} ABI")
    searched, found = _sdk_entries(sdk_dump, item)
    ours = canonical(item.entry)
    matched = any(canonical(e) == ours for e in found)
    _tally("match" if matched else "differ")
    assert found, (
        f"{item.id}: no {item.kind} {item.name} in the SDK's {' or '.join(searched)} ABI\n"
        f"  adapter: {signature(item.entry)}"
    )
    if matched:
        return
    lines = [f"{item.id} differs from the SDK's {' / '.join(searched)}:"]
    lines.append(f"  adapter: {signature(item.entry)}")
    for e in found:
        lines.append(f"  SDK:     {signature(e)}")
        lines.append(f"           first difference: {first_difference(ours, canonical(e))}")
    pytest.fail("\n".join(lines))


def _struct_definitions() -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    """struct name -> {adapter contract -> its distinct definitions (tuple parameters)}."""
    out: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for contract in ADAPTER_ABI_NAMES:
        for name, param in structs_in(gmx_abi(contract)):
            defs = out.setdefault(name, {}).setdefault(contract, [])
            if all(canonical_components(d) != canonical_components(param) for d in defs):
                defs.append(param)
    return out


STRUCTS = _struct_definitions()


@pytest.mark.parametrize("struct", sorted(STRUCTS))
def test_struct_matches_sdk(struct: str, sdk_dump: SdkDump) -> None:
    """Every struct the adapter's ABIs use has the same components (names, types, nested
    structs) as the SDK's ABIs of the contracts the adapter uses it with."""
    by_contract = STRUCTS[struct]
    ours_all = [d for defs in by_contract.values() for d in defs]
    ours = canonical_components(ours_all[0])
    assert all(canonical_components(d) == ours for d in ours_all), (
        f"struct {struct}: the adapter's ABI fragments define it differently: "
        + "; ".join(f"{c}: {[components_text(d) for d in defs]}" for c, defs in by_contract.items())
    )
    sdk_names = sorted({n for c in by_contract if (n := SDK_ABI_OF[c]) is not None})
    if not sdk_names:
        pytest.skip(f"struct {struct} is used only with contracts the SDK ships no ABI for")
    theirs: list[tuple[str, Mapping[str, Any]]] = []
    for sdk_name in sdk_names:
        for name, param in structs_in(sdk_dump.abis[sdk_name]):
            seen = [canonical_components(p) for n, p in theirs if n == sdk_name]
            if name == struct and canonical_components(param) not in seen:
                theirs.append((sdk_name, param))
    assert theirs, f"struct {struct}: not in the SDK's {' or '.join(sdk_names)} ABI"
    wrong = [(n, p) for n, p in theirs if canonical_components(p) != ours]
    _tally("struct differs" if wrong else "struct matches")
    assert not wrong, "\n".join(
        [f"struct {struct} differs from the SDK:", f"  adapter: {components_text(ours_all[0])}"]
        + [
            f"  SDK {n}: {components_text(p)}\n"
            f"    first difference: {first_difference(ours, canonical_components(p))}"
            for n, p in wrong
        ]
    )


# --- deployment presets ------------------------------------------------------------------------


def test_every_deployment_address_field_is_compared() -> None:
    """Each address of GmxDeployment is compared with the SDK, or listed as having no
    counterpart there (with the reason)."""
    addresses = [f.name for f in fields(GmxDeployment) if f.name not in ("chain_id", "api_url")]
    unlisted = sorted(set(addresses) - set(ADDRESS_FIELDS) - set(NOT_IN_SDK))
    assert not unlisted, (
        f"GmxDeployment fields neither in ADDRESS_FIELDS nor NOT_IN_SDK: {unlisted}"
    )


PRESET_FIELDS = [
    pytest.param(preset, field, id=f"{preset}.{field}")
    for preset in sorted(PRESETS)
    for field in ADDRESS_FIELDS
] + [
    pytest.param(preset, field, id=f"{preset}.{field}-not-in-SDK")
    for preset in sorted(PRESETS)
    for field in NOT_IN_SDK
]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_chain_is_in_sdk(preset: str, sdk_dump: SdkDump) -> None:
    """Each preset's chain is one the SDK has contracts for, under the preset's name."""
    chain_id = PRESETS[preset].chain_id
    assert chain_id in sdk_dump.contracts, (
        f"preset {preset}: the SDK has no contracts for chain {chain_id} "
        f"(it has {sorted(sdk_dump.contracts)})"
    )
    name = sdk_dump.chain_names.get(chain_id, "").lower().replace(" ", "-")
    assert name == preset, (
        f"preset {preset}: the SDK names chain {chain_id} {sdk_dump.chain_names.get(chain_id)!r}"
    )


@pytest.mark.parametrize(("preset", "field"), PRESET_FIELDS)
def test_preset_address_matches_sdk(preset: str, field: str, sdk_dump: SdkDump) -> None:
    """A preset address equals the SDK's contracts config for the chain (case aside)."""
    deployment = PRESETS[preset]
    ours = str(getattr(deployment, field))
    if field in NOT_IN_SDK:
        pytest.skip(f"{preset}.{field} ({ours}): {NOT_IN_SDK[field]}")
    key = ADDRESS_FIELDS[field]
    config = sdk_dump.contracts.get(deployment.chain_id, {})
    theirs = config.get(key)
    assert theirs is not None, (
        f"{preset}.{field}: the SDK lists no {key} for chain {deployment.chain_id}"
    )
    assert ours.lower() == theirs.lower(), (
        f"{preset}.{field}: the adapter has {ours}, the SDK's {key} for chain "
        f"{deployment.chain_id} is {theirs}"
    )


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_api_url_matches_sdk(preset: str, sdk_dump: SdkDump) -> None:
    """A preset's api_url (GmxApiPriceSource's base) is the SDK's oracle keeper URL."""
    deployment = PRESETS[preset]
    theirs = sdk_dump.oracle_keeper_urls.get(deployment.chain_id)
    assert deployment.api_url == theirs, (
        f"{preset}.api_url: the adapter has {deployment.api_url}, the SDK's oracle keeper URL "
        f"for chain {deployment.chain_id} is {theirs}"
    )


def test_sdk_chains_without_a_preset(sdk_dump: SdkDump) -> None:
    """No chain whose SDK config has every contract of ADDRESS_FIELDS lacks a preset (those found
    are listed in the summary, their addresses checked as 20-byte hex)."""
    preset_chains = {d.chain_id for d in PRESETS.values()}
    lines = []
    for chain_id, config in sorted(sdk_dump.contracts.items()):
        addresses = {f: config.get(key) for f, key in ADDRESS_FIELDS.items()}
        if chain_id in preset_chains or None in addresses.values():
            continue
        listed = {f: str(a) for f, a in addresses.items()}
        bad = {f: a for f, a in listed.items() if not re.fullmatch(r"0x[0-9a-fA-F]{40}", a)}
        assert not bad, f"chain {chain_id}: the SDK lists malformed addresses {bad}"
        zero = [f for f, a in listed.items() if a.lower() == ZERO_ADDRESS]
        kind = "production" if chain_id in sdk_dump.contracts_chain_ids else "testnet"
        name = sdk_dump.chain_names.get(chain_id, "?")
        lines.append(f"{name} ({chain_id}, {kind}):")
        lines.extend(f"  {f} = {a}" for f, a in listed.items())
        lines.append(f"  api_url = {sdk_dump.oracle_keeper_urls.get(chain_id)}")
        lines.append(f"  (the SDK's Multicall, a Multicall3: {config.get('Multicall')})")
        if zero:
            lines.append(f"  zero address in the SDK: {', '.join(zero)}")
    SUMMARY["SDK chains with the adapter's contracts and no preset"] = lines
    assert not lines, "the SDK lists chains with the adapter's contracts and no preset"
