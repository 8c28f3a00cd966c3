"""Fixtures: our GMX test deployment on an Anvil node of its own (these tests move time and the
base fee, which must not leak into other tests' node), reverted after each test, and a GmxVenue
connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.testing.anvil import Anvil, AnvilError
from keeper.venues.gmx import GmxVenue
from tests.integration.gmx.deploy import GmxDevnet, deploy


@pytest.fixture(scope="session")
def gmx_anvil() -> Iterator[Anvil]:
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
def gmx_session(gmx_anvil: Anvil) -> GmxDevnet:
    return deploy(gmx_anvil.url)


@pytest.fixture
def gmx(gmx_session: GmxDevnet, gmx_anvil: Anvil) -> Iterator[GmxDevnet]:
    snap = gmx_anvil.rpc("evm_snapshot")
    try:
        yield gmx_session
    finally:
        if not gmx_anvil.rpc("evm_revert", snap):
            raise AnvilError(f"evm_revert({snap}) failed: the GMX chain was not restored")


@pytest.fixture
async def venue(gmx: GmxDevnet) -> AsyncIterator[GmxVenue]:
    rpc = HttpJsonRpc(gmx.chain.url, timeout=30)
    try:
        yield await GmxVenue.connect(
            rpc, gmx.deployment, multicall_code_override=True, wallet_token=gmx.usdc
        )
    finally:
        await rpc.close()
