"""A mined action removed by a reorg goes back to sent and lands once.

Anvil's `anvil_reorg(depth, txs)` replaces the last blocks with new ones (new hashes), with
the given transactions in them or none; `anvil_rollback(depth)` drops blocks outright. Both
remove our transaction's receipt; neither puts it back in the pool, so the manager must
rebroadcast the journalled bytes (or find it re-mined elsewhere).
"""

from __future__ import annotations

import pytest

from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal, TxStatus
from keeper.signer import Signer
from keeper.testing.anvil import Anvil
from keeper.txs import TxManager, TxRequest
from tests.integration.txs.conftest import SINK, Wallet, mining, nonce_of, receipt, tx_config


@pytest.mark.parametrize("how", ["reorg_dropped", "reorg_moved", "rollback"])
async def test_reorged_action_goes_back_to_pending_and_lands_once(
    rpc: FailoverRpc, journal: Journal, node: Anvil, wallet: Wallet, how: str
) -> None:
    manager = TxManager(rpc, journal, Signer.from_key(wallet.key), tx_config(confirmations=3))
    intent, _ = journal.open_intent("refex", "pos-1", "top_up", {"amount": "1"})
    out = await manager.submit(TxRequest(intent.id, SINK, b"", 1))
    out = await manager.resolve(intent.id, timeout=0.5)  # automine: mined, not yet final
    assert out.status is IntentStatus.MINED, out
    [tx] = journal.transactions(intent.id)
    assert tx.status is TxStatus.MINED
    assert tx.block_hash is not None
    mined_in, first_hash = tx.block_number, tx.block_hash
    if how == "reorg_dropped":
        node.rpc("anvil_reorg", 1, [])
    elif how == "reorg_moved":
        node.rpc("evm_mine")
        node.rpc("anvil_reorg", 2, [["0x" + tx.raw.hex(), 1]])
    else:
        node.rpc("anvil_rollback", 1)
    async with mining(node, 0.1):
        out = await manager.resolve(intent.id)
    assert out.status is IntentStatus.DONE, out
    [tx] = journal.transactions(intent.id)  # the same signed bytes: nothing re-signed
    assert tx.status is TxStatus.FINAL
    got = receipt(node, tx.hash)
    assert got is not None
    assert got["blockHash"] == tx.block_hash
    if how != "rollback":
        # anvil_reorg makes new blocks; after a rollback, the same transaction re-mined on the
        # same parent within the same second can give the very same block (and hash) again
        assert tx.block_hash != first_hash
    assert mined_in is not None
    if how == "reorg_moved":
        assert tx.block_number == mined_in + 1  # found re-mined in the new branch
    else:
        assert tx.block_number is not None
        assert tx.block_number >= mined_in
    steps = [(e.from_status, e.to_status) for e in journal.events(intent.id)]
    assert ("mined", "sent") in steps
    assert steps[-1] == ("mined", "done")
    assert any("reorged" in e.detail for e in journal.events(intent.id))
    assert nonce_of(node, wallet.address) == 1  # landed once
