"""JSON-RPC over several endpoints: failover, head tracking, retries of reads, pinned-block reads,
timeouts from each endpoint's recent latency, hedged reads and broadcast sends.

`FailoverRpc(urls)` implements `JsonRpc`. What it does with a call depends on the method:

- Reads (`READ_METHODS`, an explicit allowlist of idempotent calls) go to the best endpoint;
  when it fails in a way that says the endpoint is unwell (connection refused, timeout, HTTP
  429/5xx, garbage, "internal error", "header not found"...) the next one is tried, and a
  whole pass over the endpoints that failed that way is retried by tenacity, with backoff.
  Errors that are the caller's (a revert, invalid params, ...) and refusals for gas or size
  are raised at once, from the first endpoint that gave them.
- Hedging (`hedge=True`, the default): a read not answered within the endpoint's recent p95
  latency for its kind of call (until that kind has history, the fastest p95 of the
  endpoint's other kinds, and `hedge_initial` when none has any; at least `hedge_floor`, at
  most `hedge_initial`) is also
  sent to the next endpoint in order (a healthy one, unless all the others are cooling
  down: better one in trouble a moment ago than waiting out a hang), with the same
  parameters (so at the same block number when pinned). The first valid answer wins;
  the other request is left to finish in the background within its own timeout, so that its
  failure still counts (a hang times out and cools its endpoint down); its latency is not
  learnt (`EndpointStats.hedges`, `hedge_wins`). At most two requests of one read are in
  flight; one that fails is replaced by the next endpoint at once, as without hedging.
- eth_sendRawTransaction with `broadcast=True` (the default) goes to every endpoint at once,
  those cooling down included (a send is rare, the same signed bytes are harmless to repeat,
  and a cooldown may be a moment's trouble: waiting on the one healthy endpoint that hangs
  is what broadcasting is for). The first that accepts it (a hash, or "already known" /
  "known transaction" / "already imported": it has these very bytes) makes the send a
  success, returned at once; the other sends finish in the background within their
  timeouts, their answers counted in the stats only (a "nonce too low" after another
  endpoint took the transaction is that transaction, mined). When none accepts: if any may
  have received it (timeout, dropped connection, 5xx, garbage, a node error),
  `RpcSendOutcomeUnknownError` with the transaction's hash, for the transaction manager to
  look up; else the first rejection in endpoint order (nonce too low, underpriced, ...),
  raised as the node gave it; else (it certainly reached none: refused, HTTP 429) the last
  endpoint's error. It is one transaction throughout: the same signed bytes, one hash.
- Everything else (and sends with `broadcast=False`) goes to one endpoint, never retried.
  It moves to the next endpoint only when the request certainly did not arrive (the
  connection could not be opened, or HTTP 429). A send whose fate is unknown (timeout,
  connection dropped, 5xx, garbage) raises `RpcSendOutcomeUnknownError` carrying the
  transaction hash, for the transaction manager to look up.
- A read at a block number (eth_call, eth_getBalance, ... with a number as the block
  parameter, or `request(..., block=N)`, which also puts N in place of a block tag in the
  parameters) is "pinned": an endpoint whose tracked head is below N
  is skipped for that read (its head is asked once more first, as it may be stale), and an
  endpoint that answers "header not found" / "unknown block" / null is skipped as well and
  its head lowered. When none has block N, `RpcBlockUnavailableError`.

Timeouts (keeper/chain/timeouts.py): every request is bounded by the endpoint's own recent
latency for its kind of call (`CallKind`: head, read, call, logs, send): `TimeoutPolicy`'s
multiple of the p99 of its last answers, within a floor and a cap; a short initial timeout
(2 s unless configured) until enough answers are in; doubled after each timeout in a row
there, up to the cap, and back once it answers: a call slower than its history (a big first
batch, a bigger batch) times out once or twice and then gets its answer, which teaches the
window.

Each endpoint's head is learnt from what it answers (eth_blockNumber, latest blocks, pinned
reads) and from `refresh_heads()`. An endpoint more than `max_lag` blocks behind the furthest
one goes to the back of the line. An endpoint that failed is cooled down (exponential, capped)
and tried after the others until it answers again.

`stats()` returns per-endpoint counts as plain data: requests, answers, errors by kind,
skipped pinned reads, latency sum / max / cumulative buckets (Prometheus-style), head, hedges,
and per kind of call the recent p95 / p99 and the timeout the next request would get.

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
from collections.abc import Callable, Mapping, Sequence
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
from keeper.chain.timeouts import (
    DEFAULT_FLOOR,
    DEFAULT_WINDOW,
    CallKind,
    LatencyWindow,
    TimeoutPolicy,
    call_kind,
)

__all__ = [
    "BLOCK_PARAM_INDEX",
    "FAILOVER_KINDS",
    "LATENCY_BUCKETS",
    "READ_METHODS",
    "SEND_METHOD",
    "TRANSPORTS",
    "UNHEALTHY_KINDS",
    "BlockHeader",
    "BlockId",
    "ChainReads",
    "CountingRpc",
    "EndpointStats",
    "ErrorKind",
    "FailoverRpc",
    "Reads",
    "Timeouts",
    "block_param",
    "classify_error",
    "make_endpoint",
    "order_endpoints",
    "pinned_block",
    "should_fail_over",
]

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
    hedges: int = 0  # reads sent here because the endpoint asked first was slow to answer
    hedge_wins: int = 0  # of those, answered here first
    # CallKind value -> seconds, over the recent answers (kinds with any answers)
    p95: dict[str, float] = field(default_factory=dict)
    p99: dict[str, float] = field(default_factory=dict)
    # CallKind value -> the timeout (s) the next request of that kind would get (first pass)
    timeouts: dict[str, float] = field(default_factory=dict)

    def copy(self) -> EndpointStats:
        return dataclasses.replace(
            self,
            errors=dict(self.errors),
            latency_buckets=dict(self.latency_buckets),
            p95=dict(self.p95),
            p99=dict(self.p99),
            timeouts=dict(self.timeouts),
        )


class _Endpoint:
    def __init__(self, client: JsonRpc, label: str, window: int) -> None:
        self.client = client
        self.stats = EndpointStats(label=label)
        self.cooldown_until = 0.0
        self.latency = {kind: LatencyWindow(window) for kind in CallKind}
        self.backoff = dict.fromkeys(CallKind, 0)  # timeouts in a row, per kind

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


class _SkippedError(Exception):
    """A pinned read not sent to an endpoint, or answered with null: it lacks the block."""


class _Waited:
    """Whether someone still waits for a request's answer: only then is its latency learnt
    (keeper/chain/timeouts.py says why)."""

    __slots__ = ("waited",)

    def __init__(self) -> None:
        self.waited = True


_KNOWN_TX = ("already known", "known transaction", "already imported")
Timeouts = TimeoutPolicy | Mapping[CallKind | str, TimeoutPolicy]
"""FailoverRpc's `timeouts`: one policy for every kind of call, or one per kind."""


class FailoverRpc(ChainReads):
    """Several endpoints behind one `JsonRpc`; see the module's docstring for the rules.

    `endpoints` are URLs or IPC paths (`make_endpoint`: http(s):// an `HttpJsonRpc`, or a
    `Web3Rpc` over web3's AsyncHTTPProvider with `transport="web3"`; ws(s):// and IPC paths a
    `Web3Rpc` over web3's WebSocketProvider / AsyncIPCProvider), or ready JsonRpc objects (a
    `Web3Rpc` around an AsyncWeb3 of your own, say). `attempts` is how many passes over the
    endpoints a read gets; `max_lag` how many blocks behind the furthest endpoint one may be
    before it is used only after the others; failed endpoints cool down for `cooldown`
    seconds, doubling per consecutive failure up to `max_cooldown`.

    `timeouts` is one `TimeoutPolicy` for every kind of call, or a mapping from `CallKind` (or
    its value) to a policy, kinds left out getting the default one; without it, every kind
    gets a policy capped at `timeout` (default 10 s, the floor the default 0.25 s or `timeout`
    when less). The clients made from URLs get the largest cap as their own fixed timeout, a
    backstop. `hedge`, `hedge_floor` and `hedge_initial` rule hedged reads, `broadcast` sends;
    `latency_window` is how many answers per endpoint and kind the latency windows keep.
    """

    def __init__(
        self,
        endpoints: Sequence[str | JsonRpc],
        *,
        timeout: float = 10.0,
        timeouts: Timeouts | None = None,
        attempts: int = 3,
        max_lag: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        retry_wait: float = 0.05,
        retry_wait_max: float = 1.0,
        hedge: bool = True,
        hedge_floor: float = 0.05,
        hedge_initial: float = 0.25,
        broadcast: bool = True,
        latency_window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        transport: str = "aiohttp",
    ) -> None:
        if not endpoints:
            raise ValueError("FailoverRpc needs at least one endpoint")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if hedge_floor < 0 or hedge_initial < 0:
            raise ValueError("hedge_floor and hedge_initial are seconds >= 0")
        self.policies = _policies(timeouts, timeout)
        backstop = max(p.cap for p in self.policies.values())
        self._endpoints: list[_Endpoint] = []
        labels: set[str] = set()
        for i, ep in enumerate(endpoints):
            client = (
                make_endpoint(ep, timeout=backstop, transport=transport)
                if isinstance(ep, str)
                else ep
            )
            label = getattr(client, "label", None) or (
                endpoint_label(ep) if isinstance(ep, str) else repr(client)
            )
            if label in labels:  # two keys on one provider: keep labels distinct
                label = f"{label}#{i}"
            labels.add(label)
            self._endpoints.append(_Endpoint(client, label, latency_window))
        self.attempts = attempts
        self.max_lag = max_lag
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self.hedge = hedge
        self.hedge_floor = hedge_floor
        self.hedge_initial = hedge_initial
        self.broadcast = broadcast
        self._clock = clock
        self._background: set[asyncio.Future[Any]] = set()
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
            stats = ep.stats
            stats.healthy = ep.cooldown_until <= now
            for kind, window in ep.latency.items():
                p95, p99 = window.p95, window.p99
                if p95 is not None and p99 is not None:
                    stats.p95[kind.value], stats.p99[kind.value] = p95, p99
                stats.timeouts[kind.value] = self._timeout(ep, kind)
            out.append(stats.copy())
        return out

    @property
    def best_head(self) -> int | None:
        heads = [ep.stats.head for ep in self._endpoints if ep.stats.head is not None]
        return max(heads) if heads else None

    async def refresh_heads(self) -> dict[str, int | None]:
        """Ask every endpoint for its head at once; label -> head (None when it failed).
        Each is bounded by its endpoint's timeout for head calls."""

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
        if method in READ_METHODS:
            params, block = _pin(method, params, block)
            return await self._read(method, params, block, data=False)
        return await self._write(method, list(params))

    async def request_data(
        self, method: str, params: Sequence[Any] = (), *, block: int | None = None
    ) -> bytes:
        """`request` for a read whose result is hex data (eth_call, eth_getCode): the same
        failover, retries, hedging and pinning; the result decoded to bytes (straight from
        the answer where the endpoint's client can, `DataRpc`)."""
        if method not in READ_METHODS:
            return hex_data(method, await self._write(method, list(params)))
        params, block = _pin(method, params, block)
        data: bytes = await self._read(method, params, block, data=True)
        return data

    def head_source(self) -> Any | None:
        """The first endpoint that pushes new heads (a WebSocket or IPC one), for
        `BlockStream(heads=...)`; None when every endpoint is polled."""
        for ep in self._endpoints:
            if getattr(ep.client, "persistent", False) and hasattr(ep.client, "new_heads"):
                return ep.client
        return None

    async def close(self) -> None:
        """Cancels what is left of hedged reads and broadcast sends, closes the clients."""
        left, self._background = self._background, set()
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        for ep in self._endpoints:
            closer = getattr(ep.client, "close", None)
            if closer is not None:
                await closer()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _timeout(self, ep: _Endpoint, kind: CallKind) -> float:
        """The timeout (s) of the next request of `kind` to `ep`."""
        return self.policies[kind].timeout(ep.latency[kind], ep.backoff[kind])

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

    async def _read(self, method: str, params: list[Any], block: int | None, *, data: bool) -> Any:
        return await self._retrying()(self._read_pass, method, params, block, data=data)

    def _order(self, block: int | None) -> list[_Endpoint]:
        now = self._clock()
        order = order_endpoints(
            [ep.stats.head for ep in self._endpoints],
            [ep.cooldown_until > now for ep in self._endpoints],
            max_lag=self.max_lag,
            block=block,
        )
        return [self._endpoints[i] for i in order]

    def _hedge_delay(self, ep: _Endpoint, kind: CallKind) -> float | None:
        """How long to wait for `ep` before asking another endpoint too; None: do not (no
        hedging, or the request times out first, after which the next one is asked anyway)."""
        if not self.hedge:
            return None
        policy, window = self.policies[kind], ep.latency[kind]
        p95 = window.p95
        if p95 is None or not policy.settled(window):
            # few answers of this kind yet (fee history, nonces, receipts come once per
            # action): the fastest p95 the endpoint has settled for another kind, so that a
            # hang on such a call costs a hedge delay of this endpoint's pace, not the initial
            known = [
                w.p95
                for k, w in ep.latency.items()
                if k is not kind and w.p95 is not None and self.policies[k].settled(w)
            ]
            p95 = min(known) if known else None
        # never later than hedge_initial: an endpoint whose window has learnt a few hangs
        # (answered within a doubled timeout) must not make every read wait that long
        delay = self.hedge_initial if p95 is None else min(p95, self.hedge_initial)
        delay = max(delay, self.hedge_floor)
        return delay if delay < self._timeout(ep, kind) else None

    async def _read_pass(
        self, method: str, params: list[Any], block: int | None, *, data: bool
    ) -> Any:
        """One pass over the endpoints, hedged: see the module's docstring."""
        kind = call_kind(method)
        waiting = self._order(block)  # not asked yet, in order
        # request -> (endpoint, whether it is a hedge, whether it is still waited for)
        in_flight: dict[asyncio.Task[Any], tuple[_Endpoint, bool, _Waited]] = {}
        hedge_at = math.inf  # loop time at which to hedge the newest request
        loop = asyncio.get_running_loop()
        last: RpcError | None = None
        only_missing = True  # every endpoint lacked the block (skipped, or said so)

        def launch(*, hedge: bool) -> bool:
            """Ask the next endpoint in order (healthy ones come first)."""
            nonlocal hedge_at
            if not waiting:
                return False
            ep, waited = waiting.pop(0), _Waited()
            task = asyncio.ensure_future(
                self._attempt(ep, method, params, block, data=data, wait=waited)
            )
            in_flight[task] = (ep, hedge, waited)
            if hedge:
                ep.stats.hedges += 1
            delay = self._hedge_delay(ep, kind)
            hedge_at = math.inf if delay is None else loop.time() + delay
            return True

        try:
            launch(hedge=False)
            while in_flight:
                can_hedge = len(in_flight) < 2 and hedge_at < math.inf and waiting
                wait = max(hedge_at - loop.time(), 0.0) if can_hedge else None
                done, _ = await asyncio.wait(
                    in_flight, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    launch(hedge=True)
                    continue
                for task in [t for t in in_flight if t in done]:  # in the order asked
                    ep, hedged, _ = in_flight.pop(task)
                    try:
                        result = task.result()
                    except _SkippedError:
                        if self.hedge:
                            hedge_at = min(hedge_at, loop.time())  # hedge elsewhere at once
                        continue
                    except RpcError as exc:
                        error_kind = classify_error(exc)
                        if error_kind not in FAILOVER_KINDS:
                            raise
                        if error_kind is not ErrorKind.MISSING_BLOCK or block is None:
                            only_missing = False
                        log.debug(
                            "%s failed at %s (%s), trying the next endpoint",
                            method,
                            ep.label,
                            error_kind,
                        )
                        last = exc
                        continue
                    if hedged:
                        ep.stats.hedge_wins += 1
                    return result
                if not in_flight:
                    launch(hedge=False)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            raise
        finally:
            for task, (_, _, waited) in in_flight.items():
                self._leave(task, waited)  # the loser finishes (or times out) in the background
        if last is not None and not (block is not None and only_missing):
            raise last
        detail = f" (last: {last})" if last is not None else ""
        raise RpcBlockUnavailableError(
            method, block if block is not None else -1, f"no endpoint has block {block}{detail}"
        ) from last

    async def _attempt(
        self,
        ep: _Endpoint,
        method: str,
        params: list[Any],
        block: int | None,
        *,
        data: bool,
        wait: _Waited,
    ) -> Any:
        """One endpoint's try at a read: its result, `_SkippedError`, or its RpcError."""
        if block is not None and not await self._has_block(ep, block, wait):
            ep.stats.skipped += 1
            raise _SkippedError
        try:
            result = await self._send(ep, method, params, data=data, wait=wait)
        except RpcError as exc:
            if block is not None and classify_error(exc) is ErrorKind.MISSING_BLOCK:
                self._lower_head(ep, block - 1)
            raise
        if result is None and block is not None and method == "eth_getBlockByNumber":
            self._lower_head(ep, block - 1)
            ep.stats.skipped += 1
            raise _SkippedError
        if block is not None:
            self._raise_head(ep, block)
        return result

    def _leave(self, task: asyncio.Future[Any], waited: _Waited) -> None:
        """Let a request nobody waits for any more finish in the background (its outcome still
        goes into the endpoint's stats, its latency not into its window); `close()` cancels
        what is left."""
        waited.waited = False
        if task.done():
            _settle(task)
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_settle)

    async def _has_block(self, ep: _Endpoint, block: int, wait: _Waited | None = None) -> bool:
        head = ep.stats.head
        if head is not None and head >= block:
            return True
        if head is None:
            return True  # unknown: try it, a missing block is detected from the answer
        try:  # known to be behind, but that may be stale: ask once
            self._learn_head(ep, _hex_int(await self._send(ep, "eth_blockNumber", [], wait=wait)))
        except (RpcError, ValueError):
            return False
        return ep.stats.head is not None and ep.stats.head >= block

    async def _write(self, method: str, params: list[Any]) -> Any:
        if method == SEND_METHOD and self.broadcast:
            return await self._broadcast(params)
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

    async def _broadcast(self, params: list[Any]) -> Any:
        """eth_sendRawTransaction to every endpoint at once: see the module's docstring."""
        order = self._order(None)
        waits = [_Waited() for _ in order]
        tasks = [
            asyncio.ensure_future(self._send(ep, SEND_METHOD, params, wait=w))
            for ep, w in zip(order, waits, strict=True)
        ]
        errors: dict[asyncio.Future[Any], RpcError] = {}
        pending: set[asyncio.Future[Any]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in tasks if t in done]:
                    exc = task.exception()
                    if exc is None:
                        return task.result()
                    if not isinstance(exc, RpcError):
                        raise exc
                    if isinstance(exc, RpcResponseError) and _knows_tx(exc):
                        return transaction_hash(params[0] if params else "")
                    errors[task] = exc
        except asyncio.CancelledError:
            for left in pending:
                left.cancel()
            raise
        finally:
            for left, waited in zip(tasks, waits, strict=True):
                if left in pending:  # the others finish in the background, counted in the stats
                    self._leave(left, waited)
        failures = [errors[t] for t in tasks]  # in endpoint order
        unknown = [exc for exc in failures if _outcome_unknown(exc)]
        if unknown:
            raise self._unknown(unknown[0], params) from unknown[0]
        rejected = [exc for exc in failures if _may_have_arrived(exc)]
        raise rejected[0] if rejected else failures[-1]

    @staticmethod
    def _unknown(exc: RpcError, params: list[Any]) -> RpcSendOutcomeUnknownError:
        raw = params[0] if params and isinstance(params[0], str) else ""
        reason = str(exc).split(": ", 1)[-1]
        return RpcSendOutcomeUnknownError(
            SEND_METHOD, reason, endpoint=exc.endpoint, tx_hash=transaction_hash(raw)
        )

    async def _send(
        self,
        ep: _Endpoint,
        method: str,
        params: list[Any],
        *,
        data: bool = False,
        wait: _Waited | None = None,
    ) -> Any:
        stats = ep.stats
        stats.requests += 1
        self.round_trips += 1
        kind = call_kind(method, read=method in READ_METHODS)
        # A method of no known kind (a node's own, a test node's): the cap, and nothing learnt
        # from it about sends.
        known = kind is not CallKind.SEND or method == SEND_METHOD
        policy, backoff = self.policies[kind], ep.backoff[kind]
        limit = policy.timeout(ep.latency[kind], backoff) if known else policy.cap
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(limit):
                    if data:
                        result: Any = await request_data(ep.client, method, params)
                    else:
                        result = await ep.client.request(method, params)
            except TimeoutError:
                raise RpcTimeoutError(
                    method, f"timed out after {limit:.3g}s", endpoint=ep.label
                ) from None
        except RpcError as exc:
            elapsed = time.perf_counter() - started
            self._observe(ep, elapsed)
            if known and isinstance(exc, RpcTimeoutError):
                # once per timeout in a row: requests sent together that time out together
                # double it once, not once each
                ep.backoff[kind] = max(ep.backoff[kind], backoff + 1)
            elif known and isinstance(exc, RpcResponseError):
                self._learn(ep, kind, elapsed, wait)  # the node answered: that took this long
            error_kind = classify_error(exc)
            stats.errors[error_kind.value] = stats.errors.get(error_kind.value, 0) + 1
            if error_kind in UNHEALTHY_KINDS:
                self._failed(ep)
            else:
                self._answered(ep)
            raise
        elapsed = time.perf_counter() - started
        self._observe(ep, elapsed)
        if known:
            self._learn(ep, kind, elapsed, wait)
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

    @staticmethod
    def _learn(ep: _Endpoint, kind: CallKind, seconds: float, wait: _Waited | None) -> None:
        """An answer of `kind` that took `seconds`: no more timeouts in a row, and its latency
        into the window when someone waited for it."""
        ep.backoff[kind] = 0
        if wait is None or wait.waited:
            ep.latency[kind].add(seconds)

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


def _policies(timeouts: Timeouts | None, timeout: float) -> dict[CallKind, TimeoutPolicy]:
    """A policy per kind of call from FailoverRpc's `timeouts` / `timeout`."""
    default = TimeoutPolicy(floor=min(DEFAULT_FLOOR, timeout), cap=timeout)
    if timeouts is None:
        return dict.fromkeys(CallKind, default)
    if isinstance(timeouts, TimeoutPolicy):
        return dict.fromkeys(CallKind, timeouts)
    given = {CallKind(k): v for k, v in timeouts.items()}
    return {kind: given.get(kind, default) for kind in CallKind}


def _pin(method: str, params: Sequence[Any], block: int | None) -> tuple[list[Any], int | None]:
    """A read's parameters and the block it is pinned to: `block`, put in place of a block tag
    (or of a block parameter left out) so that every endpoint asked, hedges included, reads at
    that block; else the block number the parameters name, if any."""
    out = list(params)
    if block is None:
        return out, pinned_block(method, out)
    index = BLOCK_PARAM_INDEX.get(method)
    if index is not None:
        if len(out) == index:
            out.append(hex(block))
        elif index < len(out) and isinstance(out[index], str) and out[index] in _TAGS:
            out[index] = hex(block)
    return out, block


def _knows_tx(exc: RpcResponseError) -> bool:
    """The node refused a send because it has those very bytes already."""
    text = exc.rpc_message.lower()
    return any(p in text for p in _KNOWN_TX)


def _may_have_arrived(exc: RpcError) -> bool:
    """False only for a send that certainly did not reach the node (refused, rate limited)."""
    if isinstance(exc, RpcTransportError):
        return exc.may_have_arrived
    return not (isinstance(exc, RpcResponseError) and classify_error(exc) is ErrorKind.RATE_LIMITED)


def _outcome_unknown(exc: RpcError) -> bool:
    """A send that may have arrived without the node saying what it did with it."""
    if isinstance(exc, RpcTransportError):
        return exc.may_have_arrived
    if isinstance(exc, RpcMalformedResponseError):
        return True
    return isinstance(exc, RpcResponseError) and classify_error(exc) in (
        ErrorKind.NODE,
        ErrorKind.SERVER,
    )


def _settle(task: asyncio.Future[Any]) -> None:
    """Take a background request's outcome, so that asyncio does not warn about it."""
    if not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, RpcError | _SkippedError):
            log.warning("a background request failed: %s: %s", type(exc).__name__, exc)


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
