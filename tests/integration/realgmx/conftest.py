"""Fixtures: GMX's own deployment on an Anvil node of its own (started once per session from the
gunzipped state), reverted after each test, and a GmxVenue connected to it. Without the state
(../shared/realgmx or $KEEPER_REALGMX_DIR) every test here is skipped, saying so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.testing.anvil import AnvilError
from keeper.venues.gmx import GmxVenue
from tests.integration.realgmx.harness import (
    ADDRESSES_FILE,
    RealGmx,
    RealGmxAddresses,
    RealGmxAnvil,
    RealGmxUnavailable,
    locate_realgmx,
    unpack_state,
)


@pytest.fixture(scope="session")
def realgmx_dir() -> Path:
    """The directory holding GMX's Anvil state and addresses.json (skips when absent)."""
    try:
        return locate_realgmx()
    except RealGmxUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def realgmx_node(
    realgmx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealGmxAnvil]:
    """Anvil on the GMX state, gunzipped into a temporary directory, for the whole session."""
    state = unpack_state(realgmx_dir, tmp_path_factory.mktemp("realgmx-state"))
    node = RealGmxAnvil(state)
    try:
        node.start()
    except AnvilError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()
        state.unlink(missing_ok=True)  # 25 MB; the gzipped source stays


@pytest.fixture(scope="session")
def realgmx_session(realgmx_dir: Path, realgmx_node: RealGmxAnvil) -> RealGmx:
    return RealGmx(realgmx_node.url, RealGmxAddresses.load(realgmx_dir / ADDRESSES_FILE))


@pytest.fixture
def realgmx(realgmx_session: RealGmx, realgmx_node: RealGmxAnvil) -> Iterator[RealGmx]:
    """The session's GMX chain, reverted after the test to its state before the test."""
    snap = realgmx_node.rpc("evm_snapshot")
    try:
        yield realgmx_session
    finally:
        realgmx_node.check_alive()
        if not realgmx_node.rpc("evm_revert", snap):
            raise AnvilError(f"evm_revert({snap}) failed: the GMX chain was not restored")


@pytest.fixture
async def venue(realgmx: RealGmx) -> AsyncIterator[GmxVenue]:
    """GmxVenue on GMX's own deployment (its own Multicall3), the wallet token USDC."""
    rpc = HttpJsonRpc(realgmx.url, timeout=30)
    try:
        yield await GmxVenue.connect(rpc, realgmx.deployment, wallet_token=realgmx.usdc)
    finally:
        await rpc.close()
