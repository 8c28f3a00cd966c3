"""Multicall3 batching without a node: chunking, encoding, failure tolerance, shrinking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.jsonrpc import RpcMalformedResponseError, RpcResponseError, RpcTransportError
from keeper.chain.multicall import (
    AGGREGATE3_SELECTOR,
    Call,
    CallResult,
    Multicall,
    MulticallError,
    chunk_ranges,
    decode_aggregate3,
    encode_aggregate3,
)


@given(st.integers(0, 2_000), st.integers(1, 600))
def test_chunk_ranges_cover_in_order(count: int, size: int) -> None:
    ranges = chunk_ranges(count, size)
    assert [i for r in ranges for i in r] == list(range(count))
    assert all(1 <= len(r) <= size for r in ranges)
    assert len(ranges) == -(-count // size)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        chunk_ranges(3, 0)
    with pytest.raises(ValueError, match="at least 1"):
        Multicall(FakeMulticall3(), chunk_size=0)


def test_encode_and_decode() -> None:
    calls = [Call("0x" + "11" * 20, b"\x01\x02"), Call("0x" + "22" * 20, b"")]
    data = encode_aggregate3(calls)
    assert data[:4] == AGGREGATE3_SELECTOR
    (decoded,) = decode(["(address,bool,bytes)[]"], data[4:])
    assert [(a, ok, d) for a, ok, d in decoded] == [
        ("0x" + "11" * 20, True, b"\x01\x02"),
        ("0x" + "22" * 20, True, b""),
    ]
    answer = encode(["(bool,bytes)[]"], [[(True, b"\x2a"), (False, b"\xde\xad")]])
    assert decode_aggregate3(answer, 2) == [
        CallResult(True, b"\x2a"),
        CallResult(False, b"\xde\xad"),
    ]
    with pytest.raises(MulticallError, match="is Multicall3 deployed"):
        decode_aggregate3(b"", 2)
    with pytest.raises(RpcMalformedResponseError, match="2 results for 3 calls"):
        decode_aggregate3(answer, 3)
    with pytest.raises(RpcMalformedResponseError, match="does not decode"):
        decode_aggregate3(b"\x00" * 7, 1)


class FakeMulticall3:
    """Answers aggregate3 eth_calls: a call to FAILING reverts, others echo their data.

    Refuses (HTTP 413) any eth_call with more than `limit` calls, as a provider would.
    """

    FAILING = "0x" + "ff" * 20

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.sizes: list[int] = []
        self.blocks: list[str] = []
        self.refuse_with: Exception | None = None

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert method == "eth_call"
        tx, block = params[0], params[1]
        (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(tx["data"][10:]))
        self.sizes.append(len(calls))
        self.blocks.append(block)
        if self.refuse_with is not None:
            raise self.refuse_with
        if len(calls) > self.limit:
            raise RpcTransportError("eth_call", "HTTP 413", status=413)
        results = [(target != self.FAILING, data) for target, _, data in calls]
        return "0x" + encode(["(bool,bytes)[]"], [results]).hex()


def calls_for(n: int) -> list[Call]:
    return [
        Call(FakeMulticall3.FAILING if i % 5 == 0 else "0x" + "11" * 20, i.to_bytes(4, "big"))
        for i in range(n)
    ]


async def test_results_in_order_with_failures_and_round_trips() -> None:
    node = FakeMulticall3()
    multicall = Multicall(node, chunk_size=4, max_concurrency=2)
    results = await multicall.aggregate(calls_for(10), block=77)
    assert [r.success for r in results] == [i % 5 != 0 for i in range(10)]
    assert [int.from_bytes(r.data, "big") for r in results] == list(range(10))
    assert node.sizes == [4, 4, 2]
    assert node.blocks == ["0x4d"] * 3
    assert multicall.round_trips == 3
    assert await multicall.aggregate([], block=77) == []


async def test_chunks_halve_until_they_fit_and_the_size_is_kept() -> None:
    node = FakeMulticall3(limit=3)
    multicall = Multicall(node, chunk_size=16)
    results = await multicall.aggregate(calls_for(16), block=1)
    assert [int.from_bytes(r.data, "big") for r in results] == list(range(16))
    assert multicall.chunk_size == 2  # 16 -> 8 -> 4 -> 2
    assert multicall.shrinks == 1 + 2 + 4
    node.sizes.clear()
    await multicall.aggregate(calls_for(16), block=1)
    assert node.sizes == [2] * 8
    multicall.reset_chunk_size()
    assert multicall.chunk_size == 16


async def test_a_single_call_refused_alone_fails_alone() -> None:
    node = FakeMulticall3(limit=0)
    multicall = Multicall(node, chunk_size=2)
    results = await multicall.aggregate(calls_for(3), block=1)
    assert [r.success for r in results] == [False] * 3
    assert all(r.error is not None and "413" in r.error for r in results)
    assert multicall.chunk_size == 1


async def test_out_of_gas_shrinks_too_but_other_errors_are_raised() -> None:
    node = FakeMulticall3()
    node.refuse_with = RpcResponseError("eth_call", -32000, "out of gas")
    multicall = Multicall(node, chunk_size=2)
    results = await multicall.aggregate(calls_for(2), block=1)
    assert node.sizes == [2, 1, 1]
    assert [r.error for r in results] == [str(node.refuse_with)] * 2
    node.refuse_with = RpcTransportError("eth_call", "refused", may_have_arrived=False)
    with pytest.raises(RpcTransportError):
        await multicall.aggregate(calls_for(2), block=1)
