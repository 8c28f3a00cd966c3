"""Fast ABI coding for the shapes venue reads repeat thousands of times per tick.

eth_abi is general and slow: encoding 10,000 Multicall3 calls with it takes about 0.5 s on
this machine, more than Anvil needs to execute them. The shapes here are fixed, so they are
coded by slicing 32-byte words; every length and offset is checked, and anything that is not
the expected shape raises `VenueDecodeError` naming the call.

`FastMulticall` is `keeper.chain.multicall.Multicall` (same chunking, concurrency, shrinking
and pinning) with these codecs in place of eth_abi.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keeper.chain.jsonrpc import RpcMalformedResponseError
from keeper.chain.multicall import (
    AGGREGATE3_SELECTOR,
    Call,
    CallResult,
    Multicall,
    MulticallError,
)
from keeper.chain.multicall3_code import MULTICALL3_RUNTIME
from keeper.venues.base import VenueDecodeError

__all__ = [
    "FastMulticall",
    "address_word",
    "decode_aggregate3",
    "encode_aggregate3",
    "int_word",
    "read_bytes32_array",
    "read_words",
    "uint_word",
]

WORD = 32
_ZERO12 = bytes(12)
_TRUE = (1).to_bytes(WORD, "big")
_FALSE = bytes(WORD)
_TUPLE_HEAD = (0x60).to_bytes(WORD, "big")


def uint_word(value: int) -> bytes:
    """A uint256 as one ABI word."""
    return value.to_bytes(WORD, "big")


def int_word(value: int) -> bytes:
    """An int256 as one ABI word."""
    return value.to_bytes(WORD, "big", signed=True)


def address_word(address: str) -> bytes:
    """An address (0x hex) as one ABI word."""
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {address!r}")
    return _ZERO12 + raw


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata for Multicall3.aggregate3 with allowFailure=true on every call."""
    targets: dict[str, bytes] = {}
    heads: list[bytes] = []
    bodies: list[bytes] = []
    offset = WORD * len(calls)
    for call in calls:
        target = targets.get(call.target)
        if target is None:
            target = targets[call.target] = address_word(call.target)
        data = call.data
        padded = data + bytes(-len(data) % WORD)
        heads.append(offset.to_bytes(WORD, "big"))
        body = b"".join((target, _TRUE, _TUPLE_HEAD, len(data).to_bytes(WORD, "big"), padded))
        bodies.append(body)
        offset += len(body)
    return b"".join(
        (
            AGGREGATE3_SELECTOR,
            uint_word(WORD),
            uint_word(len(calls)),
            *heads,
            *bodies,
        )
    )


def _word(data: bytes, at: int, what: str) -> int:
    if at < 0 or at + WORD > len(data):
        raise RpcMalformedResponseError("eth_call", f"{what}: answer cut short at byte {at}")
    return int.from_bytes(data[at : at + WORD], "big")


def decode_aggregate3(data: bytes, expected: int, *, address: str = "") -> list[CallResult]:
    """aggregate3's return data ((bool, bytes)[]) -> one CallResult per call."""
    if not data:
        raise MulticallError(
            "eth_call",
            f"aggregate3 returned no data: is Multicall3 deployed at {address or 'the address'}?",
        )
    what = "aggregate3 answer"
    start = _word(data, 0, what)
    count = _word(data, start, what)
    if count != expected:
        raise RpcMalformedResponseError(
            "eth_call", f"aggregate3 returned {count} results for {expected} calls"
        )
    base = start + WORD
    size = len(data)
    if base + count * WORD > size:
        raise RpcMalformedResponseError("eth_call", f"{what}: answer cut short")
    from_bytes = int.from_bytes
    results: list[CallResult] = []
    append = results.append
    for head in range(base, base + count * WORD, WORD):
        element = base + from_bytes(data[head : head + WORD], "big")
        flag = data[element : element + WORD]
        at = element + from_bytes(data[element + WORD : element + 2 * WORD], "big")
        if at + WORD > size or element + 2 * WORD > size:
            raise RpcMalformedResponseError("eth_call", f"{what}: answer cut short")
        length = from_bytes(data[at : at + WORD], "big")
        end = at + WORD + length
        if end > size or (flag not in (_TRUE, _FALSE)):
            raise RpcMalformedResponseError(
                "eth_call", f"{what}: result {(head - base) // WORD} is malformed"
            )
        append(CallResult(flag == _TRUE, data[at + WORD : end]))
    return results


def read_words(data: bytes, count: int, what: str) -> list[int]:
    """Exactly `count` static words (a struct of value types); VenueDecodeError otherwise."""
    if len(data) != count * WORD:
        raise VenueDecodeError(f"{what}: expected {count * WORD} bytes, got {len(data)}")
    return [int.from_bytes(data[i : i + WORD], "big") for i in range(0, count * WORD, WORD)]


def read_bytes32_array(data: bytes, what: str) -> list[bytes]:
    """A returned bytes32[]; VenueDecodeError when it is not one."""
    if len(data) < 2 * WORD:
        raise VenueDecodeError(f"{what}: expected a bytes32[], got {len(data)} bytes")
    offset = int.from_bytes(data[:WORD], "big")
    if offset != WORD:
        raise VenueDecodeError(f"{what}: bad array offset {offset}")
    count = int.from_bytes(data[WORD : 2 * WORD], "big")
    if len(data) != (2 + count) * WORD:
        raise VenueDecodeError(f"{what}: {count} keys do not fit in {len(data)} bytes")
    return [data[i : i + WORD] for i in range(2 * WORD, (2 + count) * WORD, WORD)]


class FastMulticall(Multicall):
    """`Multicall` with the codecs above (same chunking, shrinking, pinning and counting)."""

    async def _call(self, chunk: list[Call], block: str) -> list[CallResult]:
        tx: dict[str, Any] = {"to": self.address, "data": "0x" + encode_aggregate3(chunk).hex()}
        if self.gas is not None:
            tx["gas"] = hex(self.gas)
        params: list[Any] = [tx, block]
        if self.code_override:
            params.append({self.address: {"code": "0x" + MULTICALL3_RUNTIME.hex()}})
        self.round_trips += 1
        raw = await self.rpc.request("eth_call", params)
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise RpcMalformedResponseError("eth_call", f"result is not hex data: {raw!r:.60}")
        try:
            data = bytes.fromhex(raw[2:])
        except ValueError:
            raise RpcMalformedResponseError("eth_call", "result is not hex data") from None
        return decode_aggregate3(data, len(chunk), address=self.address)
