"""The chain tests' FaultyProxy, plus a fault that answers a well-formed but wrong result."""

from __future__ import annotations

import json

from aiohttp import web

from tests.integration.chain.chain_proxy import FaultyProxy


class ResultProxy(FaultyProxy):
    """FaultyProxy with one more fault: "result:<hex>" answers HTTP 200 with that `result`
    (valid JSON-RPC, but not what the call returns: a node or cache gone wrong)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.next_faults and self.next_faults[0].startswith("result:"):
            fault = self.next_faults.pop(0)
            payload = json.loads(await request.read())
            self.seen.append(payload.get("method", "?"))
            self.faults_served += 1
            result = fault.split(":", 1)[1]
            return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "result": result})
        return await super()._handle(request)
