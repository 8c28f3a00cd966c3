"""A small JSON-RPC proxy in front of a real node that can be told to misbehave.

Faults are deterministic: `next_faults` are used up one per request; `periodic_fault` hits
every `period`-th request; `fault` hits every request. A fault is one of:

- "status:<code>": answer HTTP <code> with a plain-text body (429, 500, 502, ...)
- "rpc:<code>:<message>": answer a JSON-RPC error object
- "garbage": HTTP 200 with a body that is not JSON
- "truncate": HTTP 200 with the first half of the node's real answer
- "cut": forward, then announce the full length, send half and drop the connection
- "slowcut": "cut", after waiting `hang_seconds` first
- "hang": wait `hang_seconds` before answering (for client timeouts)

`lag` makes it a node that many blocks behind: eth_blockNumber and "latest" say head - lag,
and calls at a later block get "header not found" (eth_getBlockByNumber: null).
`max_body` refuses requests with a bigger body with HTTP 413, as providers do.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from keeper.chain.rpc import BLOCK_PARAM_INDEX

TAGS = ("latest", "pending", "safe", "finalized")


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: str | None = None
        self.periodic_fault: str | None = None
        self.period = 2
        self.next_faults: list[str] = []
        self.lag = 0
        self.max_body: int | None = None
        self.hang_seconds = 5.0
        self.seen: list[str] = []  # methods received, in order
        self.headers: list[dict[str, str]] = []  # the HTTP headers of each request, in order
        self.faults_served = 0
        self._count = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, method: str) -> int:
        return self.seen.count(method)

    async def start(self) -> FaultyProxy:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            return resp.status, await resp.read()

    async def _upstream_call(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        _, answer = await self._forward(body.encode())
        return json.loads(answer)["result"]

    def _pick_fault(self) -> str | None:
        self._count += 1
        if self.next_faults:
            return self.next_faults.pop(0)
        if self.fault is not None:
            return self.fault
        if self.periodic_fault is not None and self._count % self.period == 0:
            return self.periodic_fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body)
        self.seen.append(payload.get("method", "?"))
        self.headers.append(dict(request.headers))
        if self.max_body is not None and len(body) > self.max_body:
            self.faults_served += 1
            return web.Response(status=413, text="413 Request Entity Too Large")
        fault = self._pick_fault()
        if fault is not None:
            self.faults_served += 1
            if fault.startswith("status:"):
                return web.Response(status=int(fault.split(":")[1]), text="upstream trouble")
            if fault.startswith("rpc:"):
                _, code, message = fault.split(":", 2)
                error = {"code": int(code), "message": message}
                return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "error": error})
            if fault == "garbage":
                return web.Response(status=200, text="<html>bad gateway</html>")
            if fault in ("hang", "slowcut"):
                await asyncio.sleep(self.hang_seconds)
        if self.lag:
            lagged = await self._lagged(payload)
            if lagged is not None:
                return web.json_response(lagged)
            body = json.dumps(payload).encode()
        status, answer = await self._forward(body)
        if fault == "truncate":
            return web.Response(status=200, body=answer[: len(answer) // 2])
        if fault in ("cut", "slowcut"):
            resp = web.StreamResponse(status=200)
            resp.content_type = "application/json"
            resp.content_length = len(answer)
            await resp.prepare(request)
            await resp.write(answer[: len(answer) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(status=status, body=answer, content_type="application/json")

    async def _lagged(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Rewrite `payload` in place as a lagging node would see it, or answer it directly."""
        head = int(await self._upstream_call("eth_blockNumber", []), 16)
        stale = max(head - self.lag, 0)
        method = payload.get("method")
        params = payload.get("params", [])
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": payload["id"], "result": hex(stale)}
        index = BLOCK_PARAM_INDEX.get(str(method))
        if index is None or index >= len(params):
            return None
        block = params[index]
        if block in TAGS:
            params[index] = hex(stale)
        elif isinstance(block, str) and block.startswith("0x") and int(block, 16) > stale:
            if method == "eth_getBlockByNumber":
                return {"jsonrpc": "2.0", "id": payload["id"], "result": None}
            error = {"code": -32000, "message": "header not found"}
            return {"jsonrpc": "2.0", "id": payload["id"], "error": error}
        return None
