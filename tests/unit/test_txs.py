"""The transaction manager without a node: fee pricing, bumps, L1 fees, resyncs (fakes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_hash.auto import keccak

from keeper.chain.jsonrpc import RpcResponseError
from keeper.chain.rpc import Reads
from keeper.journal import IntentStatus, Journal, TxKind, TxRecord, TxStatus
from keeper.signer import Signer
from keeper.txs import (
    GAS_PRICE_ORACLE,
    NODE_INTERFACE,
    ChainKind,
    Failure,
    FeeCapExceededError,
    FeePolicy,
    Fees,
    TxConfig,
    TxManager,
    TxRequest,
    bump_fees,
    crash_point,
    price_fees,
)

GWEI = 10**9
KEY = "0x" + "5d" * 32
TO = "0x000000000000000000000000000000000000dEaD"
Handler = Callable[[Sequence[Any]], Any]


def history(base: int, rewards: list[int]) -> dict[str, Any]:
    return {"baseFeePerGas": [hex(base - 1), hex(base)], "reward": [[hex(r)] for r in rewards]}


def test_price_fees_uses_the_median_tip_and_twice_the_base() -> None:
    policy = FeePolicy(max_fee_cap=100 * GWEI, min_priority_fee=1, max_priority_fee=10 * GWEI)
    fees = price_fees(history(10 * GWEI, [3 * GWEI, 0, 1 * GWEI, 2 * GWEI]), policy)
    assert fees == Fees(max_fee=22 * GWEI, priority_fee=2 * GWEI, base_fee=10 * GWEI)


def test_price_fees_clamps_the_tip() -> None:
    policy = FeePolicy(max_fee_cap=100 * GWEI, min_priority_fee=GWEI // 2, max_priority_fee=GWEI)
    assert price_fees(history(GWEI, []), policy).priority_fee == GWEI // 2
    assert price_fees(history(GWEI, [50 * GWEI]), policy).priority_fee == GWEI


def test_price_fees_caps_the_max_fee_while_base_plus_tip_fits() -> None:
    policy = FeePolicy(max_fee_cap=15 * GWEI, min_priority_fee=GWEI, max_priority_fee=GWEI)
    assert price_fees(history(10 * GWEI, []), policy).max_fee == 15 * GWEI
    with pytest.raises(FeeCapExceededError, match="exceeds max_fee_cap") as info:
        price_fees(history(15 * GWEI, []), policy)
    assert info.value.needed == 16 * GWEI


def record(max_fee: int, tip: int) -> TxRecord:
    return TxRecord(
        id=1, intent_id=1, kind=TxKind.ACTION, chain_id=1, sender="0xS", nonce=0, to=TO,
        value=0, data=b"", raw=b"", hash="0x", max_fee=max_fee, priority_fee=tip,
        gas_limit=21_000, l1_fee=0, status=TxStatus.SENT, sent_block=1, block_number=None,
        block_hash=None, receipt_status=None, gas_used=None, effective_gas_price=None,
        created_at_ms=0,
    )  # fmt: skip


def test_bump_is_at_least_twelve_and_a_half_percent() -> None:
    policy = FeePolicy(max_fee_cap=100 * GWEI)
    fees = bump_fees(record(8 * GWEI, GWEI), None, policy)
    assert fees == Fees(max_fee=9 * GWEI, priority_fee=1_125_000_000, base_fee=0)
    fresh = Fees(max_fee=20 * GWEI, priority_fee=GWEI // 2, base_fee=9 * GWEI)
    fees = bump_fees(record(8 * GWEI, GWEI), fresh, policy)
    assert fees is not None
    assert (fees.max_fee, fees.priority_fee) == (20 * GWEI, 1_125_000_000)
    odd = bump_fees(record(7, 3), None, FeePolicy(max_fee_cap=100))
    assert odd is not None
    assert (odd.max_fee, odd.priority_fee) == (8, 4)  # rounded up


def test_bump_is_refused_when_the_cap_leaves_no_room() -> None:
    policy = FeePolicy(max_fee_cap=9 * GWEI - 1)
    assert bump_fees(record(8 * GWEI, GWEI), None, policy) is None


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"bump must be at least 0\.125"):
        FeePolicy(max_fee_cap=1, bump=Decimal("0.1"))
    with pytest.raises(ValueError, match="max_fee_cap"):
        FeePolicy(max_fee_cap=0)
    with pytest.raises(ValueError, match="gas_margin"):
        TxConfig(chain_id=1, fees=FeePolicy(max_fee_cap=1), gas_margin=Decimal("0.9"))


def test_crash_point_only_fires_on_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    crash_point("after_receipt")  # unset: nothing
    monkeypatch.setenv("KEEPER_CRASH_AT", "after_broadcast")
    crash_point("after_receipt")  # another step: nothing


class FakeNode:
    """A scripted JSON-RPC node: method -> handler(params)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.count = 0
        self.sent: list[str] = []
        self.handlers: dict[str, Handler] = {
            "eth_call": lambda p: "0x",
            "eth_estimateGas": lambda p: hex(50_000),
            "eth_feeHistory": lambda p: history(GWEI, [GWEI // 10]),
            "eth_getTransactionCount": lambda p: hex(self.count),
            "eth_blockNumber": lambda p: "0x10",
            "eth_sendRawTransaction": self.accept,
            "eth_getTransactionReceipt": lambda p: None,
            "eth_getTransactionByHash": lambda p: None,
        }

    def accept(self, params: Sequence[Any]) -> str:
        self.sent.append(params[0])
        return "0x" + keccak(bytes.fromhex(params[0][2:])).hex()

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.calls.append((method, list(params)))
        return self.handlers[method](params)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite")
    yield j
    j.close()


def manager(node: FakeNode, journal: Journal, kind: ChainKind = ChainKind.ETHEREUM) -> TxManager:
    config = TxConfig(chain_id=10, fees=FeePolicy(max_fee_cap=100 * GWEI), chain_kind=kind)
    return TxManager(Reads(node), journal, Signer.from_key(KEY), config)


async def test_op_stack_l1_fee_asks_the_oracle_with_the_signed_size(journal: Journal) -> None:
    node = FakeNode()
    seen: list[bytes] = []

    def oracle(params: Sequence[Any]) -> str:
        call = params[0]
        if call["to"] != GAS_PRICE_ORACLE:
            return "0x"
        data = bytes.fromhex(call["data"][2:])
        assert data[:4] == keccak(b"getL1Fee(bytes)")[:4]
        (tx,) = decode(["bytes"], data[4:])
        seen.append(tx)
        return "0x" + encode(["uint256"], [123_456]).hex()

    node.handlers["eth_call"] = oracle
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await manager(node, journal, ChainKind.OP_STACK).submit(TxRequest(intent.id, TO, b"\x01"))
    assert out.status is IntentStatus.SENT
    [tx] = journal.transactions(intent.id)
    assert tx.l1_fee == 123_456
    assert tx.max_cost == tx.gas_limit * tx.max_fee + 123_456
    assert seen[0][0] == 2  # an EIP-1559 envelope ...
    assert len(seen[0]) == len(tx.raw)  # ... the size of the real one


async def test_arbitrum_l1_component(journal: Journal) -> None:
    node = FakeNode()

    def node_interface(params: Sequence[Any]) -> str:
        call = params[0]
        if call["to"] != NODE_INTERFACE:
            return "0x"
        data = bytes.fromhex(call["data"][2:])
        assert data[:4] == keccak(b"gasEstimateL1Component(address,bool,bytes)")[:4]
        to, create, payload = decode(["address", "bool", "bytes"], data[4:])
        assert (to.lower(), create, payload) == (TO.lower(), False, b"\x01")
        return "0x" + encode(["uint64", "uint256", "uint256"], [4_321, 10**7, 3 * 10**9]).hex()

    node.handlers["eth_call"] = node_interface
    txs = manager(node, journal, ChainKind.ARBITRUM)
    assert await txs.arbitrum_l1_gas(TxRequest(1, TO, b"\x01")) == 4_321
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await txs.submit(TxRequest(intent.id, TO, b"\x01"))
    assert out.status is IntentStatus.SENT
    [tx] = journal.transactions(intent.id)
    assert tx.l1_fee == 0  # already inside Arbitrum's gas estimate
    assert tx.gas_limit == 110_000  # 50,000 x 1.2 + the 50,000 headroom


async def test_revert_in_simulation_is_decoded_and_nothing_signed(journal: Journal) -> None:
    node = FakeNode()
    data = "0x08c379a0" + encode(["string"], ["paused"]).hex()

    def revert(params: Sequence[Any]) -> str:
        raise RpcResponseError("eth_call", 3, "execution reverted: paused", data)

    node.handlers["eth_call"] = revert
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await manager(node, journal).submit(TxRequest(intent.id, TO))
    assert out.failure is Failure.SIMULATION_REVERTED
    assert out.detail == "Error: paused"
    assert journal.transactions() == []
    assert not node.sent


async def test_nonce_too_low_resyncs_and_signs_again(journal: Journal) -> None:
    node = FakeNode()
    refusals = ["nonce too low"]

    def send(params: Sequence[Any]) -> str:
        if refusals:
            node.count = 1  # someone else used nonce 0
            raise RpcResponseError("eth_sendRawTransaction", -32003, refusals.pop())
        return node.accept(params)

    node.handlers["eth_sendRawTransaction"] = send
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await manager(node, journal).submit(TxRequest(intent.id, TO))
    assert out.status is IntentStatus.SENT
    assert out.nonce == 1
    txs = journal.transactions(intent.id)
    assert [(t.nonce, t.status) for t in txs] == [(0, TxStatus.REJECTED), (1, TxStatus.SENT)]


async def test_already_known_counts_as_sent(journal: Journal) -> None:
    node = FakeNode()

    def send(params: Sequence[Any]) -> str:
        raise RpcResponseError("eth_sendRawTransaction", -32000, "already known")

    node.handlers["eth_sendRawTransaction"] = send
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await manager(node, journal).submit(TxRequest(intent.id, TO))
    assert out.status is IntentStatus.SENT
    assert [t.status for t in journal.transactions()] == [TxStatus.SENT]


async def test_other_refusals_fail_the_intent(journal: Journal) -> None:
    node = FakeNode()

    def send(params: Sequence[Any]) -> str:
        raise RpcResponseError("eth_sendRawTransaction", -32000, "insufficient funds for gas")

    node.handlers["eth_sendRawTransaction"] = send
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    out = await manager(node, journal).submit(TxRequest(intent.id, TO))
    assert out.status is IntentStatus.FAILED
    assert out.failure is Failure.SEND_REJECTED
    assert [t.status for t in journal.transactions()] == [TxStatus.REJECTED]
    assert journal.open_intent_for("refex", "p") is None


async def test_submit_twice_does_not_sign_twice(journal: Journal) -> None:
    node = FakeNode()
    txs = manager(node, journal)
    intent, _ = journal.open_intent("refex", "p", "top_up", {})
    await txs.submit(TxRequest(intent.id, TO))
    out = await txs.submit(TxRequest(intent.id, TO))
    assert out.status is IntentStatus.SENT
    assert "already signed" in out.detail
    assert len(journal.transactions()) == 1
    assert len(node.sent) == 1


async def test_reconcile_expires_stale_unsigned_intents_only(journal: Journal) -> None:
    node = FakeNode()
    config = TxConfig(chain_id=10, fees=FeePolicy(max_fee_cap=100 * GWEI), stale_decided_ms=0)
    txs = TxManager(Reads(node), journal, Signer.from_key(KEY), config)
    stale, _ = journal.open_intent("refex", "p", "top_up", {})
    outs = await txs.reconcile(timeout=0)
    assert [(o.intent_id, o.status) for o in outs] == [(stale.id, IntentStatus.EXPIRED)]
    patient = TxManager(
        Reads(node), journal, Signer.from_key(KEY), replace(config, stale_decided_ms=60_000)
    )
    fresh, _ = journal.open_intent("refex", "p", "top_up", {})
    assert fresh.seq == 2
    assert await patient.reconcile(timeout=0) == []
    assert journal.intent(fresh.id).status is IntentStatus.DECIDED
