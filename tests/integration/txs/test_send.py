"""Send, simulate, fee cap, L1 fee, consecutive nonces and outside nonce use on a real Anvil."""

from __future__ import annotations

import asyncio
import time

from eth_abi.abi import encode
from eth_account import Account
from eth_hash.auto import keccak

from keeper.abis import bytecode
from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal, TxStatus
from keeper.signer import Signer
from keeper.testing.anvil import Anvil
from keeper.testing.helpers import wait_for_receipt
from keeper.txs import GAS_PRICE_ORACLE, ChainKind, Failure, FeePolicy, TxManager, TxRequest
from tests.integration.txs.conftest import (
    SINK,
    Wallet,
    nonce_of,
    receipt,
    sent_from,
    tx_config,
)


def open_intent(journal: Journal, position: str = "pos-1") -> int:
    intent, created = journal.open_intent(
        "refex", position, "top_up", {"amount": "1000000"}, block=1, spend_token="USDC",
        spend_amount=1_000_000, reason="margin below top_up_below",
    )  # fmt: skip
    assert created
    return intent.id


async def test_send_confirms_and_is_recorded(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    intent_id = open_intent(journal)
    started = time.perf_counter()
    out = await manager.send(TxRequest(intent_id, SINK, b"", 1))
    elapsed = time.perf_counter() - started
    print(f"send + confirm on Anvil: {elapsed * 1000:.0f} ms")
    assert out.status is IntentStatus.DONE, out
    assert out.failure is None
    got = receipt(node, out.tx_hash or "")
    assert got is not None
    assert got["status"] == "0x1"
    [tx] = journal.transactions(intent_id)
    assert tx.status is TxStatus.FINAL
    assert tx.nonce == 0
    assert tx.sender == wallet.address
    assert tx.block_number == int(got["blockNumber"], 16)
    assert tx.gas_limit == 75_200  # 21,000 x 1.2 + the 50,000 headroom
    assert tx.receipt_status == 1
    assert tx.gas_used == 21_000
    assert tx.max_fee >= tx.priority_fee > 0
    steps = [(e.from_status, e.to_status) for e in journal.events(intent_id)]
    assert steps == [
        (None, "decided"),
        ("decided", "signed"),
        ("tx:signed", "tx:sent"),
        ("signed", "sent"),
        ("tx:sent", "tx:mined"),
        ("sent", "mined"),
        ("tx:mined", "tx:final"),
        ("mined", "done"),
    ]
    assert nonce_of(node, wallet.address) == 1
    assert journal.next_nonce(31337, wallet.address) == 1


async def test_same_decision_next_block_is_dropped(manager: TxManager, journal: Journal) -> None:
    first = open_intent(journal)
    again, created = journal.open_intent("refex", "pos-1", "top_up", {"amount": "1000000"})
    assert not created
    assert again.id == first
    out = await manager.send(TxRequest(first, SINK, b"", 1))
    assert out.status is IntentStatus.DONE
    later, created = journal.open_intent("refex", "pos-1", "top_up", {"amount": "5"})
    assert created
    assert later.seq == 2


async def test_simulated_revert_is_decoded_and_nothing_sent(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    deployer = node.rpc("eth_accounts")[0]
    deploy = node.rpc("eth_sendTransaction", {"from": deployer, "data": bytecode("TestUSDC")})
    token = wait_for_receipt(node, deploy)["contractAddress"]
    selector = keccak(b"transferFrom(address,address,uint256)")[:4]
    data = selector + encode(["address", "address", "uint256"], [deployer, wallet.address, 5])
    intent_id = open_intent(journal)
    out = await manager.send(TxRequest(intent_id, token, data))
    assert out.status is IntentStatus.FAILED
    assert out.failure is Failure.SIMULATION_REVERTED
    assert out.revert is not None
    assert out.revert.name == "InsufficientAllowance"
    assert out.revert.message == "InsufficientAllowance(allowance=0, needed=5)"
    intent = journal.intent(intent_id)
    assert intent.failure == "simulation_reverted: InsufficientAllowance(allowance=0, needed=5)"
    assert journal.transactions(intent_id) == []
    assert nonce_of(node, wallet.address, "pending") == 0


async def test_fee_above_cap_sends_nothing(
    rpc: FailoverRpc, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    # the next block's base fee (what the manager prices against; at genesis it is well below
    # the latest block's)
    base = int(node.rpc("eth_feeHistory", "0x1", "latest", [])["baseFeePerGas"][-1], 16)
    config = tx_config(fees=FeePolicy(max_fee_cap=base // 2, min_priority_fee=1))
    manager = TxManager(rpc, journal, Signer.from_key(wallet.key), config)
    intent_id = open_intent(journal)
    out = await manager.send(TxRequest(intent_id, SINK, b"", 1))
    assert out.status is IntentStatus.FAILED
    assert out.failure is Failure.FEE_CAP
    assert out.needs_alert
    assert "exceeds max_fee_cap" in out.detail
    assert journal.transactions(intent_id) == []
    assert nonce_of(node, wallet.address, "pending") == 0
    # the position may be acted on again later, under a new sequence number
    later, created = journal.open_intent("refex", "pos-1", "top_up", {"amount": "1"})
    assert created
    assert later.seq == 2


async def test_op_stack_l1_fee_is_counted(
    rpc: FailoverRpc, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    # A stand-in GasPriceOracle: answers every call with the word 0x1234567 (wei).
    node.rpc("anvil_setCode", GAS_PRICE_ORACLE, "0x6301234567" + "60005260206000f3")
    config = tx_config(chain_kind=ChainKind.OP_STACK)
    manager = TxManager(rpc, journal, Signer.from_key(wallet.key), config)
    intent_id = open_intent(journal)
    out = await manager.send(TxRequest(intent_id, SINK, b"", 1))
    assert out.status is IntentStatus.DONE
    [tx] = journal.transactions(intent_id)
    assert tx.l1_fee == 0x1234567
    assert tx.max_cost == tx.gas_limit * tx.max_fee + 0x1234567 + 1


async def test_op_stack_cost_cap_counts_the_l1_fee(
    rpc: FailoverRpc, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    node.rpc("anvil_setCode", GAS_PRICE_ORACLE, "0x6a" + "ff" * 11 + "60005260206000f3")
    fees = FeePolicy(max_fee_cap=500 * 10**9, max_cost=10**18)
    config = tx_config(chain_kind=ChainKind.OP_STACK, fees=fees)
    manager = TxManager(rpc, journal, Signer.from_key(wallet.key), config)
    intent_id = open_intent(journal)
    out = await manager.send(TxRequest(intent_id, SINK, b"", 1))
    assert out.failure is Failure.COST_CAP
    assert out.needs_alert
    assert journal.transactions(intent_id) == []


async def test_several_intents_in_one_block_get_consecutive_nonces(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    node.rpc("evm_setAutomine", False)
    ids = [open_intent(journal, f"pos-{i}") for i in range(5)]
    outs = await asyncio.gather(*(manager.submit(TxRequest(i, SINK, b"", 1)) for i in ids))
    assert [o.status for o in outs] == [IntentStatus.SENT] * 5
    assert sorted(o.nonce or 0 for o in outs) == [0, 1, 2, 3, 4]
    head = int(node.rpc("eth_blockNumber"), 16)
    node.rpc("evm_mine")
    done = await asyncio.gather(*(manager.resolve(i) for i in ids))
    assert [o.status for o in done] == [IntentStatus.DONE] * 5
    blocks = {journal.transactions(i)[0].block_number for i in ids}
    assert blocks == {head + 1}  # all five in the one block
    assert len(sent_from(node, wallet.address, head + 1)) == 5


async def test_outside_nonce_use_is_detected_and_the_next_send_succeeds(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    # Our transaction is signed and journalled at nonce 0 (as if we crashed before sending) ...
    first = open_intent(journal, "pos-a")
    prepared = await manager.prepare(TxRequest(first, SINK, b"", 1))
    assert not hasattr(prepared, "failure"), prepared
    # ... and a manual transaction from the same account, outside the journal, takes nonce 0.
    outside = Account.from_key(wallet.key).sign_transaction(
        {"type": 2, "chainId": 31337, "nonce": 0, "to": SINK, "value": 7, "gas": 21_000,
         "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9}
    )  # fmt: skip
    node.rpc("eth_sendRawTransaction", "0x" + outside.raw_transaction.hex())
    await asyncio.sleep(0.2)
    out = await manager.resolve(first)
    assert out.status is IntentStatus.DONE, out
    txs = journal.transactions(first)
    assert [(t.nonce, t.status) for t in txs] == [(0, TxStatus.SUPERSEDED), (1, TxStatus.FINAL)]
    assert any("used outside" in e.detail for e in journal.events(first))
    # A new action after that simply gets the next nonce.
    second = open_intent(journal, "pos-b")
    out = await manager.send(TxRequest(second, SINK, b"", 1))
    assert out.status is IntentStatus.DONE
    assert out.nonce == 2
    # And a nonce used outside after our hint was read is resynced at broadcast.
    third = open_intent(journal, "pos-c")
    outside = Account.from_key(wallet.key).sign_transaction(
        {"type": 2, "chainId": 31337, "nonce": 3, "to": SINK, "value": 7, "gas": 21_000,
         "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9}
    )  # fmt: skip
    stale = await manager.prepare(TxRequest(third, SINK, b"", 1))
    node.rpc("eth_sendRawTransaction", "0x" + outside.raw_transaction.hex())
    await asyncio.sleep(0.2)
    assert not hasattr(stale, "failure")
    out = await manager.resolve(third)
    assert out.status is IntentStatus.DONE
    assert out.nonce == 4
    assert nonce_of(node, wallet.address) == 5


async def test_reverted_onchain_is_recorded_as_failed(
    manager: TxManager, journal: Journal, node: Anvil
) -> None:
    target = "0x000000000000000000000000000000000000c0de"
    node.rpc("anvil_setCode", target, "0x00")  # STOP: the simulation passes
    node.rpc("evm_setAutomine", False)
    intent_id = open_intent(journal)
    out = await manager.submit(TxRequest(intent_id, target, b""))
    assert out.status is IntentStatus.SENT
    node.rpc("anvil_setCode", target, "0xfe")  # INVALID: the mined call fails
    node.rpc("evm_mine")
    out = await manager.resolve(intent_id)
    assert out.status is IntentStatus.FAILED
    assert out.failure is Failure.REVERTED
    [tx] = journal.transactions(intent_id)
    assert tx.receipt_status == 0
    assert tx.status is TxStatus.FINAL


async def test_delayed_venue_awaits_execution(
    rpc: FailoverRpc, journal: Journal, wallet: Wallet
) -> None:
    manager = TxManager(
        rpc, journal, Signer.from_key(wallet.key), tx_config(), delayed_venues={"gmx"}
    )
    intent, _ = journal.open_intent("gmx", "order-1", "reduce", {"size": "1"})
    out = await manager.send(TxRequest(intent.id, SINK, b"", 1))
    assert out.status is IntentStatus.AWAITING_EXECUTION
    assert journal.open_intent_for("gmx", "order-1") is not None  # still blocks a second one
    assert await manager.reconcile() == []  # the venue adapter resolves it, not txs
    journal.set_status(intent.id, IntentStatus.DONE, detail="order executed")
    assert journal.open_intent_for("gmx", "order-1") is None
