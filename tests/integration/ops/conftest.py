"""A local webhook receiver (aiohttp.web on 127.0.0.1, port 0) for the alert sinks' tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from keeper.testing.anvil import free_port


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    body: dict[str, object]
    at: float  # time.monotonic() on arrival


class Receiver:
    """Records every POST. Paths: `/slow/...` sleeps `slow_s` first, `/fail/...` answers 500,
    `/drop/...` closes the connection unanswered, `/bot<token>/sendMessage` answers as
    Telegram does; anything else answers 200 (Discord's 204 under `/discord/`)."""

    def __init__(self, slow_s: float = 3.0) -> None:
        self.slow_s = slow_s
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self, prefix: str) -> list[dict[str, object]]:
        return [r.body for r in self.received if r.path.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.received if r.path.startswith(prefix)]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.01)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/drop/"):
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if path.startswith("/slow/"):
            await asyncio.sleep(self.slow_s)
        body = json.loads(await request.text())
        self.received.append(Received(path, body, time.monotonic()))
        if path.startswith("/fail/"):
            return web.Response(status=500)
        if path.startswith("/discord/"):
            return web.Response(status=204)
        if path.startswith("/bot"):
            return web.json_response({"ok": True, "result": {"message_id": len(self.received)}})
        return web.Response(text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
