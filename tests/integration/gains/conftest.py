"""Fixtures: our Gains test deployment on an Anvil node of its own (these tests mine blocks
and move time), reverted after each test, and a GainsVenue connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.testing.anvil import Anvil, AnvilError
from keeper.venues.gains import GainsVenue
from tests.integration.gains.deploy import GainsDevnet, deploy


@pytest.fixture(scope="session")
def gains_anvil() -> Iterator[Anvil]:
    node = Anvil()
    try:
        node.start()
    except AnvilError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def gains_session(gains_anvil: Anvil) -> GainsDevnet:
    return deploy(gains_anvil.url)


@pytest.fixture
def gains(gains_session: GainsDevnet, gains_anvil: Anvil) -> Iterator[GainsDevnet]:
    snap = gains_anvil.rpc("evm_snapshot")
    try:
        yield gains_session
    finally:
        if not gains_anvil.rpc("evm_revert", snap):
            raise AnvilError(f"evm_revert({snap}) failed: the Gains chain was not restored")


@pytest.fixture
async def venue(gains: GainsDevnet) -> AsyncIterator[GainsVenue]:
    rpc = HttpJsonRpc(gains.url, timeout=30)
    try:
        yield await GainsVenue.connect(rpc, gains.deployment, wallet_token=gains.usdc)
    finally:
        await rpc.close()
