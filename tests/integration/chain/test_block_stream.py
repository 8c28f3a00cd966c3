"""BlockStream against a real Anvil: polling, jumping when behind, reorgs, newHeads over ws."""

from __future__ import annotations

import asyncio

import pytest

from keeper.chain.blocks import BlockStream
from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.chain.rpc import FailoverRpc
from keeper.chain.web3rpc import Web3Rpc
from keeper.testing.anvil import Anvil
from tests.integration.chain.support import FAST, ProxyFactory

pytestmark = pytest.mark.integration


def head_of(anvil: Anvil) -> int:
    return int(anvil.rpc("eth_blockNumber"), 16)


async def test_polling_yields_new_heads_and_jumps_when_behind(anvil_snapshot: Anvil) -> None:
    async with FailoverRpc([anvil_snapshot.url]) as rpc:
        stream = BlockStream(rpc, poll_interval=0.01)
        first = await stream.next()
        assert first.number == head_of(anvil_snapshot)
        assert (first.skipped, first.reorg) == (0, False)

        anvil_snapshot.rpc("evm_mine")
        second = await stream.next()
        assert second.number == first.number + 1
        assert second.header.parent_hash == first.hash
        assert (second.skipped, second.reorg) == (0, False)
        assert second.header.base_fee is not None

        anvil_snapshot.rpc("anvil_mine", "0x5")  # the consumer is 5 blocks behind
        third = await stream.next()
        assert third.number == second.number + 5
        assert (third.skipped, third.reorg) == (4, False)
        assert stream.skipped_total == 4
        assert stream.reorgs == 0


async def test_reorg_of_the_head_is_reported(anvil_snapshot: Anvil) -> None:
    rpc = HttpJsonRpc(anvil_snapshot.url)
    stream = BlockStream(rpc, poll_interval=0.01)
    base = await stream.next()
    snap = anvil_snapshot.rpc("evm_snapshot")
    anvil_snapshot.rpc("evm_mine")
    old = await stream.next()
    assert old.number == base.number + 1
    # Replace that block by another at the same height (another timestamp, another hash).
    assert anvil_snapshot.rpc("evm_revert", snap)
    anvil_snapshot.rpc("evm_mine", old.header.timestamp + 100)
    new = await stream.next()
    assert new.number == old.number
    assert new.reorg
    assert new.replaced == old.header
    assert stream.reorgs == 1
    await rpc.close()


async def test_lagging_endpoint_answer_is_not_taken_for_a_reorg(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    fresh, lagging = await make_proxy(), await make_proxy()
    async with FailoverRpc([fresh.url, lagging.url], cooldown=60.0, **FAST) as rpc:
        stream = BlockStream(rpc, poll_interval=0.01, refresh_heads_every=0)
        anvil_snapshot.rpc("anvil_mine", "0x4")
        first = await stream.next()
        lagging.lag = 3
        fresh.fault = "status:503"  # from now on only the lagging endpoint answers
        anvil_snapshot.rpc("evm_mine")
        for _ in range(3):  # it sees head - 3: not new, and no reason to call it a reorg
            assert await stream.poll_once() is None
        assert stream.head == first.header
        assert stream.reorgs == 0
        assert lagging.calls("eth_getBlockByNumber") >= 3
        fresh.fault = None
        lagging.lag = 0
        # The fresh endpoint cools down (60 s), the lagging one is now current again.
        nxt = await stream.next()
        assert nxt.number == first.number + 1
        assert not nxt.reorg


async def test_ws_new_heads(anvil_snapshot: Anvil) -> None:
    rpc = FailoverRpc([anvil_snapshot.url, anvil_snapshot.ws_url])
    source = rpc.head_source()
    assert isinstance(source, Web3Rpc)
    async with BlockStream(rpc, poll_interval=5.0, heads=source) as stream:
        first = await stream.next()  # the first poll (the subscription may not be up yet)
        await asyncio.sleep(0.3)  # time to subscribe
        anvil_snapshot.rpc("evm_mine")
        second = await asyncio.wait_for(stream.next(), timeout=3.0)
        assert second.number == first.number + 1
        assert stream.ws_connected
        assert stream.polls == 1  # it came over the socket, not from a poll
        anvil_snapshot.rpc("anvil_mine", "0x3")
        seen = second
        while seen.number < first.number + 4:
            seen = await asyncio.wait_for(stream.next(), timeout=3.0)
            assert not seen.reorg
        assert stream.polls == 1
    await rpc.close()
