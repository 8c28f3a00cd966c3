"""Multicall3 `aggregate3` batching: many view calls in few eth_calls, all at one block.

`Multicall(rpc).aggregate(calls, block=N)` splits `calls` into chunks of `chunk_size`, sends
the chunks concurrently (at most `max_concurrency` at once) as eth_calls to Multicall3 at
block N, and returns one `CallResult` per call, in order. Every call is made with
allowFailure=true: a call that reverts comes back as `success=False` with its revert data, and
the rest of the batch is unaffected.

When a provider refuses a chunk for its gas or size (out of gas, HTTP 413, "response size
exceeded"...: `ErrorKind.TOO_LARGE`), the chunk is halved and both halves are sent, down to
single calls; a single call still refused comes back failed with `error` set. The smaller
size is kept for later batches (`chunk_size` only shrinks; `reset_chunk_size()` undoes it).

Why concurrent eth_calls rather than one JSON-RPC batch: a batch is one HTTP answer, so one
oversized or failing chunk fails them all, providers cap batch sizes differently (and bill
them per call anyway), and failover, pinning and shrinking work per request. Measured on a
local Anvil on 2 cores, 2,000 getEthBalance calls in 4 chunks (median of 15): one JSON-RPC
batch 77-80 ms, 4 concurrent eth_calls 91-103 ms, sequential 92-105 ms; the node's execution
dominates locally, and against a remote provider concurrent requests cost one round trip of
latency, like the batch. Counted per eth_call, N calls cost ceil(N/chunk_size) round trips.

With `code_override`, each eth_call carries the canonical Multicall3 runtime as a state
override at `address` (geth-style third eth_call parameter), for chains or forks where it is
not deployed; most providers accept overrides, some do not.

`round_trips` counts the eth_calls made (shrink retries included), for the benchmark's
"one Snapshot of N positions costs at most ceil(N/500) + 2 round trips".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError

from keeper.chain.jsonrpc import JsonRpc, RpcError, RpcMalformedResponseError, request_data
from keeper.chain.multicall3_code import MULTICALL3_RUNTIME
from keeper.chain.rpc import BlockId, ErrorKind, block_param, classify_error

log = logging.getLogger(__name__)

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3_SELECTOR = bytes.fromhex("82ad56cb")  # aggregate3((address,bool,bytes)[])
DEFAULT_CHUNK_SIZE = 500


@dataclass(frozen=True, slots=True)
class Call:
    """One view call: `data` (selector and arguments) sent to `target`."""

    target: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CallResult:
    """A call's outcome: its return data, or (success False) its revert data.

    `error` is set only when the call could not be made at all: the provider refused it for
    gas or size even on its own.
    """

    success: bool
    data: bytes
    error: str | None = None


class MulticallError(RpcError):
    """The batch itself failed: Multicall3 missing at the address, or an undecodable answer."""


def chunk_ranges(count: int, size: int) -> list[range]:
    """Index ranges of consecutive chunks of at most `size` items covering `count` items."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata for aggregate3 with allowFailure=true on every call."""
    args = [(call.target, True, call.data) for call in calls]
    return AGGREGATE3_SELECTOR + encode(["(address,bool,bytes)[]"], [args])


def decode_aggregate3(data: bytes, expected: int, *, address: str = "") -> list[CallResult]:
    """aggregate3's return data -> one CallResult per call; MulticallError if it is not that."""
    if not data:
        raise MulticallError(
            "eth_call",
            f"aggregate3 returned no data: is Multicall3 deployed at {address or 'the address'}?",
        )
    try:
        (results,) = decode(["(bool,bytes)[]"], data)
    except (DecodingError, ValueError, OverflowError) as exc:
        raise RpcMalformedResponseError(
            "eth_call", f"aggregate3 answer does not decode: {exc}"
        ) from None
    if len(results) != expected:
        raise RpcMalformedResponseError(
            "eth_call", f"aggregate3 returned {len(results)} results for {expected} calls"
        )
    return [CallResult(bool(ok), bytes(out)) for ok, out in results]


class Multicall:
    """Batches view calls through Multicall3; see the module's docstring."""

    def __init__(
        self,
        rpc: JsonRpc,
        *,
        address: str = MULTICALL3_ADDRESS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_concurrency: int = 4,
        gas: int | None = None,
        code_override: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk size must be at least 1, not {chunk_size}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.rpc = rpc
        self.address = address
        self.initial_chunk_size = chunk_size
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.gas = gas
        self.code_override = code_override
        self.round_trips = 0
        self.shrinks = 0

    def reset_chunk_size(self) -> None:
        self.chunk_size = self.initial_chunk_size

    async def aggregate(self, calls: Sequence[Call], *, block: BlockId) -> list[CallResult]:
        """Make every call at `block`; one CallResult per call, in order.

        `block` should be a number (the tick's block). A tag such as "latest" is resolved to a
        number first when the batch needs more than one chunk, so all chunks see one block.
        Raises RpcError when a chunk fails for another reason than its size (after the RPC
        client's own failover and retries), MulticallError when Multicall3 is not there.
        """
        if not calls:
            return []
        ranges = chunk_ranges(len(calls), self.chunk_size)
        if not isinstance(block, int) and len(ranges) > 1:
            self.round_trips += 1
            block = int(await self.rpc.request("eth_blockNumber", []), 16)
        block_arg = block_param(block)
        limit = asyncio.Semaphore(self.max_concurrency)
        outcomes = await asyncio.gather(
            *(self._run([calls[i] for i in r], block_arg, limit) for r in ranges),
            return_exceptions=True,
        )
        results: list[CallResult] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            results.extend(outcome)
        return results

    async def _run(
        self, chunk: list[Call], block: str, limit: asyncio.Semaphore
    ) -> list[CallResult]:
        async with limit:
            try:
                return await self._call(chunk, block)
            except RpcError as exc:
                if classify_error(exc) is not ErrorKind.TOO_LARGE:
                    raise
                refusal = exc
        # Refused for its size: halve (outside the semaphore, so the halves can get a place).
        if len(chunk) == 1:
            log.warning("a single call to %s was refused: %s", chunk[0].target, refusal)
            return [CallResult(False, b"", error=str(refusal))]
        half = len(chunk) // 2
        if half < self.chunk_size:
            log.info(
                "multicall chunk of %d refused (%s); chunks of %d now", len(chunk), refusal, half
            )
            self.chunk_size = half
        self.shrinks += 1
        left, right = await asyncio.gather(
            self._run(chunk[:half], block, limit), self._run(chunk[half:], block, limit)
        )
        return left + right

    async def _call(self, chunk: list[Call], block: str) -> list[CallResult]:
        data = await self._send_hex("0x" + encode_aggregate3(chunk).hex(), block)
        return decode_aggregate3(data, len(chunk), address=self.address)

    async def _send_hex(self, calldata: str, block: str) -> bytes:
        """One eth_call of aggregate3 calldata given as "0x" and hex at `block`: the answer's
        bytes; RpcMalformedResponseError when the result is not hex data."""
        tx: dict[str, Any] = {"to": self.address, "data": calldata}
        if self.gas is not None:
            tx["gas"] = hex(self.gas)
        params: list[Any] = [tx, block]
        if self.code_override:
            params.append({self.address: {"code": "0x" + MULTICALL3_RUNTIME.hex()}})
        self.round_trips += 1
        # decoded straight from the answer where the client can (DataRpc), strictly either way
        return await request_data(self.rpc, "eth_call", params)
