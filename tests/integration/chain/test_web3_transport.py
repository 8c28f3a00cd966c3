"""Web3Rpc: the keeper's JSON-RPC over web3.py's own providers (HTTP with headers, WebSocket,
IPC), against a real Anvil and a real misbehaving HTTP server; faults land in the RpcError tree
with the same meaning as our aiohttp client's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import AsyncWeb3
from web3.providers.persistent import WebSocketProvider
from web3.providers.rpc import AsyncHTTPProvider

from keeper.chain.blocks import BlockStream
from keeper.chain.jsonrpc import (
    RpcMalformedResponseError,
    RpcResponseError,
    RpcTimeoutError,
    RpcTransportError,
)
from keeper.chain.multicall import MULTICALL3_ADDRESS, Call, Multicall
from keeper.chain.rpc import FailoverRpc, make_endpoint
from keeper.chain.web3rpc import Web3Rpc, web3_endpoint
from keeper.testing.anvil import Anvil, AnvilError
from tests.integration.chain.support import DEV_ADDRESS, FAST, REVERTER, ProxyFactory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ipc_anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, Path]]:
    """An Anvil of its own that also listens on an IPC socket."""
    path = tmp_path_factory.mktemp("ipc") / "anvil.ipc"
    node = Anvil(extra_args=["--ipc", str(path)])
    try:
        node.start()
    except AnvilError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node, path
    finally:
        node.stop()


async def test_http_provider_with_its_headers(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    provider = AsyncHTTPProvider(
        proxy.url,
        request_kwargs={"headers": {"Authorization": "Bearer s3cr3t"}},
        exception_retry_configuration=None,
    )
    rpc = Web3Rpc(AsyncWeb3(provider))
    try:
        assert int(await rpc.request("eth_chainId"), 16) == 31337
        assert rpc.label == proxy.url
        assert proxy.headers[-1]["Authorization"] == "Bearer s3cr3t"
    finally:
        await rpc.close()
        await provider.disconnect()  # the caller's provider: Web3Rpc leaves it open


@pytest.mark.parametrize(
    ("fault", "error", "status", "arrived"),
    [
        ("status:429", RpcTransportError, 429, False),
        ("status:500", RpcTransportError, 500, True),
        ("status:502", RpcTransportError, 502, True),
        ("garbage", RpcMalformedResponseError, None, None),
        ("truncate", RpcMalformedResponseError, None, None),
        ("cut", RpcTransportError, None, True),
        ("hang", RpcTimeoutError, None, True),
        ("rpc:-32603:internal error", RpcResponseError, None, None),
    ],
)
async def test_http_faults_map_into_the_rpc_errors(
    make_proxy: ProxyFactory,
    fault: str,
    error: type[Exception],
    status: int | None,
    arrived: bool | None,
) -> None:
    proxy = await make_proxy()
    proxy.hang_seconds = 2.0
    rpc = web3_endpoint(proxy.url, timeout=0.5)
    try:
        proxy.next_faults = [fault]
        with pytest.raises(error) as info:
            await rpc.request("eth_getBalance", [DEV_ADDRESS, "latest"])
        got = info.value
        assert type(got) is error, repr(got)
        assert "eth_getBalance" in str(got)
        assert proxy.url in str(got)
        if isinstance(got, RpcTransportError):
            assert got.status == status
            assert got.may_have_arrived is arrived
        if isinstance(got, RpcResponseError):
            assert got.code == -32603
        assert int(await rpc.request("eth_getBalance", [DEV_ADDRESS, "latest"]), 16) > 0
    finally:
        await rpc.close()


async def test_a_dead_http_endpoint_certainly_did_not_get_the_request(dead_url: str) -> None:
    rpc = web3_endpoint(dead_url)
    try:
        with pytest.raises(RpcTransportError) as info:
            await rpc.request("eth_sendRawTransaction", ["0x00"])
        assert info.value.may_have_arrived is False
    finally:
        await rpc.close()


async def test_a_revert_keeps_its_data(multicall3: Anvil) -> None:
    for url in (multicall3.url, multicall3.ws_url):
        rpc = web3_endpoint(url)
        try:
            with pytest.raises(RpcResponseError) as info:
                await rpc.request("eth_call", [{"to": REVERTER, "data": "0x"}, "latest"])
            assert "deadbeef" in str(info.value.data)
            # the connection is still good after the node's error answer
            assert int(await rpc.request("eth_chainId"), 16) == 31337
        finally:
            await rpc.close()


async def test_failover_and_multicall_over_web3_providers(
    make_proxy: ProxyFactory, multicall3: Anvil, dead_url: str
) -> None:
    flaky = await make_proxy()
    flaky.periodic_fault, flaky.period = "status:500", 2
    rpc = FailoverRpc([dead_url, flaky.url, multicall3.ws_url], transport="web3", **FAST)
    try:
        assert [type(ep).__name__ for ep in (make_endpoint(dead_url, transport="web3"),)] == [
            "Web3Rpc"
        ]
        for _ in range(6):
            assert await rpc.get_balance(DEV_ADDRESS) > 0
        head = await rpc.block_number()
        calls = [Call(MULTICALL3_ADDRESS, bytes.fromhex("42cbb15c"))] * 3  # getBlockNumber()
        results = await Multicall(rpc).aggregate(calls, block=head)
        assert [int.from_bytes(r.data, "big") for r in results] == [head] * 3
        dead, flaky_stats, ws = rpc.stats()
        assert dead.errors == {"connect": 1}
        assert flaky_stats.errors.get("server", 0) == flaky.faults_served > 0
        assert ws.answers > 0 or flaky_stats.answers > 0
    finally:
        await rpc.close()


async def test_a_websocket_provider_of_your_own(anvil_snapshot: Anvil) -> None:
    w3 = await AsyncWeb3(WebSocketProvider(anvil_snapshot.ws_url))
    rpc = Web3Rpc(w3)
    try:
        assert rpc.persistent
        assert int(await rpc.request("eth_chainId"), 16) == 31337
        assert await rpc.request_data("eth_getCode", [DEV_ADDRESS, "latest"]) == b""
        async with BlockStream(FailoverRpc([rpc]), poll_interval=5.0, heads=rpc) as stream:
            first = await stream.next()
            await asyncio.sleep(0.3)  # subscribed
            anvil_snapshot.rpc("evm_mine")
            second = await asyncio.wait_for(stream.next(), 3)
            assert second.number == first.number + 1
            assert stream.polls == 1  # pushed, not polled
    finally:
        await rpc.close()
    assert await w3.provider.is_connected()  # yours: left open
    await w3.provider.disconnect()


async def test_ipc(ipc_anvil: tuple[Anvil, Path]) -> None:
    node, path = ipc_anvil
    rpc = FailoverRpc([str(path)])
    try:
        assert await rpc.chain_id() == 31337
        assert rpc.labels == ["ipc://anvil.ipc"]
        source = rpc.head_source()
        assert isinstance(source, Web3Rpc)
        heads = source.new_heads()
        pushed = asyncio.ensure_future(anext(heads))
        await asyncio.sleep(0.3)  # subscribed
        node.rpc("evm_mine")
        header = await asyncio.wait_for(pushed, 5)
        assert header.number == int(node.rpc("eth_blockNumber"), 16)
        await heads.aclose()
    finally:
        await rpc.close()


async def test_a_websocket_that_drops_fails_its_calls_and_connects_again() -> None:
    node = Anvil()
    node.start()
    rpc = web3_endpoint(node.ws_url, timeout=2.0)
    try:
        assert int(await rpc.request("eth_chainId"), 16) == 31337
        node.stop()
        with pytest.raises(RpcTransportError):
            await rpc.request("eth_blockNumber")
        again = Anvil(port=node.port)
        again.start()
        try:
            assert int(await rpc.request("eth_chainId"), 16) == 31337
        finally:
            again.stop()
    finally:
        await rpc.close()
        node.stop()


async def test_a_large_answer_over_a_websocket(anvil_snapshot: Anvil) -> None:
    """More than websockets' default 1 MiB frame: eth_getCode of a 600 KB code put there."""
    code = "0x" + "5b" * 600_000  # answered as 1.2 MB of hex
    anvil_snapshot.rpc("anvil_setCode", REVERTER, code)
    rpc = web3_endpoint(anvil_snapshot.ws_url)
    try:
        got = await rpc.request_data("eth_getCode", [REVERTER, "latest"])
        assert len(got) == 600_000
    finally:
        await rpc.close()
