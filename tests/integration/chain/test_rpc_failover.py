"""FailoverRpc against a real Anvil behind faulty proxies."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account

from keeper.chain.jsonrpc import (
    HttpJsonRpc,
    RpcBlockUnavailableError,
    RpcMalformedResponseError,
    RpcResponseError,
    RpcSendOutcomeUnknownError,
    RpcTimeoutError,
    RpcTransportError,
)
from keeper.chain.rpc import FailoverRpc, Reads
from keeper.testing.anvil import Anvil
from keeper.testing.helpers import wait_for_receipt
from tests.integration.chain.support import (
    DEV_ADDRESS,
    DEV_KEY,
    FAST,
    REVERTER,
    REVERTER_CODE,
    ProxyFactory,
)

pytestmark = pytest.mark.integration


def mine(anvil: Anvil, blocks: int) -> int:
    anvil.rpc("anvil_mine", hex(blocks))
    return int(anvil.rpc("eth_blockNumber"), 16)


async def test_dead_endpoint_first_fails_over_and_cools_down(
    anvil_snapshot: Anvil, dead_url: str
) -> None:
    async with FailoverRpc([dead_url, anvil_snapshot.url], **FAST) as rpc:
        assert await rpc.chain_id() == 31337
        assert await rpc.block_number() == int(anvil_snapshot.rpc("eth_blockNumber"), 16)
        dead, good = rpc.stats()
    assert dead.requests == 1  # cooled down after the first refusal: not asked again
    assert dead.errors == {"connect": 1}
    assert not dead.healthy
    assert good.requests == 2
    assert good.answers == 2
    assert good.latency_buckets[float("inf")] == 2
    assert good.latency_sum > 0


async def test_flaky_endpoint_answering_429_and_500(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    flaky = await make_proxy()
    flaky.periodic_fault, flaky.period = "status:500", 2
    other = await make_proxy()
    other.periodic_fault, other.period = "status:429", 3
    async with FailoverRpc([flaky.url, other.url], cooldown=0.0, **FAST) as rpc:
        for _ in range(12):
            assert await rpc.get_balance(DEV_ADDRESS) > 0
        by_label = {s.label: s for s in rpc.stats()}
    assert flaky.faults_served > 0
    assert other.faults_served > 0
    assert by_label[rpc.labels[0]].errors.get("server", 0) == flaky.faults_served
    assert by_label[rpc.labels[1]].errors.get("rate_limited", 0) == other.faults_served


async def test_single_flaky_endpoint_is_retried_by_tenacity(make_proxy: ProxyFactory) -> None:
    flaky = await make_proxy()
    flaky.periodic_fault, flaky.period = "rpc:-32603:internal error", 2
    async with FailoverRpc([flaky.url], cooldown=0.0, **FAST) as rpc:
        for _ in range(6):
            assert await rpc.chain_id() == 31337
        (stats,) = rpc.stats()
    assert stats.errors == {"node": flaky.faults_served}
    assert stats.answers == 6


async def test_lagging_endpoint_is_used_after_the_one_ahead(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    head = mine(anvil_snapshot, 12)
    lagging = await make_proxy()
    lagging.lag = 8
    fresh = await make_proxy()
    async with FailoverRpc([lagging.url, fresh.url], max_lag=3, **FAST) as rpc:
        heads = await rpc.refresh_heads()
        assert sorted(h for h in heads.values() if h is not None) == [head - 8, head]
        assert rpc.best_head == head
        assert await rpc.block_number() == head  # the fresh one answers, though listed second
        block = await rpc.get_block("latest")
    assert block.number == head
    assert lagging.calls("eth_getBlockByNumber") == 0


async def test_pinned_read_skips_an_endpoint_known_to_lack_the_block(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    head = mine(anvil_snapshot, 6)
    lagging = await make_proxy()
    lagging.lag = 4
    fresh = await make_proxy()
    # A large max_lag keeps the lagging endpoint first in line for unpinned reads.
    async with FailoverRpc([lagging.url, fresh.url], max_lag=100, **FAST) as rpc:
        await rpc.refresh_heads()
        # The fresh one is asked first (known to have the block) and fails once; the lagging
        # one is asked its head again, is still behind, and is skipped; then the retry.
        fresh.next_faults = ["status:502"]
        assert await rpc.get_balance(DEV_ADDRESS, head) > 0
        assert await rpc.get_balance(DEV_ADDRESS, head - 4) > 0  # the lagging one has that
        lag_stats, fresh_stats = rpc.stats()
    assert lagging.calls("eth_getBalance") == 1  # only the read at head - 4
    assert fresh.calls("eth_getBalance") == 2
    assert lag_stats.skipped >= 1
    assert fresh_stats.errors == {"server": 1}
    assert fresh_stats.head == head


async def test_pinned_read_skips_an_endpoint_that_says_header_not_found(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    head = mine(anvil_snapshot, 3)
    lagging = await make_proxy()
    lagging.lag = 2
    fresh = await make_proxy()
    async with FailoverRpc([lagging.url, fresh.url], max_lag=100, **FAST) as rpc:
        # Heads unknown: the lagging one is asked first, says "header not found", is skipped.
        assert await rpc.eth_call(REVERTER, b"", head) == b""
        block = await rpc.get_block(head)  # now known to have it, the fresh one comes first
        lag_stats, _ = rpc.stats()
    assert block.number == head
    assert lag_stats.errors == {"missing_block": 1}
    assert lagging.calls("eth_getBlockByNumber") == 0


async def test_no_endpoint_has_the_block(anvil_snapshot: Anvil) -> None:
    head = int(anvil_snapshot.rpc("eth_blockNumber"), 16)
    async with FailoverRpc([anvil_snapshot.url], attempts=2, **FAST) as rpc:
        with pytest.raises(RpcBlockUnavailableError):
            await rpc.get_block(head + 50)
        with pytest.raises(RpcBlockUnavailableError, match="eth_getBalance") as info:
            await rpc.get_balance(DEV_ADDRESS, head + 50)
        (stats,) = rpc.stats()
    assert info.value.block == head + 50
    assert isinstance(info.value.__cause__, RpcResponseError)  # Anvil's BlockOutOfRangeError
    assert stats.head is None  # it lacks head + 50, but that does not say where its head is
    assert stats.healthy


async def test_revert_is_raised_at_once_not_failed_over(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    anvil_snapshot.rpc("anvil_setCode", REVERTER, REVERTER_CODE)
    first, second = await make_proxy(), await make_proxy()
    async with FailoverRpc([first.url, second.url], **FAST) as rpc:
        with pytest.raises(RpcResponseError) as info:
            await rpc.eth_call(REVERTER, b"\x12\x34")
        with pytest.raises(RpcResponseError, match="eth_getBalance"):
            await rpc.request("eth_getBalance", ["0xnot-an-address", "latest"])
    assert info.value.code == 3
    assert info.value.data == "0xdeadbeef"
    assert second.seen == []
    assert first.calls("eth_call") == 1


@pytest.mark.parametrize("fault", ["garbage", "truncate", "cut"])
async def test_malformed_answer_names_the_call_and_the_next_call_recovers(
    make_proxy: ProxyFactory, fault: str
) -> None:
    proxy = await make_proxy()
    async with FailoverRpc([proxy.url], attempts=1) as rpc:
        proxy.next_faults = [fault]
        with pytest.raises((RpcMalformedResponseError, RpcTransportError)) as info:
            await rpc.get_balance(DEV_ADDRESS)
        assert await rpc.get_balance(DEV_ADDRESS) > 0
    message = str(info.value)
    assert message.startswith(f"eth_getBalance at {proxy.url}:")
    kind = {"garbage": "not JSON", "truncate": "not JSON", "cut": "cut short"}[fault]
    assert kind in message


async def test_malformed_answer_fails_over(make_proxy: ProxyFactory) -> None:
    broken, fine = await make_proxy(), await make_proxy()
    broken.fault = "truncate"
    async with FailoverRpc([broken.url, fine.url], **FAST) as rpc:
        assert await rpc.chain_id() == 31337
        assert rpc.stats()[0].errors == {"malformed": 1}


async def test_timeout_fails_over(make_proxy: ProxyFactory) -> None:
    slow, fine = await make_proxy(), await make_proxy()
    slow.fault, slow.hang_seconds = "hang", 2.0
    async with FailoverRpc([slow.url, fine.url], timeout=0.2, **FAST) as rpc:
        assert await rpc.chain_id() == 31337
        assert rpc.stats()[0].errors == {"timeout": 1}
    plain = HttpJsonRpc(slow.url, timeout=0.2)
    with pytest.raises(RpcTimeoutError, match="eth_chainId"):
        await plain.request("eth_chainId")
    await plain.close()


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


async def test_send_is_not_retried_when_its_fate_is_unknown(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    cutting, spare = await make_proxy(), await make_proxy()
    cutting.next_faults = ["cut"]
    raw = signed_transfer(anvil_snapshot)
    async with FailoverRpc([cutting.url, spare.url], broadcast=False, **FAST) as rpc:
        with pytest.raises(RpcSendOutcomeUnknownError) as info:
            await rpc.send_raw_transaction(raw)
        # It did arrive (the proxy forwarded it, then dropped the answer): the hash finds it.
        found = await rpc.request("eth_getTransactionByHash", [info.value.tx_hash])
    assert found is not None
    assert cutting.calls("eth_sendRawTransaction") == 1
    assert spare.calls("eth_sendRawTransaction") == 0
    assert isinstance(info.value, RpcTransportError)


async def test_a_broadcast_send_is_sent_when_one_endpoint_drops_the_answer(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil
) -> None:
    cutting, spare = await make_proxy(), await make_proxy()
    cutting.next_faults, cutting.hang_seconds = ["slowcut"], 0.3  # after the spare's answer
    raw = signed_transfer(anvil_snapshot)
    async with FailoverRpc([cutting.url, spare.url], **FAST) as rpc:
        tx_hash = await rpc.send_raw_transaction(raw)
        await asyncio.sleep(0.5)  # the cut copy arrives (and is counted) in the background
    assert wait_for_receipt(anvil_snapshot, tx_hash)["status"] == "0x1"
    assert cutting.calls("eth_sendRawTransaction") == spare.calls("eth_sendRawTransaction") == 1


async def test_send_moves_on_when_it_certainly_did_not_arrive(
    anvil_snapshot: Anvil, dead_url: str
) -> None:
    raw = signed_transfer(anvil_snapshot)
    async with FailoverRpc([dead_url, anvil_snapshot.url], **FAST) as rpc:
        tx_hash = await rpc.send_raw_transaction(raw)
        with pytest.raises(RpcResponseError):  # the node's answer: raised as it is
            await rpc.send_raw_transaction(raw)
    receipt = anvil_snapshot.rpc("eth_getTransactionReceipt", tx_hash)
    assert receipt is not None


async def test_reads_over_a_plain_endpoint(anvil_snapshot: Anvil) -> None:
    plain = HttpJsonRpc(anvil_snapshot.url)
    reads = Reads(plain)
    head = await reads.block_number()
    block = await reads.get_block(head)
    assert block.number == head
    assert block.base_fee is not None
    assert await reads.get_code(DEV_ADDRESS) == b""
    assert await reads.get_transaction_count(DEV_ADDRESS, head) >= 0
    await plain.close()


async def test_data_reads_fail_over_and_decode_as_the_plain_reads_do(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil, dead_url: str
) -> None:
    anvil_snapshot.rpc("anvil_setCode", REVERTER, REVERTER_CODE)
    flaky = await make_proxy()
    flaky.periodic_fault, flaky.period = "status:500", 2
    async with FailoverRpc([dead_url, flaky.url], cooldown=0.0, **FAST) as rpc:
        for _ in range(6):
            code = await rpc.request_data("eth_getCode", [REVERTER, "latest"])
            assert code == bytes.fromhex(REVERTER_CODE[2:])
            assert code == await rpc.get_code(REVERTER)
        dead, good = rpc.stats()
    assert set(dead.errors) == {"connect"}  # tried again and again: no cooldown here
    assert flaky.faults_served > 0
    assert good.errors.get("server", 0) == flaky.faults_served


@pytest.mark.parametrize("fault", ["garbage", "truncate", "cut"])
async def test_malformed_data_answer_names_the_call_and_the_next_call_recovers(
    make_proxy: ProxyFactory, anvil_snapshot: Anvil, fault: str
) -> None:
    anvil_snapshot.rpc("anvil_setCode", REVERTER, REVERTER_CODE)
    proxy = await make_proxy()
    plain = HttpJsonRpc(proxy.url)
    async with FailoverRpc([proxy.url], attempts=1) as rpc:
        for client in (rpc, plain):
            proxy.next_faults = [fault]
            with pytest.raises((RpcMalformedResponseError, RpcTransportError)) as info:
                await client.request_data("eth_getCode", [REVERTER, "latest"])
            assert str(info.value).startswith(f"eth_getCode at {proxy.url}:")
            assert await client.request_data("eth_getCode", [REVERTER, "latest"]) == bytes.fromhex(
                REVERTER_CODE[2:]
            )
    await plain.close()
