"""The journal: one open intent per position, sequence numbers, nonces, events, queries.

Every test runs against both backends (SQLite, and a real Postgres server) unless it says
otherwise: the `journal` and `open_journal` fixtures are parametrised in conftest.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.journal import (
    SCHEMA,
    IntentStatus,
    Journal,
    JournalConflictError,
    JournalError,
    JournalUnavailableError,
    TxKind,
    TxRecord,
    TxStatus,
    UnsignedTx,
)
from tests.journal.conftest import Clock, Opener


def signer_for(tag: str = "a") -> Callable[[int], UnsignedTx]:
    def sign(nonce: int) -> UnsignedTx:
        return UnsignedTx(
            raw=bytes([nonce % 256]) + tag.encode(),
            hash=f"0x{tag}{nonce:062x}",
            to="0x" + "22" * 20,
            value=0,
            data=b"\x01\x02",
            max_fee=3 * 10**9,
            priority_fee=10**8,
            gas_limit=50_000,
            l1_fee=7,
        )

    return sign


def signed(journal: Journal, intent_id: int, hint: int = 0, tag: str = "a", **kw: Any) -> TxRecord:
    return journal.record_signed(
        intent_id,
        chain_id=1,
        sender="0xS",
        kind=kw.pop("kind", TxKind.ACTION),
        nonce_hint=hint,
        sign=signer_for(tag),
        **kw,
    )


def test_wal_and_busy_timeout(journal: Journal) -> None:
    if journal.backend != "sqlite":
        pytest.skip("SQLite's settings")
    db = sqlite3.connect(journal.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    db.close()


def test_schema_is_plain_sql() -> None:
    lowered = SCHEMA.lower()
    for sqlite_only in ("autoincrement", "without rowid", "strict", "blob", "real"):
        assert sqlite_only not in lowered


def test_one_open_intent_per_position_and_sequence_numbers(journal: Journal) -> None:
    first, created = journal.open_intent("refex", "p1", "top_up", {"amount": "5"}, block=10)
    assert created
    assert (first.seq, first.status, first.created_block) == (1, IntentStatus.DECIDED, 10)
    again, created = journal.open_intent("refex", "p1", "top_up", {"amount": "6"}, block=11)
    assert not created
    assert again.id == first.id
    assert again.payload == {"amount": "5"}
    other, created = journal.open_intent("refex", "p2", "close", {})
    assert created
    assert other.seq == 1
    _, created = journal.open_intent("gmx", "p1", "close", {})
    assert created
    journal.set_status(first.id, IntentStatus.FAILED, failure="fee_cap: too high")
    later, created = journal.open_intent("refex", "p1", "reduce", {"size": "1"})
    assert created
    assert later.seq == 2
    assert journal.open_intent_for("refex", "p1") == later


def test_the_unique_index_holds_even_without_the_check(journal: Journal) -> None:
    journal.open_intent("refex", "p1", "top_up", {})
    with pytest.raises(journal._db.integrity_errors):
        journal._db.execute(
            "INSERT INTO intents (venue, position_key, seq, kind, payload, status,"
            " created_at_ms, updated_at_ms) VALUES ('refex', 'p1', 9, 'x', '{}', 'sent', 0, 0)"
        )


def test_payload_refuses_floats(journal: Journal) -> None:
    with pytest.raises(TypeError, match=r"payload payload.amount is a float"):
        journal.open_intent("refex", "p1", "top_up", {"amount": 1.5})
    with pytest.raises(TypeError, match="Decimal"):
        journal.open_intent("refex", "p1", "top_up", {"ratio": Decimal("0.1")})


def test_lifecycle_events_and_illegal_transitions(journal: Journal) -> None:
    intent, _ = journal.open_intent("refex", "p1", "top_up", {})
    tx = signed(journal, intent.id, block=5)
    assert journal.intent(intent.id).status is IntentStatus.SIGNED
    journal.set_tx_status(tx.id, TxStatus.SENT, intent_status=IntentStatus.SENT, sent_block=5)
    journal.set_tx_status(
        tx.id,
        TxStatus.MINED,
        intent_status=IntentStatus.MINED,
        block=6,
        receipt={"block_number": 6, "block_hash": "0xb", "receipt_status": 1},
    )
    journal.set_tx_status(tx.id, TxStatus.SENT, intent_status=IntentStatus.SENT, detail="reorged")
    assert journal.transaction(tx.id).block_hash is None
    journal.set_tx_status(tx.id, TxStatus.MINED, intent_status=IntentStatus.MINED)
    journal.set_tx_status(tx.id, TxStatus.FINAL, intent_status=IntentStatus.DONE)
    steps = [(e.from_status, e.to_status) for e in journal.events(intent.id)]
    assert steps == [
        (None, "decided"),
        ("decided", "signed"),
        ("tx:signed", "tx:sent"),
        ("signed", "sent"),
        ("tx:sent", "tx:mined"),
        ("sent", "mined"),
        ("tx:mined", "tx:sent"),
        ("mined", "sent"),
        ("tx:sent", "tx:mined"),
        ("sent", "mined"),
        ("tx:mined", "tx:final"),
        ("mined", "done"),
    ]
    with pytest.raises(JournalError, match="illegal transition done -> sent"):
        journal.set_status(intent.id, IntentStatus.SENT)
    # A stale writer cannot move a settled transaction back.
    assert journal.set_tx_status(tx.id, TxStatus.SENT).status is TxStatus.FINAL
    with pytest.raises(JournalConflictError):
        signed(journal, intent.id, tag="b")


def test_nonces_skip_held_ones_and_reuse_rejected(journal: Journal) -> None:
    ids = [journal.open_intent("refex", f"p{i}", "top_up", {})[0].id for i in range(4)]
    a = signed(journal, ids[0], hint=5, tag="a")
    b = signed(journal, ids[1], hint=5, tag="b")  # stale hint: 5 is held
    assert (a.nonce, b.nonce) == (5, 6)
    journal.set_tx_status(a.id, TxStatus.REJECTED)
    c = signed(journal, ids[2], hint=5, tag="c")  # 5 is free again (rejected)
    assert c.nonce == 5
    d = signed(journal, ids[3], hint=9, tag="d")  # the chain is ahead: follow it
    assert d.nonce == 9
    assert journal.next_nonce(1, "0xS") == 10
    assert journal.next_nonce(1, "0xother") is None


def test_replacements_need_a_live_transaction_at_that_nonce(journal: Journal) -> None:
    intent, _ = journal.open_intent("refex", "p1", "top_up", {})
    first = signed(journal, intent.id, hint=3)
    repl = signed(journal, intent.id, tag="r", kind=TxKind.REPLACEMENT, nonce=3)
    assert repl.nonce == 3
    with pytest.raises(JournalConflictError, match="no live transaction at nonce 4"):
        signed(journal, intent.id, tag="x", kind=TxKind.REPLACEMENT, nonce=4)
    # A new action for the same intent only when it supersedes exactly the live ones.
    with pytest.raises(JournalConflictError, match="changed under us"):
        signed(journal, intent.id, hint=4, tag="n", supersede=[first.id])
    new = signed(journal, intent.id, hint=4, tag="n", supersede=[first.id, repl.id])
    assert new.nonce == 4
    statuses = {t.id: t.status for t in journal.transactions(intent.id)}
    assert statuses == {
        first.id: TxStatus.SUPERSEDED,
        repl.id: TxStatus.SUPERSEDED,
        new.id: TxStatus.SIGNED,
    }


def test_signed_bytes_and_fees_are_stored(journal: Journal) -> None:
    intent, _ = journal.open_intent("refex", "p1", "top_up", {})
    tx = signed(journal, intent.id, hint=2)
    stored = journal.transaction(tx.id)
    assert stored.raw == bytes([2]) + b"a"
    assert stored.data == b"\x01\x02"
    assert (stored.max_fee, stored.priority_fee, stored.gas_limit, stored.l1_fee) == (
        3 * 10**9,
        10**8,
        50_000,
        7,
    )
    assert stored.max_cost == 50_000 * 3 * 10**9 + 7
    assert stored.kind is TxKind.ACTION


def test_a_failed_sign_commits_nothing(journal: Journal) -> None:
    intent, _ = journal.open_intent("refex", "p1", "top_up", {})

    def boom(nonce: int) -> UnsignedTx:
        raise RuntimeError("signer down")

    with pytest.raises(RuntimeError):
        journal.record_signed(
            intent.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0, sign=boom
        )
    assert journal.transactions() == []
    assert journal.intent(intent.id).status is IntentStatus.DECIDED
    assert journal.next_nonce(1, "0xS") is None


def test_queries_for_the_policy(journal: Journal, clock: Clock) -> None:
    day = 86_400_000
    a, _ = journal.open_intent(
        "refex", "p1", "top_up", {}, block=100, spend_token="USDC", spend_amount=500
    )
    journal.set_status(a.id, IntentStatus.OBSOLETE)  # spent nothing
    clock.now += 1000
    b, _ = journal.open_intent(
        "refex", "p1", "top_up", {}, block=101, spend_token="USDC", spend_amount=300
    )
    clock.now += day + 1
    c, _ = journal.open_intent(
        "refex", "p2", "top_up", {}, block=200, spend_token="USDC", spend_amount=10**30
    )
    assert journal.spend_in_window("USDC", day) == 10**30  # b is outside the day now
    assert journal.spend_in_window("USDC", 2 * day) == 10**30 + 300
    assert journal.spend_in_window("WETH", 2 * day) == 0
    assert [i.id for i in journal.open_intents()] == [b.id, c.id]
    assert [i.id for i in journal.recent_actions(since_block=101)] == [c.id, b.id]
    assert [i.id for i in journal.recent_actions(since_block=150)] == [c.id]
    assert [i.id for i in journal.history(position_key="p1")] == [b.id, a.id]
    assert [i.id for i in journal.history(since_ms=clock.now)] == [c.id]
    assert [i.id for i in journal.history(until_ms=clock.now)] == [b.id, a.id]
    assert [i.id for i in journal.history(limit=1)] == [c.id]


def test_two_connections_share_one_journal(open_journal: Opener) -> None:
    one = open_journal()
    two = open_journal()
    x, _ = one.open_intent("refex", "p1", "top_up", {})
    y, created = two.open_intent("refex", "p1", "top_up", {})
    assert not created
    assert y.id == x.id
    i1, _ = one.open_intent("refex", "p2", "top_up", {})
    i2, _ = two.open_intent("refex", "p3", "top_up", {})
    t1 = one.record_signed(i1.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0,
                           sign=signer_for("a"))  # fmt: skip
    t2 = two.record_signed(i2.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0,
                           sign=signer_for("b"))  # fmt: skip
    assert (t1.nonce, t2.nonce) == (0, 1)
    one.close()
    two.close()


def test_a_writer_locked_out_past_the_busy_timeout_is_told_so(tmp_path: Path) -> None:
    holder = Journal(tmp_path / "j.sqlite")
    waiter = Journal(tmp_path / "j.sqlite", busy_timeout_ms=200)
    with holder._write(), pytest.raises(JournalUnavailableError, match="database is locked"):
        waiter.open_intent("refex", "p1", "top_up", {})
    assert waiter.open_intent("refex", "p1", "top_up", {})[1]  # free again
    holder.close()
    waiter.close()
