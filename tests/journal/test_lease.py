"""The leader lease and the fence, on both backends: one leader, takeover after expiry (in
time and in blocks), every write of a superseded leader refused inside its transaction."""

from __future__ import annotations

import time

import pytest

from keeper.journal import Journal, JournalFencedError, TxKind
from keeper.journal_cmd import status_report
from keeper.lease import Change, Leadership, LeaseSettings, Role
from tests.journal.conftest import Opener
from tests.journal.test_journal import signer_for

SCOPE = "31337:0xkeeper"


def replica(open_journal: Opener, name: str, **settings: int | None) -> Leadership:
    s = LeaseSettings(
        lease_ms=int(settings.get("lease_ms") or 400), lease_blocks=settings.get("lease_blocks")
    )
    return Leadership(open_journal(), SCOPE, s, owner=name)


def sign_for(journal: Journal, intent_id: int, tag: str) -> int:
    tx = journal.record_signed(
        intent_id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0, sign=signer_for(tag)
    )
    return tx.nonce


def test_one_leader_the_others_stand_by(open_journal: Opener) -> None:
    a, b, c = (replica(open_journal, n) for n in "abc")
    assert a.step(10) is Change.ACQUIRED
    assert (b.step(10), c.step(10)) == (None, None)
    assert (a.role, b.role, c.role) == (Role.LEADER, Role.STANDBY, Role.STANDBY)
    assert a.epoch == 1
    assert b.leader == "a"
    assert a.step(11) is None  # renewed, same epoch
    assert a.epoch == 1
    roles = {r.owner: (r.role, r.epoch, r.head_block) for r in a.journal.replicas(SCOPE)}
    assert roles == {"a": ("leader", 1, 11), "b": ("standby", None, 10), "c": ("standby", None, 10)}


def test_a_standby_writes_nothing(open_journal: Opener) -> None:
    a, b = replica(open_journal, "a"), replica(open_journal, "b")
    a.step(1)
    b.step(1)
    with pytest.raises(JournalFencedError, match="not the leader"):
        b.journal.open_intent("refex", "p1", "top_up", {})
    intent, created = a.journal.open_intent("refex", "p1", "top_up", {})
    assert created
    assert intent.id
    assert a.journal.dump()["intents"][0]["epoch"] == 1


def test_takeover_after_the_lease_expires_and_the_old_leader_is_fenced(
    open_journal: Opener,
) -> None:
    a, b = replica(open_journal, "a"), replica(open_journal, "b")
    a.step(1)
    intent, _ = a.journal.open_intent("refex", "p1", "top_up", {})
    assert b.step(2) is None  # not expired yet
    time.sleep(0.45)  # a is frozen past its lease
    assert b.step(3) is Change.ACQUIRED
    assert b.epoch == 2
    # a wakes up late, still believing it leads: every write is refused, nothing is signed
    assert a.is_leader
    signs: list[int] = []

    def sign(nonce: int) -> object:
        signs.append(nonce)
        raise AssertionError("a fenced writer must not sign")

    with pytest.raises(JournalFencedError, match="held by b at epoch 2"):
        a.journal.record_signed(
            intent.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0,
            sign=sign,  # type: ignore[arg-type]
        )  # fmt: skip
    assert signs == []
    with pytest.raises(JournalFencedError):
        a.journal.open_intent("refex", "p2", "close", {})
    with pytest.raises(JournalFencedError, match="superseded"):
        a.check()
    assert a.role is Role.STANDBY
    assert a.journal.transactions() == []
    # the new leader carries on with the open intent
    assert sign_for(b.journal, intent.id, "b") == 0
    assert b.journal.dump()["transactions"][0]["epoch"] == 2
    # and a, taking its turn, stands by
    assert a.step(4) is None
    assert a.leader == "b"


def test_the_lease_also_expires_in_blocks(open_journal: Opener) -> None:
    a = replica(open_journal, "a", lease_ms=60_000, lease_blocks=3)
    b = replica(open_journal, "b", lease_ms=60_000, lease_blocks=3)
    a.step(100)
    assert b.step(102) is None
    assert b.step(103) is Change.ACQUIRED  # a renewed at 100; the chain is 3 blocks on
    assert b.epoch == 2
    assert a.step(103) is Change.LOST


def test_check_renews_and_release_hands_over_at_once(open_journal: Opener) -> None:
    a, b = replica(open_journal, "a"), replica(open_journal, "b")
    a.step(1)
    for _ in range(4):  # a renews right before each send: the lease outlives its length
        time.sleep(0.15)
        a.check()
    assert b.step(2) is None
    a.release()
    assert a.role is Role.STANDBY
    assert b.step(2) is Change.ACQUIRED
    roles = {r.owner: r.role for r in b.journal.replicas(SCOPE)}
    assert roles == {"a": "stopped", "b": "leader"}


def test_taking_it_back_after_another_led_is_a_new_acquisition(open_journal: Opener) -> None:
    a, b = replica(open_journal, "a"), replica(open_journal, "b")
    a.step(1)
    time.sleep(0.45)
    b.step(2)
    time.sleep(0.45)
    assert a.step(3) is Change.ACQUIRED  # a never saw b lead, yet the epoch moved on: 3
    assert a.epoch == 3


def test_status_report(open_journal: Opener) -> None:
    a, b = replica(open_journal, "a"), replica(open_journal, "b")
    a.step(7)
    b.step(7)
    report = status_report(a.journal)
    assert report["backend"] in ("sqlite", "postgres")
    assert report["schema"] == 2
    [lease] = report["leases"]
    assert (lease["owner"], lease["epoch"], lease["renewed_block"], lease["expired"]) == (
        "a",
        1,
        7,
        False,
    )
    assert 0 <= lease["age_s"] < 5
    assert {r["owner"]: r["role"] for r in report["replicas"]} == {"a": "leader", "b": "standby"}
