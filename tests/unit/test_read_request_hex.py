"""The hex-level request codecs, the prepared first batch and `Snapshot.trusted` give exactly
what the general ones give."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from eth_abi.abi import encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.jsonrpc import RpcTransportError
from keeper.chain.multicall import Call
from keeper.model import CrossAccount, MarginMode, Market, Position, Side, Snapshot, Token, Wallet
from keeper.units import Price, TokenAmount, Usd
from keeper.venues.base import VenueDecodeError
from keeper.venues.codec import (
    FastMulticall,
    encode_aggregate3,
    encode_aggregate3_uniform,
    encode_aggregate3_uniform_hex,
    read_bytes32_array,
    read_bytes32_hex,
)

A = "0x" + "ab" * 20
USDC = Token("0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)


@given(
    st.binary(max_size=40),
    st.integers(0, 70).flatmap(lambda n: st.lists(st.binary(min_size=n, max_size=n), max_size=12)),
)
def test_hex_uniform_encoding_equals_the_bytes_one(prefix: bytes, args: list[bytes]) -> None:
    expected = encode_aggregate3_uniform(A, prefix, args).hex()
    got = encode_aggregate3_uniform_hex(A, prefix, ["0x" + a.hex() for a in args])
    assert got == "0x" + expected
    assert expected == encode_aggregate3([Call(A, prefix + a) for a in args]).hex()


def test_hex_uniform_encoding_refuses_arguments_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        encode_aggregate3_uniform_hex(A, b"\x01", ["0xabcd", "0xab"])
    with pytest.raises(ValueError, match="differ in length"):
        encode_aggregate3_uniform_hex(A, b"\x01", ["0xabc"])
    with pytest.raises(ValueError, match='not "0x" and hex'):
        encode_aggregate3_uniform_hex(A, b"\x01", ["abcd", "0xab"])
    with pytest.raises(ValueError, match='not "0x" and hex'):
        encode_aggregate3_uniform_hex(A, b"\x01", ["0xab", "ab0x"])


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=10))
def test_bytes32_hex_equals_the_bytes_reading(keys: list[bytes]) -> None:
    data = encode(["bytes32[]"], [keys])
    assert read_bytes32_hex(data, "k") == ["0x" + k.hex() for k in read_bytes32_array(data, "k")]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode(["bytes32[]"], [[b"\x01" * 32]])[:-32],
        (64).to_bytes(32, "big") + bytes(32),
    ],
)
def test_bytes32_hex_refuses_what_the_bytes_reading_refuses(data: bytes) -> None:
    with pytest.raises(VenueDecodeError):
        read_bytes32_array(data, "k")
    with pytest.raises(VenueDecodeError):
        read_bytes32_hex(data, "k")


class Node:
    """Answers aggregate3 with one word per call; refuses (HTTP 413) batches over `limit`."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.sent: list[str] = []

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        data = params[0]["data"]
        self.sent.append(data)
        count = int(data[10 + 64 : 10 + 128], 16)
        if count > self.limit:
            raise RpcTransportError(method, "HTTP 413", status=413)
        results = [(True, (i + 1).to_bytes(32, "big")) for i in range(count)]
        return "0x" + encode(["(bool,bytes)[]"], [results]).hex()


def test_a_prepared_batch_is_sent_as_given_and_answers_like_aggregate() -> None:
    calls = [Call(A, bytes([i]) * 4) for i in range(5)]
    node = Node()
    multicall = FastMulticall(node, address=A, chunk_size=100)
    prepared = "0x" + encode_aggregate3(calls).hex()
    got = asyncio.run(multicall.aggregate_prepared(calls, prepared, block=7))
    want = asyncio.run(multicall.aggregate(calls, block=7))
    assert got == want
    assert node.sent[0] == node.sent[1] == prepared
    assert multicall.round_trips == 2


def test_a_refused_prepared_batch_is_halved() -> None:
    calls = [Call(A, bytes([i]) * 4) for i in range(5)]
    node = Node(limit=2)
    multicall = FastMulticall(node, address=A, chunk_size=100)
    prepared = "0x" + encode_aggregate3(calls).hex()
    got = asyncio.run(multicall.aggregate_prepared(calls, prepared, block=7))
    assert [r.data for r in got] == [(i).to_bytes(32, "big") for i in (1, 2, 1, 2, 1)]
    assert multicall.chunk_size == 2
    assert multicall.shrinks == 1


def _snapshot_parts() -> tuple[
    int, int, Wallet, tuple[Market], tuple[Position, ...], tuple[CrossAccount]
]:
    market = Market(
        "refex", "1", Token("ETH", "ETH", 18), 6, Price(2 * 10**21, 18), Decimal("0.01")
    )
    positions = tuple(
        Position(
            "refex",
            f"0x{i:064x}",
            A,
            "1",
            Side.LONG,
            TokenAmount(10**18, 18),
            Price(2 * 10**21, 18),
            USDC,
            TokenAmount(10**8, 6),
            Price(10**18, 18),
            Usd(10**8, 6),
            Usd(0, 6),
            MarginMode.CROSS if i == 2 else MarginMode.ISOLATED,
            A if i == 2 else None,
        )
        for i in range(1, 4)
    )
    account = CrossAccount(
        "refex", A, A, USDC, TokenAmount(5, 6), Price(10**18, 18), Usd(5, 6), (positions[1].key,)
    )
    wallet = Wallet(A, USDC, TokenAmount(1, 6), TokenAmount(2, 18))
    return 9, 1_700_000_000, wallet, (market,), positions, (account,)


def test_trusted_snapshot_equals_validated_one() -> None:
    parts = _snapshot_parts()
    checked = Snapshot(*parts)
    index = {"refex": {p.key: p for p in parts[4]}}
    trusted = Snapshot.trusted(*parts, index)
    assert type(trusted) is Snapshot
    assert trusted == checked
    assert hash(trusted) == hash(checked)
    assert repr(trusted) == repr(checked)
    assert trusted._markets == checked._markets
    assert trusted._positions == checked._positions
    assert list(trusted._positions) == list(checked._positions)
    for p in parts[4]:
        assert trusted.position("refex", p.key) is p
        assert trusted.market_of(p) is parts[3][0]
    assert trusted.positions_of(parts[5][0]) == checked.positions_of(parts[5][0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.block_number = 2  # type: ignore[misc]
    assert not hasattr(trusted, "__dict__")
