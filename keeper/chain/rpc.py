"""JSON-RPC over several endpoints: failover, head tracking, retries of reads, pinned-block reads.

`FailoverRpc(urls)` implements `JsonRpc`. What it does with a call depends on the method:

- Reads (`READ_METHODS`, an explicit allowlist of idempotent calls) go to the best endpoint;
  when it fails in a way that says the endpoint is unwell (connection refused, timeout, HTTP
  429/5xx, garbage, "internal error", "header not found"...) the next one is tried, and a
  whole pass over the endpoints that failed that way is retried by tenacity, with backoff.
  Errors that are the caller's (a revert, invalid params, ...) and refusals for gas or size
  are raised at once, from the first endpoint that gave them.
- Everything else (eth_sendRawTransaction above all) goes to one endpoint, never retried.
  It moves to the next endpoint only when the request certainly did not arrive (the
  connection could not be opened, or HTTP 429). A send whose fate is unknown (timeout,
  connection dropped, 5xx, garbage) raises `RpcSendOutcomeUnknownError` carrying the
  transaction hash, for the transaction manager to look up.
- A read at a block number (eth_call, eth_getBalance, ... with a number as the block
  parameter, or `request(..., block=N)`) is "pinned": an endpoint whose tracked head is below N
  is skipped for that read (its head is asked once more first, as it may be stale), and an
  endpoint that answers "header not found" / "unknown block" / null is skipped as well and
  its head lowered. When none has block N, `RpcBlockUnavailableError`.

Each endpoint's head is learnt from what it answers (eth_blockNumber, latest blocks, pinned
reads) and from `refresh_heads()`. An endpoint more than `max_lag` blocks behind the furthest
one goes to the back of the line. An endpoint that failed is cooled down (exponential, capped)
and tried after the others until it answers again.

`stats()` returns per-endpoint counts as plain data: requests, answers, errors by kind,
skipped pinned reads, latency sum / max / cumulative buckets (Prometheus-style), head.

Why raw aiohttp and not web3's AsyncHTTPProvider underneath: failover needs the HTTP status,
the raw error object and whether a request could have arrived, per endpoint; web3's provider
folds these into its own exceptions, runs its own retries and result formatters, and caches
sessions per event loop. web3 stays useful above this layer (ABI encoding); `ChainReads`
gives the handful of web3-style reads the keeper needs, returning plain ints, bytes and
`BlockHeader`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import time
from binascii import a2b_hex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from keeper.chain.jsonrpc import (
    HttpJsonRpc,
    JsonRpc,
    RpcBlockUnavailableError,
    RpcError,
    RpcMalformedResponseError,
    RpcResponseError,
    RpcSendOutcomeUnknownError,
    RpcTimeoutError,
    RpcTransportError,
    endpoint_label,
    hex_data,
    request_data,
    transaction_hash,
)

log = logging.getLogger(__name__)

# Idempotent reads: the only calls that are failed over and retried.
READ_METHODS = frozenset(
    {
        "eth_chainId",
        "net_version",
        "web3_clientVersion",
        "eth_syncing",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockReceipts",
        "eth_call",
        "eth_estimateGas",
        "eth_createAccessList",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getProof",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_blobBaseFee",
    }
)

# Where the block parameter sits in each method's params.
BLOCK_PARAM_INDEX: dict[str, int] = {
    "eth_call": 1,
    "eth_estimateGas": 1,
    "eth_createAccessList": 1,
    "eth_getBalance": 1,
    "eth_getCode": 1,
    "eth_getTransactionCount": 1,
    "eth_getStorageAt": 2,
    "eth_getProof": 2,
    "eth_getBlockByNumber": 0,
    "eth_getBlockReceipts": 0,
}

SEND_METHOD = "eth_sendRawTransaction"

# Latency histogram bucket upper bounds, in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    math.inf,
)


class ErrorKind(enum.StrEnum):
    """What a failed call says about the endpoint, and so what to do next."""

    CONNECT = "connect"  # the connection could not be opened: the request did not arrive
    TIMEOUT = "timeout"
    TRANSPORT = "transport"  # dropped connection, answer cut short, unexpected HTTP status
    RATE_LIMITED = "rate_limited"  # HTTP 429, or a JSON-RPC rate-limit error
    SERVER = "server"  # HTTP 5xx
    MALFORMED = "malformed"  # not a JSON-RPC answer
    NODE = "node"  # a JSON-RPC error that says the node is unwell (internal error, syncing...)
    MISSING_BLOCK = "missing_block"  # the node does not have the block asked for (yet)
    TOO_LARGE = "too_large"  # refused for its gas or size: make the request smaller
    CALLER = "caller"  # the caller's error: revert, invalid params, nonce too low...


# Kinds after which the next endpoint is tried (reads), and the pass retried.
FAILOVER_KINDS = frozenset(
    {
        ErrorKind.CONNECT,
        ErrorKind.TIMEOUT,
        ErrorKind.TRANSPORT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
        ErrorKind.MALFORMED,
        ErrorKind.NODE,
        ErrorKind.MISSING_BLOCK,
    }
)
# Kinds that put the endpoint in cooldown.
UNHEALTHY_KINDS = FAILOVER_KINDS - {ErrorKind.MISSING_BLOCK}

_TOO_LARGE = (
    "out of gas",
    "gas required exceeds",
    "exceeds block gas limit",
    "intrinsic gas too high",
    "gas limit exceeded",
    "too large",  # "request entity too large", "response too large", "payload too large"
    "too big",
    "response size",
    "size exceeded",
    "size is larger than",
    "exceeds the maximum",
    "max message size",
    "body limit",
    "request too long",
    "execution aborted",  # geth's eth_call time cap: a smaller call may fit
)
_MISSING_BLOCK = (
    "header not found",
    "unknown block",
    "block not found",
    "blockoutofrange",
    "block height is",
    "block number out of range",
    "future block",
    "requested block",
    "after last accepted block",
    "is greater than the current",
    "greater than latest",
    "cannot query unfinalized",
)
_RATE_LIMITED = (
    "rate limit",
    "rate-limit",
    "ratelimit",
    "too many requests",
    "exceeded its compute units",
    "capacity exceeded",
    "request limit",
    "throughput",
)
_CALLER = (
    "execution reverted",
    "revert",
    "invalid opcode",
    "nonce too low",
    "nonce too high",
    "already known",
    "known transaction",
    "already imported",
    "underpriced",
    "insufficient funds",
    "intrinsic gas too low",
    "fee cap less than",
    "less than block base fee",
    "max priority fee per gas higher",
    "exceeds the configured cap",
    "invalid sender",
    "invalid signature",
    "invalid transaction",
    "failed to decode",
    "invalid argument",
    "invalid params",
    "invalid input",
    "stack underflow",
    "stack overflow",
)
_NODE = (
    "internal error",
    "missing trie node",
    "timeout",
    "timed out",
    "syncing",
    "unavailable",
    "temporarily",
    "try again",
    "busy",
    "overloaded",
    "upstream",
    "backend",
    "bad gateway",
    "connection",
    "not supported",
    "does not exist/is not available",
    "method not found",
)
_NODE_CODES = frozenset({-32603, -32002, -32001, -32004, -32601})
_CALLER_CODES = frozenset({3, -32602, -32600, -32700, -32003})


def classify_error(exc: RpcError) -> ErrorKind:
    """Say what a failed call means: the endpoint's trouble, the request's size, or the caller's.

    JSON-RPC errors are judged by message first (nodes disagree on codes: Anvil answers a
    missing block with -32602, geth a revert with 3 or -32000), then by code. An unknown error
    object from a node that answered is the caller's: raised at once, not failed over.
    """
    if isinstance(exc, RpcTimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, RpcTransportError):
        if exc.status == 429:
            return ErrorKind.RATE_LIMITED
        if exc.status == 413:
            return ErrorKind.TOO_LARGE
        if exc.status is not None and exc.status >= 500:
            return ErrorKind.SERVER
        if not exc.may_have_arrived:
            return ErrorKind.CONNECT
        return ErrorKind.TRANSPORT
    if isinstance(exc, RpcMalformedResponseError):
        return ErrorKind.MALFORMED
    if isinstance(exc, RpcBlockUnavailableError):
        return ErrorKind.MISSING_BLOCK
    if isinstance(exc, RpcResponseError):
        text = exc.rpc_message.lower()
        if exc.status == 413 or any(p in text for p in _TOO_LARGE):
            return ErrorKind.TOO_LARGE
        if any(p in text for p in _MISSING_BLOCK):
            return ErrorKind.MISSING_BLOCK
        if exc.status == 429 or exc.code == -32005 or any(p in text for p in _RATE_LIMITED):
            return ErrorKind.RATE_LIMITED
        if exc.code in _CALLER_CODES or any(p in text for p in _CALLER):
            return ErrorKind.CALLER
        if exc.code in _NODE_CODES or any(p in text for p in _NODE):
            return ErrorKind.NODE
        if exc.status is not None and exc.status >= 500:
            return ErrorKind.SERVER
        return ErrorKind.CALLER
    return ErrorKind.TRANSPORT


def should_fail_over(exc: BaseException) -> bool:
    """True when another endpoint (or a later attempt) may well answer this read."""
    return isinstance(exc, RpcError) and classify_error(exc) in FAILOVER_KINDS


def pinned_block(method: str, params: Sequence[Any]) -> int | None:
    """The block number a call is made at, when it is a number rather than a tag."""
    index = BLOCK_PARAM_INDEX.get(method)
    if index is None or index >= len(params):
        return None
    value = params[index]
    if isinstance(value, dict):  # EIP-1898: {"blockNumber": "0x.."} or {"blockHash": ...}
        value = value.get("blockNumber")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


def order_endpoints(
    heads: Sequence[int | None],
    cooling: Sequence[bool],
    *,
    max_lag: int,
    block: int | None = None,
) -> list[int]:
    """The order in which to try endpoints (indexes into the configured list).

    Healthy before cooling down; for a read at `block`, those known to have it, then those of
    unknown head, then those known to be behind it; endpoints within `max_lag` blocks of the
    furthest-ahead one in configured order, then lagging ones, furthest ahead first.
    """
    known = [h for h in heads if h is not None]
    best = max(known) if known else None

    def key(i: int) -> tuple[int, int, int, int, int]:
        head = heads[i]
        lagging = head is not None and best is not None and best - head > max_lag
        if block is None:
            rank = 0
        elif head is None:
            rank = 1
        else:
            rank = 0 if head >= block else 2
        return (
            int(cooling[i]),
            rank,
            int(lagging),
            -(head or 0) if lagging else 0,
            i,
        )

    return sorted(range(len(heads)), key=key)


@dataclass
class EndpointStats:
    """Counts for one endpoint; `FailoverRpc.stats()` hands out copies."""

    label: str
    requests: int = 0
    answers: int = 0  # requests answered with a result
    errors: dict[str, int] = field(default_factory=dict)  # ErrorKind value -> count
    skipped: int = 0  # pinned reads not sent here because it lacked the block
    latency_sum: float = 0.0  # seconds, over all requests
    latency_max: float = 0.0
    # upper bound (s) -> requests that took at most that long (cumulative, last is +Inf)
    latency_buckets: dict[float, int] = field(
        default_factory=lambda: dict.fromkeys(LATENCY_BUCKETS, 0)
    )
    head: int | None = None
    healthy: bool = True
    consecutive_failures: int = 0

    def copy(self) -> EndpointStats:
        return dataclasses.replace(
            self, errors=dict(self.errors), latency_buckets=dict(self.latency_buckets)
        )


class _Endpoint:
    def __init__(self, client: JsonRpc, label: str) -> None:
        self.client = client
        self.stats = EndpointStats(label=label)
        self.cooldown_until = 0.0

    @property
    def label(self) -> str:
        return self.stats.label


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """What the keeper needs of a block."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int | None  # None before London

    @classmethod
    def from_json(cls, method: str, raw: Any, *, endpoint: str = "") -> BlockHeader:
        """Parse a block object as nodes return it; RpcMalformedResponseError if it is not one."""
        if not isinstance(raw, dict):
            raise RpcMalformedResponseError(
                method, f"block is not an object: {raw!r:.80}", endpoint=endpoint
            )
        try:
            base_fee = raw.get("baseFeePerGas")
            return cls(
                number=_hex_int(raw["number"]),
                hash=_hex_str(raw["hash"]),
                parent_hash=_hex_str(raw["parentHash"]),
                timestamp=_hex_int(raw["timestamp"]),
                base_fee=None if base_fee is None else _hex_int(base_fee),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcMalformedResponseError(
                method, f"malformed block ({type(exc).__name__}: {exc})", endpoint=endpoint
            ) from None


def _hex_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not a hex quantity: {value!r:.40}")
    return int(value, 16)


def _hex_str(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not hex data: {value!r:.40}")
    return value


def _hex_bytes(value: Any) -> bytes:
    return a2b_hex(_hex_str(value)[2:])  # strict: no whitespace, unlike bytes.fromhex


BlockId = int | str  # a block number, or a tag: "latest", "pending", "safe", "finalized"
_TAGS = frozenset({"latest", "pending", "safe", "finalized", "earliest"})


def block_param(block: BlockId) -> str:
    """The JSON-RPC block parameter for a number or a tag."""
    if isinstance(block, bool):
        raise TypeError("a block is a number or a tag, not a bool")
    if isinstance(block, int):
        if block < 0:
            raise ValueError(f"block number {block} is negative")
        return hex(block)
    if block in _TAGS:
        return block
    raise ValueError(f"unknown block tag {block!r}: use a number or one of {sorted(_TAGS)}")


def _hexdata(data: bytes | str) -> str:
    if isinstance(data, bytes):
        return "0x" + data.hex()
    return data if data.startswith("0x") else "0x" + data


class ChainReads:
    """web3-style reads over `self.request`, returning plain ints, bytes and BlockHeaders.

    Results that are not what the call promises raise RpcMalformedResponseError naming it.
    """

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    async def _quantity(self, method: str, params: Sequence[Any]) -> int:
        result = await self.request(method, params)
        try:
            return _hex_int(result)
        except ValueError as exc:
            raise RpcMalformedResponseError(method, str(exc)) from None

    async def _data(self, method: str, params: Sequence[Any]) -> bytes:
        result = await self.request(method, params)
        try:
            return _hex_bytes(result)
        except ValueError as exc:
            raise RpcMalformedResponseError(method, f"result is not hex data: {exc}") from None

    async def chain_id(self) -> int:
        return await self._quantity("eth_chainId", [])

    async def block_number(self) -> int:
        return await self._quantity("eth_blockNumber", [])

    async def get_block(self, block: BlockId = "latest") -> BlockHeader:
        """The block's header; RpcBlockUnavailableError when the node has no such block."""
        method = "eth_getBlockByNumber"
        raw = await self.request(method, [block_param(block), False])
        if raw is None:
            number = block if isinstance(block, int) else -1
            raise RpcBlockUnavailableError(method, number, f"no block {block}")
        return BlockHeader.from_json(method, raw)

    async def eth_call(
        self,
        to: str,
        data: bytes | str,
        block: BlockId = "latest",
        *,
        sender: str | None = None,
        value: int = 0,
        gas: int | None = None,
    ) -> bytes:
        """The call's return data. A revert raises RpcResponseError (its `data` is the reason)."""
        tx: dict[str, str] = {"to": to, "data": _hexdata(data)}
        if sender is not None:
            tx["from"] = sender
        if value:
            tx["value"] = hex(value)
        if gas is not None:
            tx["gas"] = hex(gas)
        return await self._data("eth_call", [tx, block_param(block)])

    async def get_balance(self, address: str, block: BlockId = "latest") -> int:
        return await self._quantity("eth_getBalance", [address, block_param(block)])

    async def get_code(self, address: str, block: BlockId = "latest") -> bytes:
        return await self._data("eth_getCode", [address, block_param(block)])

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        return await self._quantity("eth_getTransactionCount", [address, block_param(block)])

    async def send_raw_transaction(self, raw_tx: bytes | str) -> str:
        """Send a signed transaction; its hash. See FailoverRpc for what a send may raise."""
        result = await self.request(SEND_METHOD, [_hexdata(raw_tx)])
        try:
            return _hex_str(result)
        except ValueError as exc:
            raise RpcMalformedResponseError(SEND_METHOD, str(exc)) from None


class Reads(ChainReads):
    """The convenience reads over any JsonRpc (a plain HttpJsonRpc, a test double...)."""

    def __init__(self, rpc: JsonRpc) -> None:
        self.rpc = rpc

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        return await self.rpc.request(method, params)


TRANSPORTS = ("aiohttp", "web3")


def make_endpoint(spec: str, *, timeout: float = 10.0, transport: str = "aiohttp") -> JsonRpc:
    """One endpoint client for a URL or an IPC path: http(s):// -> `HttpJsonRpc` (or, with
    `transport="web3"`, a `Web3Rpc` over web3's AsyncHTTPProvider), ws(s):// or a path ->
    `Web3Rpc` over web3's WebSocketProvider / AsyncIPCProvider. ValueError otherwise."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in ("http", "https") and transport == "aiohttp":
        return HttpJsonRpc(spec, timeout=timeout)
    from keeper.chain.web3rpc import web3_endpoint  # noqa: PLC0415 (it imports this module)

    return web3_endpoint(spec, timeout=timeout)


class FailoverRpc(ChainReads):
    """Several endpoints behind one `JsonRpc`; see the module's docstring for the rules.

    `endpoints` are URLs or IPC paths (`make_endpoint`: http(s):// an `HttpJsonRpc`, or a
    `Web3Rpc` over web3's AsyncHTTPProvider with `transport="web3"`; ws(s):// and IPC paths a
    `Web3Rpc` over web3's WebSocketProvider / AsyncIPCProvider), each with `timeout`, or ready
    JsonRpc objects (a `Web3Rpc` around an AsyncWeb3 of your own, say). `attempts` is how
    many passes over the endpoints a read gets; `max_lag` how many
    blocks behind the furthest endpoint one may be before it is used only after the others;
    failed endpoints cool down for `cooldown` seconds, doubling per consecutive failure up to
    `max_cooldown`.
    """

    def __init__(
        self,
        endpoints: Sequence[str | JsonRpc],
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        max_lag: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        retry_wait: float = 0.05,
        retry_wait_max: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        transport: str = "aiohttp",
    ) -> None:
        if not endpoints:
            raise ValueError("FailoverRpc needs at least one endpoint")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._endpoints: list[_Endpoint] = []
        labels: set[str] = set()
        for i, ep in enumerate(endpoints):
            client = (
                make_endpoint(ep, timeout=timeout, transport=transport)
                if isinstance(ep, str)
                else ep
            )
            label = getattr(client, "label", None) or (
                endpoint_label(ep) if isinstance(ep, str) else repr(client)
            )
            if label in labels:  # two keys on one provider: keep labels distinct
                label = f"{label}#{i}"
            labels.add(label)
            self._endpoints.append(_Endpoint(client, label))
        self.attempts = attempts
        self.max_lag = max_lag
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self._clock = clock
        self.round_trips = 0  # requests sent to any endpoint, retries and head refreshes included

    def __repr__(self) -> str:
        return f"FailoverRpc({[ep.label for ep in self._endpoints]!r})"

    @property
    def labels(self) -> list[str]:
        return [ep.label for ep in self._endpoints]

    def stats(self) -> list[EndpointStats]:
        """Per-endpoint counts, in configured order (copies: plain data)."""
        now = self._clock()
        out = []
        for ep in self._endpoints:
            ep.stats.healthy = ep.cooldown_until <= now
            out.append(ep.stats.copy())
        return out

    @property
    def best_head(self) -> int | None:
        heads = [ep.stats.head for ep in self._endpoints if ep.stats.head is not None]
        return max(heads) if heads else None

    async def refresh_heads(self) -> dict[str, int | None]:
        """Ask every endpoint for its head at once; label -> head (None when it failed)."""

        async def one(ep: _Endpoint) -> int | None:
            try:
                return _hex_int(await self._send(ep, "eth_blockNumber", []))
            except (RpcError, ValueError):
                return None

        heads = await asyncio.gather(*(one(ep) for ep in self._endpoints))
        return {ep.label: head for ep, head in zip(self._endpoints, heads, strict=True)}

    async def request(
        self, method: str, params: Sequence[Any] = (), *, block: int | None = None
    ) -> Any:
        """Send one call by the rules above; `block` pins a read to a block number.

        Raises RpcResponseError (the caller's errors, at once), RpcBlockUnavailableError,
        RpcSendOutcomeUnknownError (sends), or the last endpoint's error once all failed.
        """
        params = list(params)
        if method in READ_METHODS:
            if block is None:
                block = pinned_block(method, params)
            return await self._retrying()(self._read_pass, method, params, block)
        return await self._write(method, params)

    async def request_data(
        self, method: str, params: Sequence[Any] = (), *, block: int | None = None
    ) -> bytes:
        """`request` for a read whose result is hex data (eth_call, eth_getCode): the same
        failover, retries and pinning; the result decoded to bytes (straight from the answer
        where the endpoint's client can, `DataRpc`)."""
        params = list(params)
        if method not in READ_METHODS:
            return hex_data(method, await self._write(method, params))
        if block is None:
            block = pinned_block(method, params)
        data: bytes = await self._retrying()(self._read_pass, method, params, block, data=True)
        return data

    def head_source(self) -> Any | None:
        """The first endpoint that pushes new heads (a WebSocket or IPC one), for
        `BlockStream(heads=...)`; None when every endpoint is polled."""
        for ep in self._endpoints:
            if getattr(ep.client, "persistent", False) and hasattr(ep.client, "new_heads"):
                return ep.client
        return None

    async def close(self) -> None:
        for ep in self._endpoints:
            closer = getattr(ep.client, "close", None)
            if closer is not None:
                await closer()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals --

    def _retrying(self) -> AsyncRetrying:
        """tenacity's retry of whole passes over the endpoints, for reads."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.retry_wait, max=self.retry_wait_max, jitter=self.retry_wait
            ),
            retry=retry_if_exception(should_fail_over),
            reraise=True,
        )

    def _order(self, block: int | None) -> list[_Endpoint]:
        now = self._clock()
        order = order_endpoints(
            [ep.stats.head for ep in self._endpoints],
            [ep.cooldown_until > now for ep in self._endpoints],
            max_lag=self.max_lag,
            block=block,
        )
        return [self._endpoints[i] for i in order]

    async def _read_pass(
        self, method: str, params: list[Any], block: int | None, *, data: bool = False
    ) -> Any:
        last: RpcError | None = None
        only_missing = True  # every endpoint lacked the block (skipped, or said so)
        for ep in self._order(block):
            if block is not None and not await self._has_block(ep, block):
                ep.stats.skipped += 1
                continue
            try:
                result = await self._send(ep, method, params, data=data)
            except RpcError as exc:
                kind = classify_error(exc)
                if kind not in FAILOVER_KINDS:
                    raise
                if kind is ErrorKind.MISSING_BLOCK and block is not None:
                    self._lower_head(ep, block - 1)
                else:
                    only_missing = False
                log.debug("%s failed at %s (%s), trying the next endpoint", method, ep.label, kind)
                last = exc
                continue
            if result is None and block is not None and method == "eth_getBlockByNumber":
                self._lower_head(ep, block - 1)
                ep.stats.skipped += 1
                continue
            if block is not None:
                self._raise_head(ep, block)
            return result
        if last is not None and not (block is not None and only_missing):
            raise last
        detail = f" (last: {last})" if last is not None else ""
        raise RpcBlockUnavailableError(
            method, block if block is not None else -1, f"no endpoint has block {block}{detail}"
        ) from last

    async def _has_block(self, ep: _Endpoint, block: int) -> bool:
        head = ep.stats.head
        if head is not None and head >= block:
            return True
        if head is None:
            return True  # unknown: try it, a missing block is detected from the answer
        try:  # known to be behind, but that may be stale: ask once
            self._learn_head(ep, _hex_int(await self._send(ep, "eth_blockNumber", [])))
        except (RpcError, ValueError):
            return False
        return ep.stats.head is not None and ep.stats.head >= block

    async def _write(self, method: str, params: list[Any]) -> Any:
        last: RpcError | None = None
        for ep in self._order(None):
            try:
                return await self._send(ep, method, params)
            except RpcTransportError as exc:
                if not exc.may_have_arrived:
                    last = exc  # certainly not received: the next endpoint may take it
                    continue
                if method == SEND_METHOD:
                    raise self._unknown(exc, params) from exc
                raise
            except RpcMalformedResponseError as exc:
                if method == SEND_METHOD:
                    raise self._unknown(exc, params) from exc
                raise
            except RpcResponseError as exc:
                kind = classify_error(exc)
                if kind is ErrorKind.RATE_LIMITED:
                    last = exc  # refused before doing anything
                    continue
                if method == SEND_METHOD and kind in (ErrorKind.NODE, ErrorKind.SERVER):
                    raise self._unknown(exc, params) from exc
                raise
        assert last is not None
        raise last

    @staticmethod
    def _unknown(exc: RpcError, params: list[Any]) -> RpcSendOutcomeUnknownError:
        raw = params[0] if params and isinstance(params[0], str) else ""
        reason = str(exc).split(": ", 1)[-1]
        return RpcSendOutcomeUnknownError(
            SEND_METHOD, reason, endpoint=exc.endpoint, tx_hash=transaction_hash(raw)
        )

    async def _send(
        self, ep: _Endpoint, method: str, params: list[Any], *, data: bool = False
    ) -> Any:
        stats = ep.stats
        stats.requests += 1
        self.round_trips += 1
        started = time.perf_counter()
        try:
            if data:
                result: Any = await request_data(ep.client, method, params)
            else:
                result = await ep.client.request(method, params)
        except RpcError as exc:
            self._observe(ep, time.perf_counter() - started)
            kind = classify_error(exc)
            stats.errors[kind.value] = stats.errors.get(kind.value, 0) + 1
            if kind in UNHEALTHY_KINDS:
                self._failed(ep)
            else:
                self._answered(ep)
            raise
        self._observe(ep, time.perf_counter() - started)
        stats.answers += 1
        self._answered(ep)
        if method == "eth_blockNumber":
            with contextlib.suppress(ValueError):
                self._learn_head(ep, _hex_int(result))
        elif (
            method == "eth_getBlockByNumber"
            and params
            and params[0] == "latest"
            and isinstance(result, dict)
        ):
            with contextlib.suppress(ValueError):
                self._learn_head(ep, _hex_int(result.get("number")))
        return result

    def _observe(self, ep: _Endpoint, seconds: float) -> None:
        stats = ep.stats
        stats.latency_sum += seconds
        stats.latency_max = max(stats.latency_max, seconds)
        for bound in LATENCY_BUCKETS:
            if seconds <= bound:
                stats.latency_buckets[bound] += 1

    def _failed(self, ep: _Endpoint) -> None:
        ep.stats.consecutive_failures += 1
        pause = min(self.cooldown * 2 ** (ep.stats.consecutive_failures - 1), self.max_cooldown)
        ep.cooldown_until = self._clock() + pause

    def _answered(self, ep: _Endpoint) -> None:
        ep.stats.consecutive_failures = 0
        ep.cooldown_until = 0.0

    @staticmethod
    def _learn_head(ep: _Endpoint, head: int) -> None:
        """The endpoint's head as it just said it: may go down (it lags, or reorged)."""
        ep.stats.head = head

    @staticmethod
    def _raise_head(ep: _Endpoint, block: int) -> None:
        if ep.stats.head is None or ep.stats.head < block:
            ep.stats.head = block

    @staticmethod
    def _lower_head(ep: _Endpoint, head: int) -> None:
        """It lacks block head + 1: a known head above that was wrong (an unknown one stays)."""
        if ep.stats.head is not None and ep.stats.head > head:
            ep.stats.head = head


class CountingRpc:
    """Wraps a JsonRpc and counts the requests made through it (round trips), by method."""

    def __init__(self, inner: JsonRpc) -> None:
        self.inner = inner
        self.count = 0
        self.by_method: dict[str, int] = {}

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.count += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        return await self.inner.request(method, params)

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        self.count += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        return await request_data(self.inner, method, params)

    def reset(self) -> None:
        self.count = 0
        self.by_method.clear()
