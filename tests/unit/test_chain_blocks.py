"""The block stream's decisions without a node: new, skipped, reorged, stale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keeper.chain.blocks import BlockStream, BlockStreamStalledError, NewHead, next_head
from keeper.chain.jsonrpc import RpcError, RpcTransportError
from keeper.chain.rpc import BlockHeader


def header(number: int, fork: str = "a", parent_fork: str | None = None) -> BlockHeader:
    parent = parent_fork or fork
    return BlockHeader(number, f"0x{fork}{number:04x}", f"0x{parent}{number - 1:04x}", number, 7)


def test_next_head_table() -> None:
    h5, h6 = header(5), header(6)
    assert next_head(None, h5) == NewHead(h5)
    assert next_head(h5, h5) is None
    assert next_head(h5, h6) == NewHead(h6)
    # parent mismatch one block on
    other6 = header(6, "b", parent_fork="b")
    assert next_head(h5, other6) == NewHead(other6, reorg=True, replaced=h5)
    # a jump: trusted without an ancestor, checked with one
    h9 = header(9)
    assert next_head(h5, h9) == NewHead(h9, skipped=3)
    assert next_head(h5, h9, ancestor_hash=h5.hash) == NewHead(h9, skipped=3)
    assert next_head(h5, h9, ancestor_hash="0xdifferent") == NewHead(
        h9, skipped=3, reorg=True, replaced=h5
    )
    # same height, another hash; a shorter chain
    assert next_head(h6, other6) == NewHead(other6, reorg=True, replaced=h6)
    assert next_head(h6, header(4, "c")) == NewHead(header(4, "c"), reorg=True, replaced=h6)


def block_json(h: BlockHeader) -> dict[str, Any]:
    return {
        "number": hex(h.number),
        "hash": h.hash,
        "parentHash": h.parent_hash,
        "timestamp": hex(h.timestamp),
        "baseFeePerGas": hex(h.base_fee or 0),
    }


class Chain:
    """A fake node: `latest` is what it calls its head; `canonical` answers by number."""

    def __init__(self, latest: BlockHeader) -> None:
        self.latest: BlockHeader | RpcError = latest
        self.canonical: dict[int, BlockHeader] = {latest.number: latest}
        self.calls: list[Any] = []

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert method == "eth_getBlockByNumber"
        self.calls.append(params[0])
        if params[0] == "latest":
            if isinstance(self.latest, RpcError):
                raise self.latest
            return block_json(self.latest)
        found = self.canonical.get(int(params[0], 16))
        return None if found is None else block_json(found)


async def test_stream_polls_jumps_and_reorgs() -> None:
    chain = Chain(header(5))
    stream = BlockStream(chain, poll_interval=0.0)
    assert (await stream.next()).header == header(5)
    for n in range(6, 10):
        chain.canonical[n] = header(n)
    chain.latest = header(9)
    jumped = await stream.next()
    assert (jumped.number, jumped.skipped, jumped.reorg) == (9, 3, False)
    assert chain.calls[-1] == "0x5"  # checked that block 5 is still ours
    # block 10 built on another block 9
    chain.canonical[9] = header(9, "b", parent_fork="a")
    chain.latest = chain.canonical[10] = header(10, "b")
    reorged = await stream.next()
    assert reorged.reorg
    assert reorged.replaced == header(9)
    assert (stream.skipped_total, stream.reorgs) == (3, 1)


async def test_stale_answer_is_ignored_and_nothing_new_is_not_yielded() -> None:
    chain = Chain(header(8))
    stream = BlockStream(chain, poll_interval=0.0)
    await stream.next()
    chain.latest = header(6)  # a lagging endpoint answered; block 8 is still there
    assert await stream.poll_once() is None
    chain.latest = header(8)
    assert await stream.poll_once() is None
    assert stream.reorgs == 0
    # Now block 8 really is gone: the chain is shorter.
    del chain.canonical[8]
    chain.latest = header(7, "z")
    event = await stream.poll_once()
    assert event is not None
    assert event.reorg


async def test_poll_errors_are_counted_and_the_stream_goes_on() -> None:
    chain = Chain(header(1))
    stream = BlockStream(chain, poll_interval=0.0)
    await stream.next()
    chain.latest = RpcTransportError("eth_getBlockByNumber", "refused")
    assert await stream.poll_once() is None
    assert await stream.poll_once() is None
    assert stream.errors == 2
    assert isinstance(stream.last_error, RpcTransportError)
    chain.latest = chain.canonical[2] = header(2)
    assert (await stream.next()).number == 2


async def test_stall_timeout() -> None:
    chain = Chain(header(1))
    stream = BlockStream(chain, poll_interval=0.0, stall_timeout=0.0)
    await stream.next()
    with pytest.raises(BlockStreamStalledError, match="no new block"):
        await stream.next()
