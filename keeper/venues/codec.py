"""Fast ABI coding for the shapes venue reads repeat thousands of times per tick.

eth_abi is general and slow: encoding 10,000 Multicall3 calls with it takes about 0.5 s on
this machine, more than Anvil needs to execute them. The shapes here are fixed, so they are
coded by slicing 32-byte words; every length and offset is checked, and anything that is not
the expected shape raises `VenueDecodeError` naming the call.

`FastMulticall` is `keeper.chain.multicall.Multicall` (same chunking, concurrency, shrinking
and pinning) with these codecs in place of eth_abi. Its `aggregate_uniform` is for the hottest
shape, one function of one contract called with many static arguments and returning a static
struct (PerpExchange.positions(key) x 10,000): the calldata is joined in one go, and an answer
in which every call succeeded with a result of the expected size is checked word by word in
place and handed back as offsets into the answer (`UniformResults`) instead of one
`CallResult` and one copy per call. Anything else is decoded by `decode_aggregate3`, so a
failed call, a result of another size or a malformed answer is reported exactly as there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, Self

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from keeper.abis import abi, abi_type
from keeper.chain.jsonrpc import RpcError, RpcMalformedResponseError
from keeper.chain.multicall import (
    AGGREGATE3_SELECTOR,
    Call,
    CallResult,
    Multicall,
    MulticallError,
)
from keeper.chain.rpc import ErrorKind, block_param, classify_error
from keeper.venues.base import VenueDecodeError


@dataclass(frozen=True, slots=True)
class ContractFn:
    """One function of an ABI: selector (hashed once: reads encode thousands of calls),
    argument and return types, and coding that names the call when data does not fit."""

    contract: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    selector: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "selector", keccak(self.signature.encode())[:4])

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @classmethod
    def from_abi(cls, contract: str, name: str, entries: Iterable[Mapping[str, Any]]) -> Self:
        """Function `name` of `entries` (the ABI of `contract`); LookupError if absent."""
        for entry in entries:
            if entry.get("type") == "function" and entry.get("name") == name:
                return cls(
                    contract,
                    name,
                    tuple(abi_type(i) for i in entry.get("inputs", [])),
                    tuple(abi_type(o) for o in entry.get("outputs", [])),
                )
        raise LookupError(f"no function {name} in the {contract} ABI")

    @classmethod
    def of(cls, contract: str, name: str) -> Self:
        """Function `name` of the ABI shipped in abis for `contract`."""
        return cls.from_abi(contract, name, abi(contract))

    def encode(self, *args: Any) -> bytes:
        return self.selector + abi_encode(list(self.inputs), list(args))

    def decode_input(self, data: bytes) -> tuple[Any, ...]:
        """The arguments of calldata for this function; VenueDecodeError if it is not one."""
        if data[:4] != self.selector:
            raise VenueDecodeError(f"{self.contract}.{self.name}: calldata has another selector")
        return tuple(abi_decode(list(self.inputs), data[4:]))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """The return values; VenueDecodeError naming the call when `data` is not them."""
        try:
            return tuple(abi_decode(list(self.outputs), data))
        except (DecodingError, ValueError, OverflowError) as exc:
            raise VenueDecodeError(
                f"{self.contract}.{self.name}: return data does not decode ({len(data)} bytes): "
                f"{exc}"
            ) from None


log = logging.getLogger(__name__)

__all__ = [
    "Aggregate3Answer",
    "FastMulticall",
    "UniformResults",
    "address_word",
    "decode_aggregate3",
    "decode_aggregate3_uniform",
    "encode_aggregate3",
    "encode_aggregate3_uniform",
    "encode_aggregate3_uniform_hex",
    "int_word",
    "read_bytes32_array",
    "read_bytes32_hex",
    "read_words",
    "uint_word",
]

WORD = 32
_ZERO12 = bytes(12)
_TRUE = (1).to_bytes(WORD, "big")
_FALSE = bytes(WORD)
_TUPLE_HEAD = (0x60).to_bytes(WORD, "big")
_WORD_32 = WORD.to_bytes(WORD, "big")


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
    prefixes: dict[str, bytes] = {}  # target -> its address word, allowFailure, data offset
    lengths: dict[int, tuple[bytes, bytes]] = {}  # data length -> its word and padding
    heads: list[int] = []
    parts: list[bytes] = []
    offset = WORD * len(calls)
    for call in calls:
        prefix = prefixes.get(call.target)
        if prefix is None:
            prefix = prefixes[call.target] = address_word(call.target) + _TRUE + _TUPLE_HEAD
        data = call.data
        length = lengths.get(len(data))
        if length is None:
            length = lengths[len(data)] = (uint_word(len(data)), bytes(-len(data) % WORD))
        heads.append(offset)
        parts += (prefix, length[0], data, length[1])
        offset += 4 * WORD + len(data) + len(length[1])
    return b"".join(
        (
            AGGREGATE3_SELECTOR,
            uint_word(WORD),
            uint_word(len(calls)),
            b"".join([head.to_bytes(WORD, "big") for head in heads]),
            *parts,
        )
    )


def encode_aggregate3_uniform(target: str, prefix: bytes, args: Sequence[bytes]) -> bytes:
    """`encode_aggregate3` of `Call(target, prefix + arg)` for every arg, all args one length.

    The same bytes, made without a Call per argument: every element of the array has the same
    length, so the heads are an arithmetic progression and the bodies are one join.
    """
    if not args:
        return encode_aggregate3([])
    arg_size = len(args[0])
    if len(set(map(len, args))) != 1:
        raise ValueError("encode_aggregate3_uniform: the arguments differ in length")
    length = len(prefix) + arg_size
    pad = bytes(-length % WORD)
    head = b"".join((address_word(target), _TRUE, _TUPLE_HEAD, uint_word(length), prefix))
    stride = len(head) + arg_size + len(pad)
    return b"".join(
        (
            AGGREGATE3_SELECTOR,
            uint_word(WORD),
            uint_word(len(args)),
            _heads(len(args), stride),
            head,
            (pad + head).join(args),
            pad,
        )
    )


def encode_aggregate3_uniform_hex(target: str, prefix: bytes, args: Sequence[str]) -> str:
    """`"0x" + encode_aggregate3_uniform(target, prefix, [bytes.fromhex(a[2:]) for a in
    args]).hex()`.

    For arguments the caller already holds as "0x" and lowercase hex (as `read_bytes32_hex`
    gives them; all one length, a whole number of bytes): the calldata is joined as text in
    one go (one string of its size made, not one per step), each argument's "0x" sliced off
    on the way, so no argument is hexed twice.
    """
    if not args:
        return "0x" + encode_aggregate3([]).hex()
    arg_chars = len(args[0]) - 2
    if arg_chars < 0 or arg_chars % 2 or len(set(map(len, args))) != 1:
        raise ValueError("encode_aggregate3_uniform_hex: the arguments differ in length")
    length = len(prefix) + arg_chars // 2
    pad = "00" * (-length % WORD)
    head = b"".join((address_word(target), _TRUE, _TUPLE_HEAD, uint_word(length), prefix)).hex()
    stride = len(head) // 2 + arg_chars // 2 + len(pad) // 2
    if "".join(map(_FIRST_TWO, args)) != "0x" * len(args):
        raise ValueError('encode_aggregate3_uniform_hex: an argument is not "0x" and hex')
    # start, head, arg 0, (pad, head, arg i)..., pad: the first and last pieces (a few KiB)
    # carry the ends, so the one join of the separator makes the whole calldata.
    pieces = list(map(_AFTER_0X, args))  # slices made in C, one per argument
    pieces[0] = "".join(("0x", _uniform_start_hex(len(args), stride), head, pieces[0]))
    pieces[-1] += pad
    return (pad + head).join(pieces)


_FIRST_TWO = itemgetter(slice(None, 2))
_AFTER_0X = itemgetter(slice(2, None))


@lru_cache(maxsize=64)
def _uniform_start_hex(count: int, stride: int) -> str:
    """The selector, array offset, count and element heads of a uniform aggregate3, as hex."""
    return b"".join(
        (AGGREGATE3_SELECTOR, uint_word(WORD), uint_word(count), _heads(count, stride))
    ).hex()


@lru_cache(maxsize=64)
def _heads(count: int, stride: int) -> bytes:
    """The offsets of `count` array elements of `stride` bytes each, as ABI words."""
    return b"".join(uint_word(WORD * count + i * stride) for i in range(count))


@lru_cache(maxsize=64)
def _result_head(size: int) -> bytes:
    """The first three words of a successful (bool, bytes) result with `size` bytes of data."""
    return _TRUE + uint_word(2 * WORD) + uint_word(size)


@dataclass(frozen=True, slots=True)
class UniformResults:
    """Every call of a batch succeeded with `size` bytes of return data: call i's return data
    is `data[offsets[i] : offsets[i] + size]` (read it in place, without copying it out)."""

    data: bytes
    offsets: Sequence[int]
    size: int

    @classmethod
    def of(cls, results: Sequence[CallResult], size: int) -> UniformResults | None:
        """The same from CallResults; None unless every one succeeded with `size` bytes."""
        if any(not r.success or len(r.data) != size for r in results):
            return None
        data = b"".join(r.data for r in results)
        offsets = range(0, len(data), size) if size else [0] * len(results)
        return cls(data, offsets, size)


def decode_aggregate3_uniform(data: bytes, expected: int, size: int) -> UniformResults | None:
    """aggregate3's return data when each of `expected` calls succeeded with `size` bytes.

    Checks the whole answer: its length, the array's offset and count, every element's offset,
    and every element's success flag, data offset and data length. None when it is not that
    shape (a call failed, returned another size, or the answer is malformed): decode it with
    `decode_aggregate3` then, which says what is wrong.
    """
    if expected < 1 or size < 0:
        return None
    padded = size + (-size % WORD)
    stride = 3 * WORD + padded
    first = (2 + expected) * WORD
    end = first + expected * stride
    if (
        len(data) != end
        or data[:WORD] != _WORD_32
        or data[WORD : 2 * WORD] != uint_word(expected)
        or data[2 * WORD : first] != _heads(expected, stride)
    ):
        return None
    head = _result_head(size)
    for at in range(first, end, stride):
        if data[at : at + 3 * WORD] != head:
            return None
    return UniformResults(data, range(first + 3 * WORD, end + 3 * WORD, stride), size)


def _word(data: bytes, at: int, what: str) -> int:
    if at < 0 or at + WORD > len(data):
        raise RpcMalformedResponseError("eth_call", f"{what}: answer cut short at byte {at}")
    return int.from_bytes(data[at : at + WORD], "big")


def decode_aggregate3(data: bytes, expected: int, *, address: str = "") -> list[CallResult]:
    """aggregate3's return data ((bool, bytes)[]) -> one CallResult per call."""
    answer = Aggregate3Answer(data, expected, address=address)
    return [answer.result(i) for i in range(expected)]


class Aggregate3Answer:
    """aggregate3's return data ((bool, bytes)[]) read lazily, for a large batch read in order.

    The array's offset, its count (`expected`) and the bounds of its heads are checked at
    once; each result when it is read, with `decode_aggregate3`'s checks and errors. Nothing
    is copied out or allocated for a result until it is asked for, and `bytes32_hex` reads a
    bytes32[] result as hex keys straight from the answer. So the caller can act on the first
    results (send the requests they name) before the rest is decoded.
    """

    __slots__ = ("_base", "_count", "_data")

    def __init__(self, data: bytes, expected: int, *, address: str = "") -> None:
        if not data:
            where = address or "the address"
            raise MulticallError(
                "eth_call", f"aggregate3 returned no data: is Multicall3 deployed at {where}?"
            )
        start = _word(data, 0, _ANSWER)
        count = _word(data, start, _ANSWER)
        if count != expected:
            raise RpcMalformedResponseError(
                "eth_call", f"aggregate3 returned {count} results for {expected} calls"
            )
        base = start + WORD
        if base + count * WORD > len(data):
            raise RpcMalformedResponseError("eth_call", f"{_ANSWER}: answer cut short")
        self._data = data
        self._base = base
        self._count = count

    def __len__(self) -> int:
        return self._count

    def locate(self, index: int) -> tuple[bool, int, int]:
        """Result `index`: its success flag and where its return data starts and ends."""
        if not 0 <= index < self._count:
            raise IndexError(index)
        data, base = self._data, self._base
        size = len(data)
        from_bytes = int.from_bytes
        head = base + index * WORD
        element = base + from_bytes(data[head : head + WORD], "big")
        flag = data[element : element + WORD]
        at = element + from_bytes(data[element + WORD : element + 2 * WORD], "big")
        if at + WORD > size or element + 2 * WORD > size:
            raise RpcMalformedResponseError("eth_call", f"{_ANSWER}: answer cut short")
        end = at + WORD + from_bytes(data[at : at + WORD], "big")
        if end > size or (flag not in (_TRUE, _FALSE)):
            raise RpcMalformedResponseError("eth_call", f"{_ANSWER}: result {index} is malformed")
        return flag == _TRUE, at + WORD, end

    def result(self, index: int) -> CallResult:
        """Result `index` as `decode_aggregate3` gives it."""
        success, start, end = self.locate(index)
        return CallResult(success, self._data[start:end])

    def uint(self, index: int, what: str) -> int | None:
        """Result `index`, one returned word, as `read_words(data, 1, what)[0]` reads it; None
        when the call failed."""
        success, start, end = self.locate(index)
        if not success:
            return None
        if end - start != WORD:
            raise VenueDecodeError(f"{what}: expected {WORD} bytes, got {end - start}")
        return int.from_bytes(self._data[start:end], "big")

    def bytes32_hex(self, index: int, what: str) -> list[str] | None:
        """Result `index`, a returned bytes32[], as `read_bytes32_hex` reads it (same checks
        and errors); None when the call failed (`result` has its revert data)."""
        success, start, end = self.locate(index)
        if not success:
            return None
        count = _bytes32_count(self._data, start, end, what)
        return _keys_0x(self._data[start + 2 * WORD : end]) if count else []


_ANSWER = "aggregate3 answer"


def read_words(data: bytes, count: int, what: str) -> list[int]:
    """Exactly `count` static words (a struct of value types); VenueDecodeError otherwise."""
    if len(data) != count * WORD:
        raise VenueDecodeError(f"{what}: expected {count * WORD} bytes, got {len(data)}")
    return [int.from_bytes(data[i : i + WORD], "big") for i in range(0, count * WORD, WORD)]


def _bytes32_count(data: bytes, start: int, end: int, what: str) -> int:
    """The length of the bytes32[] that `data[start:end]` returns, its offset and size
    checked; VenueDecodeError naming `what` when it is not one."""
    size = end - start
    if size < 2 * WORD:
        raise VenueDecodeError(f"{what}: expected a bytes32[], got {size} bytes")
    offset = int.from_bytes(data[start : start + WORD], "big")
    if offset != WORD:
        raise VenueDecodeError(f"{what}: bad array offset {offset}")
    count = int.from_bytes(data[start + WORD : start + 2 * WORD], "big")
    if size != (2 + count) * WORD:
        raise VenueDecodeError(f"{what}: {count} keys do not fit in {size} bytes")
    return count


def read_bytes32_array(data: bytes, what: str) -> list[bytes]:
    """A returned bytes32[]; VenueDecodeError when it is not one."""
    count = _bytes32_count(data, 0, len(data), what)
    return [data[i : i + WORD] for i in range(2 * WORD, (2 + count) * WORD, WORD)]


def read_bytes32_hex(data: bytes, what: str) -> list[str]:
    """`read_bytes32_array`, each element as "0x" and lowercase hex (checked the same)."""
    count = _bytes32_count(data, 0, len(data), what)
    return _keys_0x(data[2 * WORD :]) if count else []


def _keys_0x(words: bytes) -> list[str]:
    """32-byte words as "0x" hex strings: hexed with a space between words, the spaces turned
    into " 0x" and split, all in C, one string made per word."""
    return ("0x" + words.hex(" ", WORD).replace(" ", " 0x")).split(" ")


class FastMulticall(Multicall):
    """`Multicall` with the codecs above (same chunking, shrinking, pinning and counting)."""

    async def _call(self, chunk: list[Call], block: str) -> list[CallResult]:
        data = await self._send(encode_aggregate3(chunk), block)
        return decode_aggregate3(data, len(chunk), address=self.address)

    async def aggregate_uniform(
        self, target: str, prefix: bytes, args: Sequence[bytes], size: int, *, block: int
    ) -> UniformResults | list[CallResult]:
        """`aggregate([Call(target, prefix + arg) for arg in args], block=block)` in one eth_call.

        For a chunk (at most `chunk_size` args, all one length) of calls returning `size`
        bytes each: `UniformResults` when every call succeeded with `size` bytes, else the
        CallResults as `aggregate` gives them (a malformed answer raises as there). A chunk the
        provider refuses for its size is halved and sent again like `aggregate` does (the
        smaller chunk size is kept), and its CallResults are returned.
        """
        if not args:
            return []
        block_arg = block_param(block)
        try:
            data = await self._send(encode_aggregate3_uniform(target, prefix, args), block_arg)
        except RpcError as exc:
            if classify_error(exc) is not ErrorKind.TOO_LARGE:
                raise
            return await self._refused([Call(target, prefix + arg) for arg in args], exc, block)
        uniform = decode_aggregate3_uniform(data, len(args), size)
        if uniform is not None:
            return uniform
        return decode_aggregate3(data, len(args), address=self.address)

    async def aggregate_uniform_hex(
        self, target: str, prefix: bytes, args: Sequence[str], size: int, *, block: int
    ) -> UniformResults | list[CallResult]:
        """`aggregate_uniform` for arguments given as "0x" and lowercase hex, one length.

        The same eth_call, answer and refusal handling; the calldata is joined as text
        (`encode_aggregate3_uniform_hex`), so arguments read as hex are not hexed again.
        """
        if not args:
            return []
        block_arg = block_param(block)
        try:
            data = await self._send_hex(
                encode_aggregate3_uniform_hex(target, prefix, args), block_arg
            )
        except RpcError as exc:
            if classify_error(exc) is not ErrorKind.TOO_LARGE:
                raise
            return await self._refused(
                [Call(target, prefix + bytes.fromhex(a[2:])) for a in args], exc, block
            )
        uniform = decode_aggregate3_uniform(data, len(args), size)
        if uniform is not None:
            return uniform
        return decode_aggregate3(data, len(args), address=self.address)

    async def aggregate_prepared(
        self, calls: Sequence[Call], calldata: str, *, block: int
    ) -> list[CallResult]:
        """`aggregate(calls, block=block)`, given its calldata already made:
        `"0x" + encode_aggregate3(calls).hex()`.

        For a batch repeated tick after tick (the same calls at a new block): when it fits in
        one chunk, its calldata is sent as given instead of encoded again; otherwise, and when
        the provider refuses it for its size (halved as `aggregate_uniform` does), it is
        `aggregate`. Only the request is reused, never an answer.
        """
        if not calls:
            return []
        if len(calls) > self.chunk_size:
            return await self.aggregate(calls, block=block)
        try:
            data = await self._send_hex(calldata, block_param(block))
        except RpcError as exc:
            if classify_error(exc) is not ErrorKind.TOO_LARGE:
                raise
            return await self._refused(list(calls), exc, block)
        return decode_aggregate3(data, len(calls), address=self.address)

    async def aggregate_prepared_answer(
        self, calls: Sequence[Call], calldata: str, *, block: int
    ) -> Aggregate3Answer | list[CallResult]:
        """`aggregate_prepared`, its answer read lazily (`Aggregate3Answer`) when it came in
        one piece; the CallResults when the batch was split (too many calls for one chunk, or
        refused for its size)."""
        if not calls or len(calls) > self.chunk_size:
            return await self.aggregate_prepared(calls, calldata, block=block)
        try:
            data = await self._send_hex(calldata, block_param(block))
        except RpcError as exc:
            if classify_error(exc) is not ErrorKind.TOO_LARGE:
                raise
            return await self._refused(list(calls), exc, block)
        return Aggregate3Answer(data, len(calls), address=self.address)

    async def _refused(self, calls: list[Call], exc: RpcError, block: int) -> list[CallResult]:
        """A single batch of `calls` refused for its size: halved like `aggregate` does (the
        smaller chunk size is kept), and sent again through `aggregate`."""
        if len(calls) == 1:
            log.warning("a single call to %s was refused: %s", calls[0].target, exc)
            return [CallResult(False, b"", error=str(exc))]
        half = len(calls) // 2
        if half < self.chunk_size:
            log.info("multicall chunk of %d refused (%s); chunks of %d now", len(calls), exc, half)
            self.chunk_size = half
        self.shrinks += 1
        return await self.aggregate(calls, block=block)

    async def _send(self, calldata: bytes, block: str) -> bytes:
        """One eth_call of aggregate3 `calldata` at `block`: the answer's bytes."""
        return await self._send_hex("0x" + calldata.hex(), block)
