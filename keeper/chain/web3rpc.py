"""JSON-RPC over a web3.py provider: the `JsonRpc` protocol for an `AsyncWeb3` you already have.

`Web3Rpc(w3)` (or `Web3Rpc(provider)`) sends the keeper's calls through the provider's own
transport, so whatever the provider was set up with applies: an `AsyncHTTPProvider` with its
headers and `request_kwargs` (authentication, proxies), a `WebSocketProvider`, an
`AsyncIPCProvider`. It is one endpoint, like `HttpJsonRpc`: `FailoverRpc`, block pinning and
Multicall3 batching work over it unchanged, and the answers are the raw JSON-RPC results the
keeper decodes itself (hex strings and objects), not web3's formatted values.

What goes through and what does not:

- HTTP: `provider.make_request`, one POST per call. web3 middleware is not applied: it
  formats results for `w3.eth`'s methods, which the keeper does not use. The provider's own
  retries (`exception_retry_configuration`) are the caller's choice; the providers this module
  makes (`web3_endpoint`) have them off, since `FailoverRpc` and tenacity decide what to retry.
- WebSocket and IPC (persistent connections): `w3.socket.make_request`, which registers the
  request with web3's request processor, on a connection opened here if it is not open yet.
  web3 8 ends its message listener on an error answer it does not expect (a revert, say) unless
  `silence_listener_task_exceptions` is set, after which every call on the connection fails;
  the provider is set so, and errors come back as JSON-RPC error objects the keeper decodes.
  A connection that fails ends the listener, fails the calls waiting on it, and the next call
  connects again. WebSocket messages of up to `MAX_MESSAGE` are taken on the connections this
  module opens (websockets' default, 1 MiB, is less than a large Multicall3 answer).
  `new_heads()` subscribes to newHeads through the same connection.

Faults map into the `RpcError` tree with the meaning `HttpJsonRpc` gives them:
`RpcTransportError` with `may_have_arrived` False only when the request certainly did not reach
the node (the connection could not be opened, HTTP 429), `RpcTimeoutError`, HTTP statuses,
`RpcMalformedResponseError` for an answer that is not JSON-RPC, `RpcResponseError` for the
node's error objects. Errors name the call and the endpoint's label (`endpoint_label`: no
credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp
from web3 import AsyncWeb3
from web3.exceptions import (
    PersistentConnectionClosedOK,
    ProviderConnectionError,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.async_base import AsyncBaseProvider
from web3.providers.persistent import (
    AsyncIPCProvider,
    PersistentConnectionProvider,
    WebSocketProvider,
)
from web3.providers.rpc import AsyncHTTPProvider
from web3.types import RPCEndpoint
from websockets.exceptions import WebSocketException

from keeper.chain.jsonrpc import (
    RpcError,
    RpcMalformedResponseError,
    RpcResponseError,
    RpcTimeoutError,
    RpcTransportError,
    endpoint_label,
    hex_data,
    http_fault,
)
from keeper.chain.rpc import BlockHeader

__all__ = ["Web3Rpc", "web3_endpoint"]

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 2**20  # a 10,000-position read answers 1.2 MB per call; websockets: 1 MiB


def _label_of(provider: AsyncBaseProvider) -> str:
    uri = getattr(provider, "endpoint_uri", None)
    if uri:
        return endpoint_label(str(uri))
    path = getattr(provider, "ipc_path", None)
    if path:
        return f"ipc://{Path(str(path)).name}"  # as ChainConfig.rpc_labels names it
    return type(provider).__name__


class Web3Rpc:
    """One endpoint behind a web3.py provider; see the module's docstring.

    `source` is an `AsyncWeb3` or an async provider. `timeout` bounds each call (seconds).
    A persistent connection this object opened is closed by `close()`; one that was open
    already is left to its owner.
    """

    def __init__(
        self,
        source: AsyncWeb3[Any] | AsyncBaseProvider,
        *,
        timeout: float = 10.0,
        label: str | None = None,
        owned: bool = False,
    ) -> None:
        if isinstance(source, AsyncWeb3):
            self.w3: AsyncWeb3[Any] = source
        elif isinstance(source, AsyncBaseProvider):
            self.w3 = AsyncWeb3(source)
        else:
            raise TypeError(
                f"Web3Rpc needs an AsyncWeb3 or an async web3 provider, got {type(source)!r}"
            )
        provider = self.w3.provider
        if not isinstance(provider, AsyncBaseProvider):
            raise TypeError(f"Web3Rpc needs an async provider, got {type(provider)!r}")
        self.provider: AsyncBaseProvider = provider
        self.persistent = isinstance(provider, PersistentConnectionProvider)
        self.timeout = timeout
        self.label = label or _label_of(provider)
        if self.persistent:
            cast(PersistentConnectionProvider, provider).silence_listener_task_exceptions = True
            setattr(provider, "_error_log_listener_task_exception", self._listener_error)  # noqa: B010
        self.owned = owned
        self._opened_here = False
        self._connect_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Web3Rpc({self.label!r})"

    # -- the JsonRpc protocol -----------------------------------------------------------------

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        answer = await self._call(method, list(params))
        return self._result(method, answer)

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        return hex_data(method, await self.request(method, params), endpoint=self.label)

    async def close(self) -> None:
        """Closes the connection (or the HTTP provider's sessions) when this object opened it
        or made the provider (`owned`); a provider of yours is left as it is."""
        if not (self._opened_here or self.owned):
            return
        self._opened_here = False
        try:
            await self.provider.disconnect()
        except (Web3Exception, OSError) as exc:  # closing a dead socket
            log.debug("closing %s: %s", self.label, exc)

    def _listener_error(self, exc: Exception) -> None:
        """web3's listener met an error answer before web3 recorded its request (a race of
        web3 8 on a fast node: the answer still reaches its caller): logged, the listener
        goes on. Anything else (the connection closed, a frame too big) ends the listener,
        so that waiting calls fail and the next call connects again."""
        if isinstance(exc, Web3RPCError):
            log.debug("%s: web3's listener: %s", self.label, exc)
            return
        log.warning("%s: the connection failed: %s: %s", self.label, type(exc).__name__, exc)
        raise exc

    # -- newHeads -----------------------------------------------------------------------------

    async def new_heads(self) -> AsyncGenerator[BlockHeader, None]:
        """The chain's new heads as the node pushes them (eth_subscribe newHeads); only over
        a persistent connection. Ends with an RpcError when the connection fails."""
        if not self.persistent:
            raise RpcError("eth_subscribe", "newHeads needs a WebSocket or IPC provider",
                           endpoint=self.label)  # fmt: skip
        await self._ensure_connected("eth_subscribe")
        try:
            subscription = await asyncio.wait_for(self.w3.eth.subscribe("newHeads"), self.timeout)
            async for message in self.w3.socket.process_subscriptions():
                if message.get("subscription") != subscription:
                    continue
                yield header_of(message.get("result"), endpoint=self.label)
        except RpcError:
            raise
        except (TimeoutError, TimeExhausted) as exc:
            raise RpcTimeoutError("eth_subscribe", "timed out", endpoint=self.label) from exc
        except (Web3Exception, OSError, EOFError, WebSocketException, aiohttp.ClientError) as exc:
            raise RpcTransportError(
                "eth_subscribe", f"{type(exc).__name__}: {self._scrub(exc)}", endpoint=self.label
            ) from exc
        raise RpcTransportError("eth_subscribe", "the subscription ended", endpoint=self.label)

    # -- internals ----------------------------------------------------------------------------

    async def _alive(self) -> bool:
        """Whether the connection is up: web3's message listener runs (it ends when the
        connection does); where a web3 has no such task, the provider's own check."""
        task = getattr(self.provider, "_message_listener_task", ...)
        if task is ...:
            return bool(await cast(PersistentConnectionProvider, self.provider).is_connected())
        return isinstance(task, asyncio.Task) and not task.done()

    async def _ensure_connected(self, method: str) -> None:
        provider = cast(PersistentConnectionProvider, self.provider)
        if await self._alive():
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if await self._alive():
                return
            if getattr(provider, "_message_listener_task", None) is not None:
                with contextlib.suppress(Exception):  # what is left of a failed connection
                    await provider.disconnect()
            try:
                await asyncio.wait_for(provider.connect(), self.timeout)
            except (ProviderConnectionError, OSError, TimeoutError) as exc:
                raise RpcTransportError(
                    method,
                    f"cannot connect: {type(exc).__name__}: {self._scrub(exc)}",
                    endpoint=self.label,
                    may_have_arrived=False,
                ) from exc
            self._opened_here = True

    async def _call(self, method: str, params: list[Any]) -> Any:
        endpoint = RPCEndpoint(method)
        try:
            if self.persistent:
                await self._ensure_connected(method)
                return await asyncio.wait_for(
                    self.w3.socket.make_request(endpoint, params), self.timeout
                )
            return await asyncio.wait_for(
                self.provider.make_request(endpoint, params), self.timeout
            )
        except RpcError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise http_fault(method, self.label, exc, self._scrub(exc)) from exc
        except TimeExhausted as exc:
            raise RpcTimeoutError(method, "timed out", endpoint=self.label) from exc
        except ValueError as exc:  # the answer is not JSON (web3 decodes it before we see it)
            raise RpcMalformedResponseError(
                method, f"answer is not JSON-RPC: {self._scrub(exc):.120}", endpoint=self.label
            ) from exc
        except (
            OSError,
            EOFError,
            WebSocketException,
            PersistentConnectionClosedOK,
            Web3Exception,
        ) as exc:
            raise RpcTransportError(
                method, f"{type(exc).__name__}: {self._scrub(exc)}", endpoint=self.label
            ) from exc

    def _result(self, method: str, answer: Any) -> Any:
        if not isinstance(answer, Mapping):
            raise RpcMalformedResponseError(
                method, f"answer is not an object: {answer!r:.120}", endpoint=self.label
            )
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, Mapping) or not isinstance(error.get("code"), int):
                raise RpcMalformedResponseError(
                    method, f"malformed error: {error!r:.120}", endpoint=self.label
                )
            raise RpcResponseError(
                method,
                error["code"],
                str(error.get("message", "")),
                error.get("data"),
                endpoint=self.label,
            )
        if "result" not in answer:
            raise RpcMalformedResponseError(
                method, "answer has neither result nor error", endpoint=self.label
            )
        return answer["result"]

    def _scrub(self, exc: BaseException) -> str:
        """The error's text without the endpoint's URL (it may hold an API key)."""
        text = str(exc)
        uri = getattr(self.provider, "endpoint_uri", None)
        return text.replace(str(uri), self.label) if uri else text


def header_of(raw: Any, *, endpoint: str = "") -> BlockHeader:
    """A newHeads message's block as web3 formats it (ints, HexBytes) or as JSON (hex)."""
    if isinstance(raw, Mapping) and not isinstance(raw.get("number"), str):
        try:
            base_fee = raw.get("baseFeePerGas")
            return BlockHeader(
                number=int(raw["number"]),
                hash="0x" + bytes(raw["hash"]).hex(),
                parent_hash="0x" + bytes(raw["parentHash"]).hex(),
                timestamp=int(raw["timestamp"]),
                base_fee=None if base_fee is None else int(base_fee),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcMalformedResponseError(
                "eth_subscription", f"malformed head ({type(exc).__name__}: {exc})",
                endpoint=endpoint,
            ) from None  # fmt: skip
    return BlockHeader.from_json("eth_subscription", dict(raw) if isinstance(raw, Mapping) else raw,
                                 endpoint=endpoint)  # fmt: skip


def web3_endpoint(spec: str, *, timeout: float = 10.0) -> Web3Rpc:
    """A `Web3Rpc` for an endpoint as config names it: `http(s)://` (AsyncHTTPProvider, its
    own retries off), `ws(s)://` (WebSocketProvider), or a path to a node's IPC socket
    (AsyncIPCProvider). ValueError for anything else."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    provider: AsyncBaseProvider
    if scheme in ("http", "https"):
        provider = AsyncHTTPProvider(
            spec,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
            exception_retry_configuration=None,
        )
    elif scheme in ("ws", "wss"):
        provider = WebSocketProvider(
            spec,
            websocket_kwargs={"max_size": MAX_MESSAGE},
            request_timeout=timeout,
            max_connection_retries=1,
            silence_listener_task_exceptions=True,
        )
    elif not scheme:
        provider = AsyncIPCProvider(
            spec,
            request_timeout=timeout,
            max_connection_retries=1,
            silence_listener_task_exceptions=True,
        )
    else:
        raise ValueError(
            f"endpoint {endpoint_label(spec)}: expected http(s)://, ws(s):// or an IPC path"
        )
    return Web3Rpc(provider, timeout=timeout, owned=True)
