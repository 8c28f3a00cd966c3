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


def parse_response(
    method: str, endpoint: str, status: int, body: bytes, *, expected_id: Any = None
) -> Any:
    """Decode one HTTP answer to a JSON-RPC call into its result or an RpcError.

    With `expected_id`, an answer carrying another id is malformed (a confused proxy or cache).
    """
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
        request_id = next(self._ids)
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        session = await self._client()
        try:
            async with session.post(self.url, json=payload) as resp:
                status = resp.status
                body = await resp.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise RpcTimeoutError(
                method, "timed out connecting", endpoint=self.label, may_have_arrived=False
            ) from exc
        except TimeoutError as exc:
            raise RpcTimeoutError(method, "timed out", endpoint=self.label) from exc
        except aiohttp.ClientConnectorError as exc:
            raise RpcTransportError(
                method,
                f"cannot connect: {type(exc).__name__}: {exc.os_error}",
                endpoint=self.label,
                may_have_arrived=False,
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise RpcTransportError(
                method, f"answer cut short: {self._scrub(exc)}", endpoint=self.label
            ) from exc
        except aiohttp.ClientError as exc:
            raise RpcTransportError(
                method, f"{type(exc).__name__}: {self._scrub(exc)}", endpoint=self.label
            ) from exc
        return parse_response(method, self.label, status, body, expected_id=request_id)

    def _scrub(self, exc: BaseException) -> str:
        """The error's text without the URL (which may hold an API key)."""
        return str(exc).replace(self.url, self.label)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
