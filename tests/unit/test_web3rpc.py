"""Web3Rpc's pure parts: endpoint kinds, heads as web3 formats them, error objects."""

from __future__ import annotations

import pytest
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.datastructures import AttributeDict
from web3.providers.persistent import AsyncIPCProvider, WebSocketProvider
from web3.providers.rpc import AsyncHTTPProvider

from keeper.chain.jsonrpc import HttpJsonRpc, RpcMalformedResponseError, RpcResponseError
from keeper.chain.rpc import BlockHeader, make_endpoint
from keeper.chain.web3rpc import Web3Rpc, header_of, web3_endpoint

HASH = "0x" + "ab" * 32
PARENT = "0x" + "cd" * 32


def test_endpoint_kinds() -> None:
    assert isinstance(make_endpoint("https://rpc.example/key"), HttpJsonRpc)
    http = make_endpoint("https://rpc.example/key", transport="web3")
    assert isinstance(http, Web3Rpc)
    assert isinstance(http.provider, AsyncHTTPProvider)
    assert http.provider.exception_retry_configuration is None  # failover decides
    assert http.label == "https://rpc.example/…"  # no key in logs
    ws = web3_endpoint("wss://rpc.example/ws/key")
    assert isinstance(ws.provider, WebSocketProvider)
    assert ws.persistent
    ipc = web3_endpoint("/var/run/geth.ipc")
    assert isinstance(ipc.provider, AsyncIPCProvider)
    assert ipc.label == "ipc://geth.ipc"
    with pytest.raises(ValueError, match="expected http"):
        web3_endpoint("ftp://rpc.example")
    with pytest.raises(ValueError, match="transport must be one of"):
        make_endpoint("https://x.example", transport="curl")
    with pytest.raises(TypeError, match="AsyncWeb3 or an async web3 provider"):
        Web3Rpc("https://x.example")


def test_a_users_provider_is_made_to_survive_error_answers() -> None:
    provider = WebSocketProvider("ws://127.0.0.1:1")
    assert not provider.silence_listener_task_exceptions
    Web3Rpc(AsyncWeb3(provider))
    assert provider.silence_listener_task_exceptions


def test_heads_as_web3_formats_them_and_as_json() -> None:
    expected = BlockHeader(12, HASH, PARENT, 1_700_000_000, 7)
    formatted = AttributeDict(
        {
            "number": 12,
            "hash": HexBytes(HASH),
            "parentHash": HexBytes(PARENT),
            "timestamp": 1_700_000_000,
            "baseFeePerGas": 7,
        }
    )
    assert header_of(formatted) == expected
    raw = {
        "number": "0xc",
        "hash": HASH,
        "parentHash": PARENT,
        "timestamp": hex(1_700_000_000),
        "baseFeePerGas": "0x7",
    }
    assert header_of(raw) == expected
    with pytest.raises(RpcMalformedResponseError, match="malformed head"):
        header_of(AttributeDict({"number": 12}))


def test_answers_become_results_or_rpc_errors() -> None:
    rpc = web3_endpoint("http://127.0.0.1:1")
    assert rpc._result("eth_chainId", {"jsonrpc": "2.0", "id": 1, "result": "0x1"}) == "0x1"
    with pytest.raises(RpcResponseError) as info:
        rpc._result("eth_call", {"id": 1, "error": {"code": 3, "message": "revert", "data": "0x1"}})
    assert (info.value.code, info.value.data) == (3, "0x1")
    for bad in ("nope", {"id": 1}, {"error": "x"}):
        with pytest.raises(RpcMalformedResponseError):
            rpc._result("eth_call", bad)
