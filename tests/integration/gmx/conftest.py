"""Fixtures: our GMX test deployment on an Anvil node of its own (these tests move time and the
base fee, which must not leak into other tests' node), reverted after each test, and a GmxVenue
connected to it; for the subaccount scenarios (subaccount_cases.py), the deployment as their
chain and, for `keeper run`, the trader's long with a keeper config beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.testing.anvil import Anvil, AnvilError
from keeper.testing.plugin import KeeperProcessFactory
from keeper.venues.gmx import GmxVenue
from tests.integration.gmx.deploy import GmxDevnet, deploy
from tests.integration.gmx.keeper_run import TELEGRAM_TOKEN_ENV
from tests.integration.gmx.subaccount_rig import (
    OurChain,
    OurKeeperChain,
    no_position_fee,
    open_long,
)
from tests.integration.ops.test_running_keeper import Receiver


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


@pytest.fixture
def our_chain(gmx: GmxDevnet) -> OurChain:
    """Our deployment as the subaccount cases' SubaccountChain."""
    return OurChain(gmx)


@pytest.fixture
def keeper_chain(
    gmx: GmxDevnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> Iterator[OurKeeperChain]:
    """The trader's long (10 ETH at 5,000, 12,500 USDC) on a market without position fee,
    Multicall3 at its usual address (the config's), and `keeper` commands for it; Anvil back to
    a block per transaction afterwards."""
    no_position_fee(gmx)
    multicall = gmx.chain.deploy_contract(gmx.deployer, "Multicall3")
    code = gmx.chain.w3.eth.get_code(gmx.chain.w3.to_checksum_address(multicall))
    gmx.chain.rpc("anvil_setCode", MULTICALL3_ADDRESS, "0x" + bytes(code).hex())
    key = open_long(gmx)
    receiver = Receiver()
    env = {TELEGRAM_TOKEN_ENV: "123456:local-receiver"}
    chain = OurKeeperChain(gmx, key, tmp_path, receiver, keeper_process, env)
    try:
        yield chain
    finally:
        chain.mine_on_demand()
        receiver.close()
