"""keeper.testing.faultproxy in front of a real Anvil: each kind of fault as a client sees it,
batches, counts, seeds and runtime changes; and FailoverRpc's hedged reads and broadcast sends
through it while it hangs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import urllib.request

import pytest
from eth_account import Account

from keeper.chain.jsonrpc import (
    HttpJsonRpc,
    RpcMalformedResponseError,
    RpcTimeoutError,
    RpcTransportError,
)
from keeper.chain.rpc import ErrorKind, FailoverRpc, classify_error
from keeper.chain.timeouts import TimeoutPolicy
from keeper.testing.anvil import Anvil
from keeper.testing.faultproxy import FAULT_KINDS, FaultProxy
from keeper.testing.helpers import wait_for_receipt
from keeper.testing.plugin import FaultProxyFactory

pytestmark = pytest.mark.integration

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def post(url: str, payload: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("http429", ErrorKind.RATE_LIMITED),
        ("http500", ErrorKind.SERVER),
        ("garbage", ErrorKind.MALFORMED),
        ("truncated", ErrorKind.MALFORMED),
        ("reset", ErrorKind.TRANSPORT),
        ("hang", ErrorKind.TIMEOUT),
    ],
)
async def test_each_fault_as_the_client_sees_it(
    fault_proxy: FaultProxyFactory, kind: str, expected: ErrorKind
) -> None:
    proxy = fault_proxy(hang_s=1.0)
    client = HttpJsonRpc(proxy.url, timeout=0.3)
    try:
        proxy.force(kind)
        with pytest.raises((RpcTransportError, RpcMalformedResponseError)) as info:
            await client.request("eth_chainId")
        assert classify_error(info.value) is expected
        if kind == "hang":
            assert isinstance(info.value, RpcTimeoutError)
        assert await client.request("eth_chainId") == "0x7a69"  # rate 0: passes through
    finally:
        await client.close()
    assert proxy.faults == {kind: 1}
    assert (proxy.requests, proxy.injected) == (2, 1)


def test_batches_pass_through_and_each_call_is_counted(fault_proxy: FaultProxyFactory) -> None:
    with FaultProxy(fault_proxy().url) as chained:  # a proxy in front of a proxy, sync
        answer = post(
            chained.url,
            [
                {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
            ],
        )
        assert isinstance(answer, list)
        assert sorted(item["id"] for item in answer) == [1, 2]
        assert chained.calls == {"eth_chainId": 1, "eth_blockNumber": 1}
        assert chained.requests == 1
        chained.reset_counts()
        assert (chained.requests, chained.calls) == (0, {})


def test_a_seed_repeats_the_faults_and_settings_change_while_it_runs(anvil: Anvil) -> None:
    def run(proxy: FaultProxy) -> list[str]:
        out = []
        for i in range(40):
            before = proxy.faults
            with contextlib.suppress(OSError, ValueError):  # the faults, as urllib takes them
                post(proxy.url, {"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []})
            after = proxy.faults
            out += [k for k in after if after[k] != before.get(k, 0)] or ["-"]
        return out

    kinds = ["http429", "http500", "garbage", "truncated"]
    with FaultProxy(anvil.url, rate=0.5, kinds=kinds, seed=7) as one:
        first = run(one)
        one.rate = 0.0
        assert set(run(one)) == {"-"}
    with FaultProxy(anvil.url, rate=0.5, kinds=kinds, seed=7) as two:
        assert run(two) == first
    assert 5 < sum(k != "-" for k in first) < 35
    with FaultProxy(anvil.url, rate=1.0, kinds={"http500": 1.0}, methods={"eth_call"}) as only:
        assert run(only)[:3] == ["-", "-", "-"]  # eth_chainId is let through
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultProxy(anvil.url, kinds=["teapot"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultProxy(anvil.url, rate=1.5)
    assert set(FAULT_KINDS) >= set(kinds)


def test_stopping_while_a_hang_ends_logs_no_error(
    anvil: Anvil, caplog: pytest.LogCaptureFixture
) -> None:
    # a held request that wakes up during the shutdown must not forward through a closed
    # session (aiohttp logged "Error handling request ... Session is closed")
    proxy = FaultProxy(anvil.url, rate=1.0, kinds=["hang"], hang_s=0.25).start()
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}

    def client() -> None:
        with contextlib.suppress(OSError, ValueError):  # cut short, or answered: either is fine
            post(proxy.url, payload)

    held = threading.Thread(target=client)
    with caplog.at_level(logging.ERROR):
        held.start()
        time.sleep(0.2)  # the request is held; its hang ends during the stop
        proxy.stop()
        held.join(10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_reads_through_a_hanging_endpoint_stay_fast(
    fault_proxy: FaultProxyFactory, anvil_snapshot: Anvil
) -> None:
    """200 reads with the first endpoint failing 20% of requests (a fifth of them 5 s hangs),
    the second direct: hedged reads never wait for a hang; with the old fixed timeout and no
    hedging, a hang is waited out in full."""
    proxy = fault_proxy(rate=0.2, seed=3, hang_s=5.0)
    proxy.force("hang")
    worst = 0.0
    async with FailoverRpc([proxy.url, anvil_snapshot.url], cooldown=0.0) as rpc:
        for _ in range(200):
            started = time.perf_counter()
            assert await rpc.get_balance(DEV_ADDRESS) > 0
            worst = max(worst, time.perf_counter() - started)
        first, second = rpc.stats()
    assert proxy.faults.get("hang", 0) >= 1
    assert second.hedge_wins >= 1
    assert worst < 1.0, f"the slowest read took {worst:.2f}s"
    assert first.timeouts["read"] < 2.0  # from its history, not the 10 s cap

    proxy.reset_counts()
    proxy.rate, proxy.hang_s = 0.0, 2.0
    proxy.force("hang")
    fixed = TimeoutPolicy.fixed(10.0)
    async with FailoverRpc(
        [proxy.url, anvil_snapshot.url], timeouts=fixed, hedge=False, broadcast=False
    ) as old:
        started = time.perf_counter()
        assert await old.get_balance(DEV_ADDRESS) > 0
        assert time.perf_counter() - started >= 1.9  # the hang, waited out


def signed_transfer(anvil: Anvil) -> str:
    nonce = int(anvil.rpc("eth_getTransactionCount", DEV_ADDRESS, "pending"), 16)
    tx = {
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 1,
        "nonce": nonce,
        "chainId": 31337,
    }
    raw: bytes = Account.sign_transaction(tx, DEV_KEY).raw_transaction
    return "0x" + raw.hex()


async def test_a_send_is_not_held_up_by_a_hanging_endpoint(
    fault_proxy: FaultProxyFactory, anvil_snapshot: Anvil
) -> None:
    proxy = fault_proxy(hang_s=5.0, methods={"eth_sendRawTransaction"})
    proxy.force("hang")
    raw = signed_transfer(anvil_snapshot)
    async with FailoverRpc([proxy.url, anvil_snapshot.url]) as rpc:
        started = time.perf_counter()
        tx_hash = await rpc.send_raw_transaction(raw)
        took = time.perf_counter() - started
        for _ in range(100):  # the proxy's copy is still on its way, in the background
            if proxy.calls:
                break
            await asyncio.sleep(0.02)
    assert took < 1.0
    assert wait_for_receipt(anvil_snapshot, tx_hash)["status"] == "0x1"
    assert proxy.calls == {"eth_sendRawTransaction": 1}
