"""The reference adapter's batched position read (encoded and decoded in place, values built
with the trusted constructors) gives what `decode_position` + `map_position` give, and
refuses what they refuse, naming the position."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.jsonrpc import RpcTransportError
from keeper.model import Position, Token
from keeper.venues.base import ReadIssue, VenueDecodeError
from keeper.venues.codec import address_word
from keeper.venues.reference import (
    RawMarket,
    ReferenceVenue,
    _CollectorPause,
    _PositionRound,
    _Static,
    decode_position,
    map_position,
)
from tests.unit.test_reference_decode import position_data as decode_position_data

USDC = Token("0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)
EXCHANGE = "0x" + "e0" * 20
MULTICALL = "0x" + "ca" * 20
A = "0x" + "ab" * 20
B = "0x" + "cd" * 20


def market(market_id: int, *, valid: bool = True, long: int = 0, short: int = 0) -> RawMarket:
    return RawMarket(
        market_id=market_id,
        feed=B,
        initial_margin_rate=5 * 10**16,
        maintenance_margin_rate=25 * 10**15,
        close_fee_rate=10**15,
        liquidation_fee_rate=5 * 10**15,
        impact_factor=0,
        max_impact_rate=0,
        long_oi=0,
        short_oi=0,
        price_valid=valid,
        price=2_000 * 10**18,
        funding_rate=0,
        long_funding_index=long,
        short_funding_index=short,
    )


MARKETS = {
    0: market(0, long=3 * 10**18, short=-(3 * 10**18)),
    1: market(1),
    2: market(2, valid=False),
}


def position_data(account: str | int, **over: int) -> bytes:
    """`test_reference_decode.position_data`, in market 0 unless told."""
    return decode_position_data(account, **{"market": 0, **over})


class FakeNode:
    """Answers aggregate3 eth_calls of positions(key) from a table (key -> return data)."""

    def __init__(self, table: Mapping[bytes, tuple[bool, bytes]]) -> None:
        self.table = table
        self.calls = 0

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert method == "eth_call"
        self.calls += 1
        (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(params[0]["data"][10:]))
        results = []
        for target, allow_failure, data in calls:
            assert target.lower() == EXCHANGE
            assert allow_failure
            results.append(self.table[bytes(data[4:])])
        return "0x" + encode(["(bool,bytes)[]"], [results]).hex()


def venue(node: FakeNode, chunk_size: int = 3) -> ReferenceVenue:
    static = _Static(EXCHANGE, B, MULTICALL, USDC, {0: "ETH", 1: "BTC", 2: "SOL"})
    return ReferenceVenue(node, static, chunk_size=chunk_size)


async def run_round(
    reader: ReferenceVenue, keys: list[bytes], holders: list[str]
) -> tuple[list[Position], list[ReadIssue]]:
    """The positions round as read() drives it: keys queued account by account."""
    positions_round = _PositionRound(reader, {a: address_word(a) for a in holders}, 7)
    try:
        for key, holder in zip(keys, holders, strict=True):
            await positions_round.add(holder, [key])
        positions, issues = await positions_round.results(MARKETS)
        assert all(key == p.key for key, p in positions.items())
        return list(positions.values()), issues
    except BaseException:
        await positions_round.cancel()
        raise


def read(
    table: Mapping[bytes, tuple[bool, bytes]], keys: list[bytes], holders: list[str], chunk: int = 3
) -> tuple[list[Position], list[ReadIssue]]:
    return asyncio.run(run_round(venue(FakeNode(table), chunk), keys, holders))


signed = st.integers(-(2**255), 2**255 - 1)
FIELDS = ("long", "cross", "market", "size", "collateral", "entry", "index", "updated")
one_position = st.fixed_dictionaries(
    {
        "long": st.integers(0, 1),
        "cross": st.integers(0, 1),
        "market": st.sampled_from([0, 1]),
        "size": st.integers(1, 2**256 - 1),
        "collateral": st.integers(0, 2**256 - 1),
        "entry": st.integers(1, 2**256 - 1),
        "index": signed,
        "updated": st.integers(0, 2**64),
    }
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A, B]), one_position), min_size=1, max_size=8))
def test_positions_equal_the_reference_decoding(cases: list[tuple[str, dict[str, int]]]) -> None:
    keys = [i.to_bytes(32, "big") for i in range(1, len(cases) + 1)]
    holders = [account for account, _ in cases]
    table = {}
    for key, (account, fields) in zip(keys, cases, strict=True):
        words = [int(account, 16)] + [fields[name] % 2**256 for name in FIELDS]  # index: 2's c.
        data = b"".join(w.to_bytes(32, "big") for w in words)
        table[key] = (True, data)
    positions, issues = read(table, keys, holders)
    assert issues == []
    expected = []
    for key, account in zip(keys, holders, strict=True):
        raw = decode_position(table[key][1])
        expected.append(map_position("0x" + key.hex(), account, raw, MARKETS[raw.market_id], USDC))
    assert positions == expected
    for got, want in zip(positions, expected, strict=True):
        for name in Position.__slots__:
            assert type(getattr(got, name)) is type(getattr(want, name))


def test_empty_and_unpriced_positions_are_left_out() -> None:
    keys = [bytes([i]) * 32 for i in range(1, 5)]
    table = {
        keys[0]: (True, position_data(A)),
        keys[1]: (True, position_data(0, size=0, entry=0)),  # closed since listed
        keys[2]: (True, position_data(A, market=2)),  # its market has no valid price
        keys[3]: (True, position_data(A, cross=1, long=0)),
    }
    positions, issues = read(table, keys, [A] * 4)
    assert [p.key for p in positions] == ["0x" + keys[0].hex(), "0x" + keys[3].hex()]
    assert positions[1].cross_account == A
    assert issues == [ReadIssue("position_missing", "0x" + keys[1].hex(), "listed but empty")]


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ((True, position_data(B)), "does not belong to"),
        ((True, position_data(A, market=9)), "unknown market"),
        ((True, position_data(A, long=2)), "not a Position"),
        ((True, position_data(A, cross=2, market=2)), "not a Position"),
        ((True, position_data(A, entry=0)), "entry price is zero"),
        ((True, position_data(A)[:-32]), "expected 288 bytes"),
        ((False, b""), "reverted"),
    ],
)
def test_a_bad_position_is_refused_by_name(answer: tuple[bool, bytes], match: str) -> None:
    good, bad = b"\x01" * 32, b"\x02" * 32
    table = {good: (True, position_data(A)), bad: answer}
    with pytest.raises(VenueDecodeError, match=match) as info:
        read(table, [good, bad], [A, A])
    if "288" not in match:
        assert "0x" + bad.hex() in str(info.value)


def test_chunks_and_round_trips() -> None:
    keys = [i.to_bytes(32, "big") for i in range(1, 8)]
    node = FakeNode({k: (True, position_data(A, size=i + 1)) for i, k in enumerate(keys)})
    reader = venue(node, chunk_size=3)
    positions, _ = asyncio.run(run_round(reader, keys, [A] * 7))
    assert [p.size.raw for p in positions] == list(range(1, 8))
    assert node.calls == reader._batches.round_trips == 3  # ceil(7 / 3)


def test_a_failed_read_cancels_the_chunks_in_flight() -> None:
    keys = [i.to_bytes(32, "big") for i in range(1, 8)]
    node = FakeNode({k: (True, position_data(A)) for k in keys})
    started = asyncio.Event()

    class SlowNode:
        async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
            started.set()
            await asyncio.sleep(10)
            return await node.request(method, params)

    async def scenario() -> list[asyncio.Task[Any]]:
        positions_round = _PositionRound(venue(SlowNode(), 3), {A: address_word(A)}, 7)  # type: ignore[arg-type]
        for key in keys:
            await positions_round.add(A, [key])  # two chunks of 3 go out
        await started.wait()
        await positions_round.cancel()  # what read() does when decoding the rest fails
        return positions_round.tasks

    tasks = asyncio.run(scenario())
    assert len(tasks) == 2
    assert all(task.cancelled() for task in tasks)


def test_a_chunk_refused_for_its_size_is_halved_and_still_read() -> None:
    keys = [i.to_bytes(32, "big") for i in range(1, 8)]
    node = FakeNode({k: (True, position_data(A, size=i + 1)) for i, k in enumerate(keys)})

    class SmallNode:
        """Refuses (HTTP 413) any batch of more than two calls."""

        async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
            (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(params[0]["data"][10:]))
            if len(calls) > 2:
                raise RpcTransportError(method, "HTTP 413", status=413)
            return await node.request(method, params)

    reader = venue(SmallNode(), chunk_size=4)  # type: ignore[arg-type]
    positions, issues = asyncio.run(run_round(reader, keys, [A] * 7))
    assert [p.size.raw for p in positions] == list(range(1, 8))
    assert issues == []
    # halved like Multicall does (4 -> 2, then the last 3 -> 1), and kept for the next read
    assert reader._batches.chunk_size == 1
    assert reader._batches.shrinks == 2


def test_the_collector_pause_nests_and_restores() -> None:
    pause = _CollectorPause()
    assert gc.isenabled()
    with pause:
        assert not gc.isenabled()
        with pause:  # a second read at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first is still running
        garbage: list[list[int]] = [[] for _ in range(1000)]
        del garbage
    assert gc.isenabled()
    assert gc.get_count()[0] < 100  # the young generation was emptied on the way out
    with pytest.raises(RuntimeError), pause:
        raise RuntimeError("a failed read")
    assert gc.isenabled()


def test_the_collector_pause_leaves_a_disabled_collector_disabled() -> None:
    pause = _CollectorPause()
    gc.disable()
    try:
        with pause:
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Cycle:
    """A cycle the collector must free: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def _cycles_alive() -> int:
    return sum(type(o) is _Cycle for o in gc.get_objects())


def test_the_collector_pause_promotes_young_objects_and_collects_every_nth_read() -> None:
    gc.collect()
    pause = _CollectorPause(full_every=3)
    with pause:
        _Cycle()  # garbage in a cycle, made during a read
        kept = [_Cycle() for _ in range(5)]
    assert gc.get_count()[0] < 100
    # moved to the oldest generation untraversed: the cycle outlives a young collection...
    gc.collect(0)
    gc.collect(1)
    assert _cycles_alive() == 6
    with pause:
        pass
    assert _cycles_alive() == 6
    with pause:  # ...until the third read's full collection frees it
        pass
    assert _cycles_alive() == 5
    del kept
    gc.collect()


def test_the_collector_pause_leaves_other_frozen_objects_frozen() -> None:
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        pause = _CollectorPause(full_every=1000)
        with pause:
            garbage: list[_Cycle] = [_Cycle() for _ in range(3)]
            del garbage
        assert gc.get_freeze_count() == frozen  # not unfrozen by the pause
        assert _cycles_alive() == 0  # the young generation was collected instead
    finally:
        gc.unfreeze()
        gc.collect()


def test_the_collector_pause_needs_a_positive_period() -> None:
    with pytest.raises(ValueError, match="full_every"):
        _CollectorPause(full_every=0)
