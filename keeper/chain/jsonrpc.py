"""The JSON-RPC surface every chain client offers, its errors, and a plain one-endpoint client.

Everything above the transport speaks `JsonRpc.request(method, params)` and gets the decoded
`result`, or one of the errors below. The failover client in keeper/chain/rpc.py implements
the same protocol over several endpoints.

Errors name the call and the endpoint. Endpoints are named by `endpoint_label(url)`, which
keeps scheme, host and port and hides paths, queries and credentials: provider URLs carry API
keys in their paths, and these labels end up in logs and metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from binascii import a2b_hex
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiohttp
from eth_hash.auto import keccak


class RpcError(Exception):
    """A JSON-RPC call failed. `method` names the call; `endpoint` where it went."""

    def __init__(self, method: str, message: str, *, endpoint: str = "") -> None:
        self.method = method
        self.endpoint = endpoint
        where = f" at {endpoint}" if endpoint else ""
        super().__init__(f"{method}{where}: {message}")


class RpcTransportError(RpcError):
    """The endpoint could not be reached, timed out, or answered with an HTTP error.

    `status` is the HTTP status when there was one. `may_have_arrived` is False only when the
    request certainly did not reach the node (the connection could not be opened, or the
    endpoint refused it with HTTP 429 before doing anything).
    """

    def __init__(
        self,
        method: str,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        may_have_arrived: bool = True,
    ) -> None:
        self.status = status
        self.may_have_arrived = may_have_arrived
        super().__init__(method, message, endpoint=endpoint)


class RpcTimeoutError(RpcTransportError):
    """The endpoint did not answer in time."""


class RpcSendOutcomeUnknownError(RpcTransportError):
    """A transaction was sent, and it is unknown whether the node received it.

    Never send it blindly again: look `tx_hash` up (eth_getTransactionByHash, or the receipt)
    first; sending the same signed bytes again is harmless, but a re-signed replacement is not.
    """

    def __init__(self, method: str, message: str, *, endpoint: str = "", tx_hash: str) -> None:
        self.tx_hash = tx_hash
        super().__init__(
            method,
            f"{message}; unknown whether transaction {tx_hash} arrived",
            endpoint=endpoint,
        )


class RpcMalformedResponseError(RpcError):
    """The endpoint answered, but not with a well-formed JSON-RPC response."""


class RpcResponseError(RpcError):
    """The node answered with a JSON-RPC error object (a revert is one: see `data`).

    `status` is the HTTP status the error object came with (some providers send rate-limit
    errors as JSON-RPC errors with HTTP 429).
    """

    def __init__(
        self,
        method: str,
        code: int,
        message: str,
        data: Any = None,
        *,
        endpoint: str = "",
        status: int | None = None,
    ) -> None:
        self.code = code
        self.rpc_message = message
        self.data = data
        self.status = status
        super().__init__(method, f"error {code}: {message}", endpoint=endpoint)


class RpcBlockUnavailableError(RpcError):
    """No endpoint could serve the call at `block`: none has that block (yet)."""

    def __init__(self, method: str, block: int, message: str = "", *, endpoint: str = "") -> None:
        self.block = block
        super().__init__(method, message or f"no endpoint has block {block} yet", endpoint=endpoint)


@runtime_checkable
class JsonRpc(Protocol):
    """What the keeper needs from a node connection."""

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send one call and return its `result`, or raise an RpcError subclass."""
        ...


@runtime_checkable
class DataRpc(JsonRpc, Protocol):
    """A node connection that can also hand back a hex-data result (eth_call, eth_getCode) as
    the bytes it stands for, decoded straight from the answer (no string of it made)."""

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        """`request`, its result ("0x" and hex) as bytes; RpcMalformedResponseError when the
        result is not hex data."""
        ...


async def request_data(rpc: JsonRpc, method: str, params: Sequence[Any] = ()) -> bytes:
    """`rpc.request_data(method, params)` when `rpc` has it, else `rpc.request` and the result
    decoded (`hex_data`)."""
    fetch = getattr(rpc, "request_data", None)
    if fetch is not None:
        data: bytes = await fetch(method, params)
        return data
    return hex_data(method, await rpc.request(method, params))


def hex_data(method: str, result: Any, *, endpoint: str = "") -> bytes:
    """A hex-data result ("0x" and an even number of hex digits) as bytes, strictly (no
    whitespace, unlike bytes.fromhex); RpcMalformedResponseError naming `method` otherwise."""
    if not isinstance(result, str) or not result.startswith("0x"):
        raise RpcMalformedResponseError(
            method, f"result is not hex data: {result!r:.60}", endpoint=endpoint
        )
    try:
        return a2b_hex(result[2:])
    except ValueError:
        raise RpcMalformedResponseError(
            method, "result is not hex data", endpoint=endpoint
        ) from None


def endpoint_label(url: str) -> str:
    """`url` without credentials, path or query: safe to log and to use as a metrics label."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    label = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.path.strip("/") or parts.query:
        label += "/…"
    return label


def transaction_hash(raw_tx: str) -> str:
    """The hash of a signed raw transaction (0x hex), as the node will name it."""
    try:
        return "0x" + keccak(bytes.fromhex(raw_tx.removeprefix("0x"))).hex()
    except ValueError:
        return "<undecodable transaction>"


def encode_request(request_id: int, method: str, params: Sequence[Any]) -> bytes:
    """The JSON body of one call: the same JSON as `json.dumps` of the request object.

    Strings that need no escaping (ASCII without a quote or a backslash: hex data, addresses,
    block tags) are written as they are; `json.dumps` would scan them character by character,
    which for the hundreds of kilobytes of calldata a large Multicall3 batch carries costs more
    than the rest of the request. Everything else goes through `json.dumps`.
    """
    parts = ['{"jsonrpc":"2.0","id":', str(request_id), ',"method":', _json_str(method)]
    parts.append(',"params":')
    _dump(list(params), parts)
    parts.append("}")
    return "".join(parts).encode()


def _json_str(text: str) -> str:
    return '"' + text + '"' if _needs_no_escape(text) else json.dumps(text)


def _needs_no_escape(text: str) -> bool:
    """True when `text` is the same inside JSON quotes: ASCII (an O(1) check) without a quote
    or a backslash (memchr scans) and, for strings up to 1 KiB, without control characters
    (in a longer one, hex data, a control character is invalid data to the node either way)."""
    return (
        text.isascii()
        and '"' not in text
        and "\\" not in text
        and (len(text) > _CHECK_PRINTABLE_UP_TO or text.isprintable())
    )


def _dump(value: Any, parts: list[str]) -> None:
    kind = type(value)
    if kind is str:
        if _needs_no_escape(value):
            parts += ('"', value, '"')
        else:
            parts.append(json.dumps(value))
    elif kind is list or kind is tuple:
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _dump(item, parts)
        parts.append("]")
    elif kind is dict and all(type(k) is str for k in value):
        parts.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                parts.append(",")
            parts.append(_json_str(key))
            parts.append(":")
            _dump(item, parts)
        parts.append("}")
    else:
        parts.append(json.dumps(value, separators=(",", ":")))


_CHECK_PRINTABLE_UP_TO = 1024


_RESULT_HEAD = b'{"jsonrpc":"2.0","id":'
_RESULT_KEY = b',"result":"'


def _plain_span(body: bytes, expected_id: Any) -> tuple[int, int] | None:
    """Where the result string of a `{"jsonrpc":"2.0","id":N,"result":"..."}` answer lies in
    `body` (N = `expected_id`, an int), when it needs no unescaping (no quote or backslash
    in it); None for any other answer (which then gets the full parse). Large eth_call
    results are hex strings of hundreds of kilobytes: json.loads would scan them for escapes
    character by character."""
    if type(expected_id) is not int or not body.startswith(_RESULT_HEAD):
        return None
    at = len(_RESULT_HEAD)
    digits = str(expected_id).encode()
    if body[at : at + len(digits)] != digits:
        return None
    at += len(digits)
    if body[at : at + len(_RESULT_KEY)] != _RESULT_KEY:
        return None
    start = at + len(_RESULT_KEY)
    end = len(body.rstrip()) - 2
    if end < start or body[end : end + 2] != b'"}':
        return None
    if body.find(b'"', start, end) != -1 or body.find(b"\\", start, end) != -1:
        return None
    return start, end


def _plain_result(body: bytes, expected_id: Any) -> str | None:
    """The result string of an answer in `_plain_span`'s form, read without a JSON parse."""
    span = _plain_span(body, expected_id)
    if span is None:
        return None
    start, end = span
    try:
        text = str(memoryview(body)[start:end], "ascii")
    except UnicodeDecodeError:
        return None
    if end - start <= _CHECK_PRINTABLE_UP_TO and not text.isprintable():
        return None  # a control character: json.loads refuses it
    # A longer result is hex data (eth_call, eth_getCode): its consumers parse it strictly.
    return text


def parse_response(
    method: str, endpoint: str, status: int, body: bytes, *, expected_id: Any = None
) -> Any:
    """Decode one HTTP answer to a JSON-RPC call into its result or an RpcError.

    With `expected_id`, an answer carrying another id is malformed (a confused proxy or cache).
    A successful answer in the common compact form with a string result is read without a
    JSON parse (`_plain_result`); every other answer is parsed in full.
    """
    if status < 400:
        plain = _plain_result(body, expected_id)
        if plain is not None:
            return plain
    try:
        answer = json.loads(body)
    except ValueError:
        snippet = body[:120].decode(errors="replace")
        if status >= 400:
            raise RpcTransportError(
                method,
                f"HTTP {status}: {snippet}",
                endpoint=endpoint,
                status=status,
                may_have_arrived=status != 429,
            ) from None
        what = "empty answer" if not body.strip() else f"answer is not JSON: {snippet!r}"
        raise RpcMalformedResponseError(
            method, f"{what} ({len(body)} bytes, HTTP {status})", endpoint=endpoint
        ) from None
    if not isinstance(answer, dict):
        raise RpcMalformedResponseError(
            method, f"answer is not an object: {answer!r:.120}", endpoint=endpoint
        )
    if expected_id is not None and "id" in answer and answer["id"] != expected_id:
        raise RpcMalformedResponseError(
            method,
            f"answer has id {answer['id']!r:.40}, expected {expected_id!r}",
            endpoint=endpoint,
        )
    error = answer.get("error")
    if error is not None:
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            raise RpcMalformedResponseError(
                method, f"malformed error: {error!r:.120}", endpoint=endpoint
            )
        raise RpcResponseError(
            method,
            error["code"],
            str(error.get("message", "")),
            error.get("data"),
            endpoint=endpoint,
            status=status if status >= 400 else None,
        )
    if status >= 400:
        raise RpcTransportError(
            method,
            f"HTTP {status}",
            endpoint=endpoint,
            status=status,
            may_have_arrived=status != 429,
        )
    if "result" not in answer:
        raise RpcMalformedResponseError(
            method, "answer has neither result nor error", endpoint=endpoint
        )
    return answer["result"]


def parse_data_response(
    method: str, endpoint: str, status: int, body: bytes, *, expected_id: Any = None
) -> bytes:
    """`parse_response` for a hex-data result, returned as bytes. In the common compact form
    (`_plain_result`'s) the hex is decoded straight from the answer's bytes: for a result of
    hundreds of kilobytes that saves making it a string, slicing off its "0x" and the page
    faults of both."""
    if status < 400:
        span = _plain_span(body, expected_id)
        if span is not None:
            start, end = span
            if body[start : start + 2] == b"0x":
                try:
                    return a2b_hex(memoryview(body)[start + 2 : end])
                except ValueError:
                    raise RpcMalformedResponseError(
                        method, "result is not hex data", endpoint=endpoint
                    ) from None
    result = parse_response(method, endpoint, status, body, expected_id=expected_id)
    return hex_data(method, result, endpoint=endpoint)


_JSON_HEADERS = {"Content-Type": "application/json"}


def http_fault(
    method: str, endpoint: str, exc: aiohttp.ClientError | TimeoutError, text: str
) -> RpcTransportError:
    """The RpcError of an HTTP call that failed in aiohttp (ours, or web3's HTTP provider's),
    with `may_have_arrived` False only where the request certainly did not reach the node;
    `text` is the error's text without the endpoint's credentials."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RpcTimeoutError(
            method, "timed out connecting", endpoint=endpoint, may_have_arrived=False
        )
    if isinstance(exc, TimeoutError):
        return RpcTimeoutError(method, "timed out", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientResponseError):
        return RpcTransportError(
            method,
            f"HTTP {exc.status}",
            endpoint=endpoint,
            status=exc.status,
            may_have_arrived=exc.status != 429,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return RpcTransportError(
            method,
            f"cannot connect: {type(exc).__name__}: {exc.os_error}",
            endpoint=endpoint,
            may_have_arrived=False,
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return RpcTransportError(method, f"answer cut short: {text}", endpoint=endpoint)
    return RpcTransportError(method, f"{type(exc).__name__}: {text}", endpoint=endpoint)


class HttpJsonRpc:
    """One HTTP endpoint, no retries: callers decide what to retry.

    The aiohttp session is made on first use in the running event loop (and again if the loop
    changes); `close()` closes it.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.label = endpoint_label(url)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"HttpJsonRpc({self.label!r})"

    async def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._loop = loop
        return self._session

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        request_id, status, body = await self._post(method, params)
        return parse_response(method, self.label, status, body, expected_id=request_id)

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        request_id, status, body = await self._post(method, params)
        return parse_data_response(method, self.label, status, body, expected_id=request_id)

    async def _post(self, method: str, params: Sequence[Any]) -> tuple[int, int, bytes]:
        """One call over HTTP: its id, the HTTP status and the answer's body."""
        request_id = next(self._ids)
        body = encode_request(request_id, method, params)
        session = await self._client()
        try:
            async with session.post(self.url, data=body, headers=_JSON_HEADERS) as resp:
                return request_id, resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise http_fault(method, self.label, exc, self._scrub(exc)) from exc

    def _scrub(self, exc: BaseException) -> str:
        """The error's text without the URL (which may hold an API key)."""
        return str(exc).replace(self.url, self.label)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
