"""Multicall3 batching against a real Anvil holding the canonical Multicall3."""

from __future__ import annotations

import math

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak

from keeper.abis import AbiNotFoundError, bytecode
from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.chain.multicall import (
    MULTICALL3_ADDRESS,
    Call,
    CallResult,
    Multicall,
    MulticallError,
)
from keeper.chain.multicall3_code import MULTICALL3_CODE_HASH
from keeper.chain.rpc import CountingRpc, FailoverRpc
from keeper.testing.anvil import Anvil
from keeper.testing.helpers import wait_for_receipt
from tests.integration.chain.support import DEV_ADDRESS, REVERTER, REVERTER_CODE, ProxyFactory

pytestmark = pytest.mark.integration

GET_BLOCK_NUMBER = bytes.fromhex("42cbb15c")
GET_ETH_BALANCE = bytes.fromhex("4d2301cc")


def balance_call(address: str) -> Call:
    return Call(MULTICALL3_ADDRESS, GET_ETH_BALANCE + encode(["address"], [address]))


def as_int(result: CallResult) -> int:
    assert result.success, result
    return int.from_bytes(result.data, "big")


async def test_canonical_code_is_in_place(multicall3: Anvil) -> None:
    async with FailoverRpc([multicall3.url]) as rpc:
        code = await rpc.get_code(MULTICALL3_ADDRESS)
    assert "0x" + keccak(code).hex() == MULTICALL3_CODE_HASH


async def test_batch_with_failing_calls_pinned_to_one_block(multicall3: Anvil) -> None:
    pinned = int(multicall3.rpc("eth_blockNumber"), 16)
    multicall3.rpc("anvil_mine", "0x3")  # later blocks exist: the calls must not see them
    calls = [
        Call(REVERTER, b"\x01") if i % 7 == 3 else Call(MULTICALL3_ADDRESS, GET_BLOCK_NUMBER)
        for i in range(1_203)
    ]
    counting = CountingRpc(FailoverRpc([multicall3.url]))
    multicall = Multicall(counting, chunk_size=500)
    results = await multicall.aggregate(calls, block=pinned)
    assert len(results) == len(calls)
    for i, result in enumerate(results):
        if i % 7 == 3:
            assert result == CallResult(False, bytes.fromhex("deadbeef"))
        else:
            assert as_int(result) == pinned
    assert multicall.round_trips == math.ceil(len(calls) / 500) == 3
    assert counting.count == 3
    assert counting.by_method == {"eth_call": 3}


async def test_latest_is_resolved_once_for_several_chunks(multicall3: Anvil) -> None:
    counting = CountingRpc(HttpJsonRpc(multicall3.url))
    multicall = Multicall(counting, chunk_size=2)
    results = await multicall.aggregate(
        [Call(MULTICALL3_ADDRESS, GET_BLOCK_NUMBER)] * 5, block="latest"
    )
    head = int(multicall3.rpc("eth_blockNumber"), 16)
    assert [as_int(r) for r in results] == [head] * 5
    assert counting.by_method == {"eth_blockNumber": 1, "eth_call": 3}


async def test_chunks_shrink_when_the_provider_refuses_their_size(
    multicall3: Anvil, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy()
    addresses = [f"0x{i:040x}" for i in range(1, 301)]
    multicall3.rpc("anvil_setBalance", addresses[41], hex(12345))
    calls = [balance_call(a) for a in addresses]
    # About 100 calls fit in a request of 20 KB (a call's share of the calldata is ~200 bytes).
    proxy.max_body = 20_000
    async with FailoverRpc([proxy.url]) as rpc:
        multicall = Multicall(rpc, chunk_size=300)
        block = await rpc.block_number()
        results = await multicall.aggregate(calls, block=block)
        assert multicall.chunk_size < 100
        assert multicall.shrinks >= 2
        assert [as_int(r) for r in results] == [12345 if i == 41 else 0 for i in range(300)]
        refused = proxy.faults_served
        # The smaller size is kept: the next batch is not refused at all.
        again = await multicall.aggregate(calls, block=block)
        assert again == results
        assert proxy.faults_served == refused
        assert rpc.stats()[0].errors == {"too_large": refused}


async def test_state_override_where_multicall3_is_missing(anvil_snapshot: Anvil) -> None:
    assert anvil_snapshot.rpc("eth_getCode", MULTICALL3_ADDRESS, "latest") == "0x"
    async with FailoverRpc([anvil_snapshot.url]) as rpc:
        block = await rpc.block_number()
        with pytest.raises(MulticallError, match="is Multicall3 deployed"):
            await Multicall(rpc).aggregate([balance_call(DEV_ADDRESS)], block=block)
        (result,) = await Multicall(rpc, code_override=True).aggregate(
            [balance_call(DEV_ADDRESS)], block=block
        )
    assert as_int(result) == int(anvil_snapshot.rpc("eth_getBalance", DEV_ADDRESS, hex(block)), 16)


async def test_project_multicall3_at_another_address(anvil_snapshot: Anvil) -> None:
    try:
        creation = bytecode("Multicall3")
    except AbiNotFoundError:
        pytest.skip("abis/Multicall3.json is not there yet (contracts/ in progress)")
    tx_hash = anvil_snapshot.rpc(
        "eth_sendTransaction", {"from": DEV_ADDRESS, "data": creation, "gas": hex(5_000_000)}
    )
    address = wait_for_receipt(anvil_snapshot, tx_hash)["contractAddress"]
    anvil_snapshot.rpc("anvil_setCode", REVERTER, REVERTER_CODE)
    empty_account = "0x000000000000000000000000000000000000e111"
    async with FailoverRpc([anvil_snapshot.url]) as rpc:
        block = await rpc.block_number()
        results = await Multicall(rpc, address=address).aggregate(
            [Call(REVERTER, b"\x01"), Call(empty_account, b"")], block=block
        )
    assert results == [CallResult(False, bytes.fromhex("deadbeef")), CallResult(True, b"")]
