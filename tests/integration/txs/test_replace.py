"""Stuck transactions (automine off, base fee pushed above them): replaced or cancelled."""

from __future__ import annotations

from keeper.journal import Intent, IntentStatus, Journal, TxKind, TxStatus
from keeper.testing.anvil import Anvil
from keeper.txs import Fees, TxManager, TxRequest
from tests.integration.txs.conftest import SINK, Wallet, mining, nonce_of, receipt, sent_from


def stick(node: Anvil, manager: TxManager, journal: Journal, intent_id: int) -> int:
    """Make the sent transaction unminable: the next base fee well above its max fee."""
    [tx] = journal.transactions(intent_id)
    node.rpc("anvil_setNextBlockBaseFeePerGas", hex(tx.max_fee * 4))
    return int(node.rpc("eth_blockNumber"), 16)


async def test_stuck_transaction_is_replaced_and_exactly_one_is_mined(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    node.rpc("evm_setAutomine", False)
    intent, _ = journal.open_intent("refex", "pos-1", "top_up", {"amount": "1"})
    out = await manager.submit(TxRequest(intent.id, SINK, b"", 1))
    assert out.status is IntentStatus.SENT
    first_block = stick(node, manager, journal, intent.id)
    rebuilt: list[Fees] = []

    async def rebuild(current: Intent, fees: Fees) -> TxRequest:
        rebuilt.append(fees)  # e.g. GMX: the execution fee follows the gas price
        return TxRequest(current.id, SINK, b"", 2)

    async with mining(node, 0.1):
        out = await manager.resolve(intent.id, rebuild=rebuild)
    assert out.status is IntentStatus.DONE, out
    txs = journal.transactions(intent.id)
    assert len(txs) >= 2
    assert {t.nonce for t in txs} == {0}
    assert [t.kind for t in txs][:2] == [TxKind.ACTION, TxKind.REPLACEMENT]
    old, new = txs[0], txs[1]
    print(f"replacement bump: max fee {old.max_fee} -> {new.max_fee} "
          f"({new.max_fee / old.max_fee:.3f}x), tip {old.priority_fee} -> {new.priority_fee} "
          f"({new.priority_fee / old.priority_fee:.3f}x)")  # fmt: skip
    assert new.max_fee * 1000 >= old.max_fee * 1125
    assert new.priority_fee * 1000 >= old.priority_fee * 1125
    assert new.value == 2
    assert rebuilt
    final = [t for t in txs if t.status is TxStatus.FINAL]
    assert len(final) == 1
    assert final[0].id != old.id
    assert {t.status for t in txs if t.id != final[0].id} == {TxStatus.SUPERSEDED}
    mined = [t for t in txs if receipt(node, t.hash) is not None]
    assert [t.id for t in mined] == [final[0].id]
    assert len(sent_from(node, wallet.address, first_block)) == 1
    assert nonce_of(node, wallet.address) == 1


async def test_pointless_action_is_cancelled_and_recorded_obsolete(
    manager: TxManager, journal: Journal, node: Anvil, wallet: Wallet
) -> None:
    node.rpc("evm_setAutomine", False)
    intent, _ = journal.open_intent("refex", "pos-1", "close", {"size": "1"})
    out = await manager.submit(TxRequest(intent.id, SINK, b"", 5))
    first_block = stick(node, manager, journal, intent.id)
    checks: list[int] = []

    async def still_wanted(current: Intent) -> bool:
        checks.append(current.id)
        return False  # e.g. the position was liquidated elsewhere

    async with mining(node, 0.1):
        out = await manager.resolve(intent.id, still_wanted=still_wanted)
    assert out.status is IntentStatus.OBSOLETE, out
    txs = journal.transactions(intent.id)
    cancel = [t for t in txs if t.kind is TxKind.CANCEL]
    assert cancel
    assert cancel[-1].status is TxStatus.FINAL
    assert cancel[-1].to == wallet.address
    assert cancel[-1].value == 0
    assert {t.nonce for t in txs} == {0}
    [mined] = sent_from(node, wallet.address, first_block)
    assert mined["to"].lower() == wallet.address.lower()
    assert mined["value"] == "0x0"
    assert checks
