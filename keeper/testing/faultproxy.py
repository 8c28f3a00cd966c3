"""A JSON-RPC proxy that misbehaves on purpose: put it in front of a node to see what your code
does when an endpoint fails the way public RPC endpoints do.

    with FaultProxy(anvil.url, rate=0.2, seed=1) as proxy:   # 20% of requests go wrong
        rpc = FailoverRpc([proxy.url, anvil.url])
        ...
        proxy.rate = 0.0                                     # behave from now on
        print(proxy.faults)                                  # {"hang": 3, "http500": 5, ...}

It runs an aiohttp server on its own event loop in a background thread, so it serves sync and
async tests alike, and a test blocking its own loop does not stall it. Each HTTP request
(a single call or a JSON-RPC batch, forwarded as it is) is, with probability `rate`, given
one fault drawn from `kinds` (a list, drawn from evenly, or a mapping of kind to weight) by a
`random.Random(seed)`:

- "http429": HTTP 429 Too Many Requests (the node never sees the request)
- "http500": HTTP 500 with a plain-text body (the node never sees it)
- "garbage": HTTP 200 with an HTML body, not JSON (the node never sees it)
- "truncated": forwarded; the node's answer cut to its first half (Content-Length says so)
- "reset": forwarded; the answer announced in full, half of it sent, the connection closed
- "hang": held `hang_s` seconds, then forwarded and answered (if the client still listens)
- "slow": held `slow_s` seconds, then forwarded and answered

`methods` limits faults to requests that carry one of those methods (None: every request).
`force(kind, count)` gives the next `count` requests that fault whatever the draw says.
`rate`, `kinds`, `methods`, `hang_s` and `slow_s` can be changed while it runs. Counts:
`requests` (HTTP requests), `calls` (per JSON-RPC method, batch members each), `faults` (per
kind injected), `injected` (their sum); `reset_counts()` zeroes them.

The plugin's `fault_proxy` fixture starts them for a test (in front of the session's Anvil
unless told otherwise) and stops them after it. `python -m keeper.testing.faultproxy UPSTREAM
--rate 0.2` runs one from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import aiohttp
from aiohttp import web

__all__ = ["DEFAULT_KINDS", "FAULT_KINDS", "FaultProxy", "FaultProxyError", "main"]

FAULT_KINDS: Final = ("http429", "http500", "garbage", "truncated", "reset", "hang", "slow")
"""Every kind of fault the proxy can inject."""
DEFAULT_KINDS: Final = ("http429", "http500", "garbage", "truncated", "hang")
"""The kinds drawn from when none are given: the mix seen on public endpoints."""

_JSON: Final = {"Content-Type": "application/json"}


class FaultProxyError(RuntimeError):
    """The proxy could not start (or stop) as asked."""


def _weights(kinds: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    weights = dict(kinds) if isinstance(kinds, Mapping) else dict.fromkeys(kinds, 1.0)
    unknown = sorted(set(weights) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; expected some of {FAULT_KINDS}")
    if not weights or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise ValueError("fault kinds need at least one kind with a positive weight")
    return weights


def _methods_of(body: bytes) -> list[str]:
    """The JSON-RPC methods a request carries (a batch: each member's); ["?"] if unreadable."""
    try:
        payload = json.loads(body)
    except ValueError:
        return ["?"]
    items = payload if isinstance(payload, list) else [payload]
    return [str(item.get("method", "?")) if isinstance(item, dict) else "?" for item in items]


class FaultProxy:
    """A fault-injecting HTTP JSON-RPC proxy in front of `upstream`; see the module's docstring.

    `start()` (or `with` / `async with`) starts it on `host`:`port` (0: a free port), `url`
    says where; `stop()` stops it, cutting short requests it holds.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        kinds: Sequence[str] | Mapping[str, float] = DEFAULT_KINDS,
        seed: int | None = None,
        hang_s: float = 5.0,
        slow_s: float = 0.5,
        methods: Collection[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.rate = rate
        self.kinds = kinds
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.methods = methods
        self.host = host
        self.port = port
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._forced: list[str] = []
        self._requests = 0
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self._problem: BaseException | None = None

    def __repr__(self) -> str:
        return f"FaultProxy({self.url if self._thread else 'stopped'}, rate={self.rate})"

    # -- settings ------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The share of requests given a fault, 0 to 1 (settable while it runs)."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the fault rate is between 0 and 1, not {value}")
        self._rate = float(value)

    @property
    def kinds(self) -> dict[str, float]:
        """The kinds drawn from, with their weights (settable: a list or a mapping)."""
        return dict(self._kinds)

    @kinds.setter
    def kinds(self, value: Sequence[str] | Mapping[str, float]) -> None:
        self._kinds = _weights(value)

    def force(self, kind: str, count: int = 1) -> None:
        """The next `count` requests that may fault (see `methods`) get `kind`, whatever the
        rate."""
        _weights([kind])
        with self._lock:
            self._forced += [kind] * count

    # -- counts --------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """HTTP requests received."""
        with self._lock:
            return self._requests

    @property
    def calls(self) -> dict[str, int]:
        """JSON-RPC calls received, by method (each member of a batch counted)."""
        with self._lock:
            return dict(self._calls)

    @property
    def faults(self) -> dict[str, int]:
        """Faults injected, by kind."""
        with self._lock:
            return dict(self._faults)

    @property
    def injected(self) -> int:
        """Faults injected in all."""
        with self._lock:
            return sum(self._faults.values())

    def reset_counts(self) -> None:
        """Zeroes `requests`, `calls` and `faults`."""
        with self._lock:
            self._requests = 0
            self._calls.clear()
            self._faults.clear()

    # -- running -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Starts serving (a no-op when it runs); FaultProxyError if it cannot listen."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._problem = None
        thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        thread.start()
        if not self._ready.wait(timeout) or self._problem is not None:
            self._thread = thread
            self.stop()
            raise FaultProxyError(f"the fault proxy did not start: {self._problem}")
        self._thread = thread
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops serving; requests held (hangs) are cut short. A no-op when stopped."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise FaultProxyError(f"the fault proxy on {self.url} did not stop in {timeout}s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); the thread ends either way
            self._problem = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=256 * 2**20)
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        session = aiohttp.ClientSession()
        self._session = session
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            # the server first: it cancels requests still held (hangs), which would otherwise
            # wake up to forward through a closed session
            await runner.cleanup()
            await session.close()

    # -- serving -------------------------------------------------------------------------------

    def _draw(self, methods: list[str]) -> str | None:
        with self._lock:
            self._requests += 1
            self._calls.update(methods)
            wanted = self.methods
            if wanted is not None and not any(m in wanted for m in methods):
                return None
            if self._forced:
                kind: str | None = self._forced.pop(0)
            elif self._rate and self._random.random() < self._rate:
                names = list(self._kinds)
                kind = self._random.choices(names, [self._kinds[n] for n in names])[0]
            else:
                kind = None
            if kind is not None:
                self._faults[kind] += 1
            return kind

    async def _forward(self, body: bytes) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:  # stopping
            return 503, b"fault proxy: stopping"
        try:
            async with self._session.post(self.upstream, data=body, headers=_JSON) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 502, f"fault proxy: upstream unreachable: {type(exc).__name__}".encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._draw(_methods_of(body))
        if fault == "http429":
            return web.Response(status=429, text="Too Many Requests")
        if fault == "http500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "garbage":
            return web.Response(
                status=200, text="<html>bad gateway</html>", content_type="text/html"
            )
        if fault in ("hang", "slow"):
            await asyncio.sleep(self.hang_s if fault == "hang" else self.slow_s)
        status, answer = await self._forward(body)
        if fault == "truncated":
            return web.Response(status=200, body=answer[: len(answer) // 2], headers=_JSON)
        if fault == "reset":
            resp = web.StreamResponse(status=200, headers=_JSON)
            resp.content_length = len(answer)
            await resp.prepare(request)
            await resp.write(answer[: len(answer) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        return web.Response(status=status, body=answer, headers=_JSON)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m keeper.testing.faultproxy UPSTREAM [--rate R] [--kinds K,K] [--seed N]
    [--hang-s S] [--port P]`: serves until interrupted, printing its URL."""
    parser = argparse.ArgumentParser(prog="python -m keeper.testing.faultproxy")
    parser.add_argument("upstream", help="the node's HTTP JSON-RPC URL")
    parser.add_argument("--rate", type=float, default=0.2, help="share of requests to fault")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--hang-s", type=float, default=5.0)
    parser.add_argument("--slow-s", type=float, default=0.5)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        proxy = FaultProxy(
            args.upstream,
            rate=args.rate,
            kinds=[k for k in args.kinds.split(",") if k],
            seed=args.seed,
            hang_s=args.hang_s,
            slow_s=args.slow_s,
            host=args.host,
            port=args.port,
        )
        proxy.start()
    except (ValueError, FaultProxyError) as exc:
        print(f"fault proxy: {exc}", file=sys.stderr)
        return 2
    print(f"fault proxy: {proxy.url} -> {args.upstream}, rate {proxy.rate}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(f"fault proxy: {proxy.requests} requests, faults {proxy.faults}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
