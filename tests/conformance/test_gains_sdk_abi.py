"""The adapter's Gains ABI fragment (abis/gains/GNSMultiCollatDiamond.json), the diamond
functions and events keeper/venues/gains.py calls, and its deployment presets, against the
Gains Network SDK, `@gainsnetwork/sdk` at the version scripts/bootstrap installs: every
function, event, error and struct of the fragment equals the SDK's diamond ABI (its typechain
factory's, which the SDK connects the diamond with), every name the code looks up is in the
fragment, and every preset's chain and diamond address is the SDK's."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from importlib import resources
from typing import Any

import pytest

from keeper.venues.gains import PRESETS, GainsDeployment, gains_abi
from tests.conformance.gains_sdk import (
    ADAPTER_ABI_NAMES,
    ADDRESS_FIELDS,
    DIAMOND,
    NOT_IN_SDK,
    SUMMARY,
    GainsDump,
    adapter_items,
    code_uses,
    preset_chain_name,
)
from tests.conformance.sdk import (
    AbiItem,
    canonical,
    canonical_components,
    components_text,
    first_difference,
    pinned_version,
    signature,
    structs_in,
)

ZERO_ADDRESS = "0x" + "0" * 40
ITEMS = adapter_items()
USES = code_uses()
TALLY: dict[str, int] = {}


def _tally(outcome: str) -> None:
    """Count compared ABI items by outcome, for the summary."""
    TALLY[outcome] = TALLY.get(outcome, 0) + 1
    SUMMARY["ABI items (functions, events, errors, structs) compared with the SDK"] = [
        ", ".join(f"{k}: {n}" for k, n in sorted(TALLY.items()))
    ]


def test_the_adapter_has_one_fragment_the_diamonds() -> None:
    """Gains runs every market of a chain from its diamond: abis/gains holds that one fragment,
    and it says which SDK release it was taken from."""
    assert list(ADAPTER_ABI_NAMES) == [DIAMOND], f"abis/gains has {list(ADAPTER_ABI_NAMES)}"


def test_fragment_names_the_pinned_sdk() -> None:
    """The fragment's "source" names the SDK version scripts/toolchain/package.json pins: after
    an SDK upgrade these tests compare the fragment with the new ABI, and the fragment says so."""
    text = resources.files("keeper.abis").joinpath("gains", f"{DIAMOND}.json").read_text()
    source = str(json.loads(text).get("source", ""))
    pinned = pinned_version("@gainsnetwork/sdk")
    assert f"@gainsnetwork/sdk {pinned}" in source, (
        f"abis/gains/{DIAMOND}.json: source {source!r} does not name @gainsnetwork/sdk {pinned}"
    )


@pytest.mark.parametrize("item", [pytest.param(i, id=i.id) for i in ITEMS])
def test_abi_item_matches_sdk(item: AbiItem, gains_dump: GainsDump) -> None:
    """Name, inputs and outputs (names, types, tuple components recursively, struct names),
    indexed flags, state mutability: the fragment's entry must equal one of the SDK's entries of
    that kind and name (overloads are matched whole)."""
    found = [
        e
        for e in gains_dump.diamond_abi
        if e.get("type") == item.kind and e.get("name") == item.name
    ]
    ours = canonical(item.entry)
    matched = any(canonical(e) == ours for e in found)
    _tally("match" if matched else "differ")
    assert found, (
        f"{item.id}: no {item.kind} {item.name} in @gainsnetwork/sdk {gains_dump.version}'s "
        f"{DIAMOND} ABI\n  adapter: {signature(item.entry)}"
    )
    if matched:
        return
    lines = [f"{item.id} differs from the SDK's {DIAMOND} ABI:"]
    lines.append(f"  adapter: {signature(item.entry)}")
    for e in found:
        lines.append(f"  SDK:     {signature(e)}")
        lines.append(f"           first difference: {first_difference(ours, canonical(e))}")
    pytest.fail("\n".join(lines))


def _structs(entries: list[dict[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """struct name -> its distinct definitions (tuple parameters) in `entries`."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for name, param in structs_in(entries):
        defs = out.setdefault(name, [])
        if all(canonical_components(d) != canonical_components(param) for d in defs):
            defs.append(param)
    return out


STRUCTS = _structs(gains_abi(DIAMOND))


@pytest.mark.parametrize("struct", sorted(STRUCTS))
def test_struct_matches_sdk(struct: str, gains_dump: GainsDump) -> None:
    """Every struct the fragment uses is defined once there and has the same components (names,
    types, nested structs) as everywhere the SDK's diamond ABI uses it."""
    ours_all = STRUCTS[struct]
    assert len(ours_all) == 1, (
        f"struct {struct}: the fragment defines it differently in places: "
        f"{[components_text(d) for d in ours_all]}"
    )
    ours = canonical_components(ours_all[0])
    theirs = _structs(gains_dump.diamond_abi).get(struct, [])
    assert theirs, f"struct {struct}: not in the SDK's {DIAMOND} ABI"
    wrong = [p for p in theirs if canonical_components(p) != ours]
    _tally("struct differs" if wrong else "struct matches")
    assert not wrong, "\n".join(
        [f"struct {struct} differs from the SDK:", f"  adapter: {components_text(ours_all[0])}"]
        + [
            f"  SDK: {components_text(p)}\n"
            f"    first difference: {first_difference(ours, canonical_components(p))}"
            for p in wrong
        ]
    )


# --- what the adapter's code calls -------------------------------------------------------------


def test_code_uses_are_found() -> None:
    """keeper/venues/gains.py looks up diamond functions with `_diamond("...")` and events with
    `_event_topic("...")`; the parse of its source finds them (the module's own reads, writes
    and order events), so that the next test checks something."""
    kinds = {kind for kind, _, _ in USES}
    assert kinds == {"function", "event"}, f"found only {kinds} in keeper/venues/gains.py"
    assert len(USES) >= 20, f"only {len(USES)} uses found in keeper/venues/gains.py"


@pytest.mark.parametrize(
    ("kind", "name", "line"), [pytest.param(*u, id=f"{u[0]}.{u[1]}") for u in USES]
)
def test_code_use_is_in_fragment(kind: str, name: str, line: int, gains_dump: GainsDump) -> None:
    """Each diamond function or event the adapter's code uses is in the fragment (so the code
    and the fragment cannot drift apart), and so, by the item tests above, in the SDK's ABI."""
    ours = [e for e in gains_abi(DIAMOND) if e.get("type") == kind and e.get("name") == name]
    assert ours, f"keeper/venues/gains.py:{line} uses {kind} {name}, not in abis/gains/{DIAMOND}"
    theirs = [e for e in gains_dump.diamond_abi if e.get("type") == kind and e.get("name") == name]
    assert theirs, f"keeper/venues/gains.py:{line}: the SDK's {DIAMOND} ABI has no {kind} {name}"


def test_fragment_entries_unused_by_the_code() -> None:
    """Lists (in the summary) the fragment's functions and events the code does not name: read
    by tests or kept for decoding; not a failure."""
    used = {(kind, name) for kind, name, _ in USES}
    unused = sorted(
        f"{e['type']} {e['name']}"
        for e in gains_abi(DIAMOND)
        if e.get("type") in ("function", "event") and (e["type"], e["name"]) not in used
    )
    SUMMARY["Fragment functions/events the adapter's code does not name"] = [
        ", ".join(unused) or "none"
    ]


# --- deployment presets ------------------------------------------------------------------------


def test_every_deployment_address_field_is_compared() -> None:
    """Each address of GainsDeployment is compared with the SDK, or listed as having no
    counterpart there (with the reason)."""
    addresses = [f.name for f in fields(GainsDeployment) if f.name != "chain_id"]
    unlisted = sorted(set(addresses) - set(ADDRESS_FIELDS) - set(NOT_IN_SDK))
    assert not unlisted, (
        f"GainsDeployment fields neither in ADDRESS_FIELDS nor NOT_IN_SDK: {unlisted}"
    )
    stale = sorted((set(ADDRESS_FIELDS) | set(NOT_IN_SDK)) - set(addresses))
    assert not stale, f"ADDRESS_FIELDS / NOT_IN_SDK name fields GainsDeployment lacks: {stale}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_chain_is_in_sdk(preset: str, gains_dump: GainsDump) -> None:
    """Each preset's chain is one the SDK knows: in its ChainId enum under the preset's name,
    with an addresses.json entry (keyed by the decimal chain id)."""
    chain_id = PRESETS[preset].chain_id
    name = preset_chain_name(preset)
    assert name in gains_dump.chain_ids, (
        f"preset {preset}: the SDK's ChainId has no {name} (it has {dict(gains_dump.chain_ids)})"
    )
    assert gains_dump.chain_ids[name] == chain_id, (
        f"preset {preset}: chain id {chain_id}, the SDK's ChainId.{name} is "
        f"{gains_dump.chain_ids[name]}"
    )
    assert str(chain_id) in gains_dump.addresses, (
        f"preset {preset}: the SDK's addresses.json has no entry for chain {chain_id} "
        f"(it has {sorted(gains_dump.addresses)})"
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


@pytest.mark.parametrize(("preset", "field"), PRESET_FIELDS)
def test_preset_address_matches_sdk(preset: str, field: str, gains_dump: GainsDump) -> None:
    """A preset address equals the SDK's for the chain (case aside): its addresses.json "global"
    entry, which is also what the SDK's own getContractAddressesForChain(chainId) resolves."""
    deployment = PRESETS[preset]
    ours = str(getattr(deployment, field))
    if field in NOT_IN_SDK:
        pytest.skip(f"{preset}.{field} ({ours}): {NOT_IN_SDK[field]}")
    key = ADDRESS_FIELDS[field]
    chain = str(deployment.chain_id)
    theirs = gains_dump.addresses.get(chain, {}).get("global", {}).get(key)
    assert theirs is not None, (
        f"{preset}.{field}: the SDK's addresses.json lists no global {key} for chain {chain}"
    )
    assert ours.lower() == theirs.lower(), (
        f"{preset}.{field}: the adapter has {ours}, the SDK's {key} for chain {chain} is {theirs}"
    )
    resolved = gains_dump.diamonds.get(deployment.chain_id)
    assert resolved is not None, (
        f"{preset}.{field}: the SDK's getContractAddressesForChain({chain}) fails: "
        f"{gains_dump.unresolved.get(deployment.chain_id)}"
    )
    assert resolved.lower() == theirs.lower(), (
        f"{preset}.{field}: getContractAddressesForChain({chain}) gives {resolved}, "
        f"addresses.json {theirs}"
    )


def test_presets_listed(gains_dump: GainsDump) -> None:
    """Lists (in the summary) each preset with its chain and the SDK's diamond for it."""
    lines = []
    for preset, d in sorted(PRESETS.items()):
        theirs = gains_dump.addresses.get(str(d.chain_id), {}).get("global", {})
        sdk_diamond = theirs.get("gnsMultiCollatDiamond", "none")
        same = "same" if sdk_diamond.lower() == d.diamond.lower() else "DIFFERENT"
        lines.append(f"{preset} ({d.chain_id}): diamond {d.diamond}, SDK {sdk_diamond}: {same}")
    SUMMARY["Presets and the SDK's diamond per chain"] = lines


def test_sdk_chains_without_a_preset(gains_dump: GainsDump) -> None:
    """Lists (in the summary) what addresses.json has beyond the presets: chains of the SDK with
    a diamond and no preset, and entries that are not a plain chain id (such as
    "421614-release", the Arbitrum Sepolia deployment the SDK picks when asked for the unstable
    one). Their diamond addresses are checked as non-zero 20-byte hex; a missing preset is not a
    failure (adding one is a choice about supported chains), the listing makes it visible."""
    preset_chains = {str(d.chain_id) for d in PRESETS.values()}
    lines = []
    for key, entry in sorted(gains_dump.addresses.items()):
        if key in preset_chains:
            continue
        diamond = str(entry.get("global", {}).get("gnsMultiCollatDiamond", ""))
        assert re.fullmatch(r"0x[0-9a-fA-F]{40}", diamond), f"{key}: malformed diamond {diamond!r}"
        assert diamond.lower() != ZERO_ADDRESS, f"{key}: zero diamond address"
        name = gains_dump.chain_name(int(key)) if key.isdigit() else None
        what = f"ChainId.{name}" if name else "not a ChainId of the SDK"
        collaterals = sorted(
            c
            for c, a in entry.items()
            if c != "global" and any(str(v).lower() != ZERO_ADDRESS for v in a.values())
        )
        lines.append(f"{key} ({what}): diamond {diamond}; collaterals {', '.join(collaterals)}")
    SUMMARY["SDK addresses.json entries without a preset"] = lines or ["none"]
