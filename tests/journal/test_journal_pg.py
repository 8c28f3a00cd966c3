"""What only the Postgres journal has: a server that restarts under it, passwords, replicas
migrating the schema at once, and a SQLite journal copied into it."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.cli import main
from keeper.journal import (
    IntentStatus,
    Journal,
    JournalError,
    JournalUnavailableError,
    PostgresTarget,
    TxKind,
    TxStatus,
)
from keeper.journal_pg import IDLE_IN_WRITE_MS
from keeper.lease import Change, Leadership, LeaseSettings
from keeper.testing.postgres import PostgresServer, PostgresUnavailableError
from tests.journal.test_journal import signer_for


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A server of this module's own, to restart and kill without disturbing other tests."""
    try:
        server = PostgresServer()
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))
    yield server
    server.close()


def test_a_restarted_server_is_reconnected_and_nothing_is_lost(own_server: PostgresServer) -> None:
    url = own_server.create_database("restart")
    journal = Journal(url, password=own_server.password)
    intent, _ = journal.open_intent("refex", "p1", "top_up", {"amount": "5"})
    own_server.restart()
    with pytest.raises(JournalUnavailableError, match=r"journal postgresql://keeper@127\.0\.0\.1"):
        journal.open_intent("refex", "p2", "top_up", {})
    assert journal.intent(intent.id).payload == {"amount": "5"}  # connected again
    other, created = journal.open_intent("refex", "p2", "top_up", {})
    assert created
    own_server.kill()
    with pytest.raises(JournalUnavailableError):
        journal.history()
    own_server.start()
    assert [i.id for i in journal.history()] == [other.id, intent.id]
    journal.close()


def test_a_write_cut_off_mid_transaction_leaves_nothing_half_done(
    own_server: PostgresServer,
) -> None:
    url = own_server.create_database("cut")
    journal = Journal(url, password=own_server.password)
    intent, _ = journal.open_intent("refex", "p1", "top_up", {})

    def sign(nonce: int) -> object:
        own_server.kill()  # the server dies between the nonce choice and the commit
        return signer_for("a")(nonce)

    with pytest.raises(JournalUnavailableError, match="may or may not have committed"):
        journal.record_signed(
            intent.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0,
            sign=sign,  # type: ignore[arg-type]
        )  # fmt: skip
    own_server.start()
    assert journal.transactions() == []
    assert journal.intent(intent.id).status is IntentStatus.DECIDED
    assert journal.next_nonce(1, "0xS") is None
    tx = journal.record_signed(
        intent.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=0, sign=signer_for()
    )
    assert (tx.nonce, tx.status) == (0, TxStatus.SIGNED)
    journal.close()


def test_passwords_stay_out_of_urls_and_errors(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="journal_password_env"):
        PostgresTarget("postgresql://keeper:hunter2@127.0.0.1/x")
    with pytest.raises(JournalError, match=r"keeper\.journal_password_env: KEEPER_PW is not set"):
        Journal(PostgresTarget(postgres.url, password_env="KEEPER_PW"))
    monkeypatch.setenv("KEEPER_PW", "not-the-password-9f3b")
    with pytest.raises(JournalUnavailableError) as wrong:
        Journal(PostgresTarget(postgres.url, password_env="KEEPER_PW"))
    assert "password authentication failed" in str(wrong.value)
    assert "not-the-password-9f3b" not in str(wrong.value)
    secret = tmp_path / "pw"
    secret.write_text(postgres.password + "\n")
    journal = Journal(PostgresTarget(postgres.url, password_file=secret))
    assert postgres.password not in repr(journal)
    assert journal.backend == "postgres"
    journal.close()


def test_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.create_database("together")
    errors: list[BaseException] = []
    opened: list[Journal] = []

    def start() -> None:
        try:
            opened.append(Journal(url, password=postgres.password))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = opened[0]._db.execute("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in versions] == [1, 2]
    for j in opened:
        j.close()


def _sqlite_journal(path: Path) -> Journal:
    old = Journal(path)
    a, _ = old.open_intent("refex", "p1", "top_up", {"amount": "7"}, block=3, spend_token="0xT",
                           spend_amount=7)  # fmt: skip
    tx = old.record_signed(
        a.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=4, sign=signer_for()
    )
    old.set_tx_status(tx.id, TxStatus.SENT, intent_status=IntentStatus.SENT, sent_block=3)
    b, _ = old.open_intent("refex", "p2", "close", {})
    old.set_status(b.id, IntentStatus.FAILED, failure="simulation_reverted: x")
    return old


def test_migrate_copies_a_sqlite_journal_with_its_ids(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "old.sqlite"
    old = _sqlite_journal(source)
    before = old.dump()
    old.close()
    url = postgres.create_database("migrated")
    monkeypatch.setenv("PGPW", postgres.password)
    assert (
        main(["journal", "migrate", "--from", str(source), "--to", url, "--password-env", "PGPW"])
        == 0
    )
    assert "2 intents, 1 transactions, 1 nonces" in capsys.readouterr().out
    new = Journal(url, password=postgres.password)
    after = new.dump()
    for table in ("intents", "transactions", "nonces", "events"):
        assert after[table] == before[table], table
    # ids continue above the copied ones; the copied nonce is held
    c, _ = new.open_intent("refex", "p3", "top_up", {})
    assert c.id == 3
    tx = new.record_signed(
        c.id, chain_id=1, sender="0xS", kind=TxKind.ACTION, nonce_hint=4, sign=signer_for("c")
    )
    assert tx.nonce == 5
    new.close()
    # a second copy into the same journal is refused, and says why
    assert (
        main(["journal", "migrate", "--from", str(source), "--to", url, "--password-env", "PGPW"])
        == 1
    )
    assert "already holds 3 intent(s)" in capsys.readouterr().err


def test_migrate_and_status_through_a_config(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.journal.test_config_journal import write_config  # noqa: PLC0415

    source = tmp_path / "old.sqlite"
    _sqlite_journal(source).close()
    url = postgres.create_database("viaconfig")
    (tmp_path / "pw").write_text(postgres.password)
    config = write_config(tmp_path, journal=url, password_file="pw")
    assert main(["journal", "migrate", "--from", str(source), "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["backend"], report["schema"], report["leases"]) == ("postgres", 2, [])
    assert main(["history", "--config", str(config), "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)["intents"]] == [2, 1]


def test_status_lists_the_lease_and_the_replicas(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.journal.test_config_journal import write_config  # noqa: PLC0415

    url = postgres.create_database("status")
    (tmp_path / "pw").write_text(postgres.password)
    config = write_config(tmp_path, journal=url, password_file="pw")
    settings = LeaseSettings(lease_ms=30_000, lease_blocks=5)
    a = Leadership(Journal(url, password=postgres.password), "31337:0xk", settings, owner="h:1:a")
    b = Leadership(Journal(url, password=postgres.password), "31337:0xk", settings, owner="h:2:b")
    a.step(40)
    b.step(41)
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"journal: {url} (postgres, schema 2)" in out
    assert re.search(
        r"lease 31337:0xk: leader h:1:a epoch 1, renewed \d+\.\ds ago at block 40", out
    )
    assert re.search(r"expires in (29|30)\.\ds", out)  # 30 s, less the moment since
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert lines["h:1:a"][:3] == ["leader", "1", "40"]
    assert lines["h:2:b"][:3] == ["standby", "-", "41"]
    a.journal.close()
    b.journal.close()


def test_a_replica_paused_inside_a_write_does_not_hold_the_others_up(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database("paused")
    settings = LeaseSettings(lease_ms=300)
    a = Leadership(Journal(url, password=postgres.password), "31337:0xk", settings, owner="a")
    b = Leadership(Journal(url, password=postgres.password), "31337:0xk", settings, owner="b")
    a.step(1)
    entered = threading.Event()
    outcome: list[BaseException | None] = []

    def paused_writer() -> None:
        try:
            with a.journal._write(fenced=False):  # the lock is held, then the process stalls
                entered.set()
                time.sleep(IDLE_IN_WRITE_MS / 1000 * 2.5)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=paused_writer)
    thread.start()
    entered.wait(5)
    started = time.monotonic()
    assert b.step(2) is Change.ACQUIRED  # once the server ended a's stalled session
    waited = time.monotonic() - started
    assert waited < IDLE_IN_WRITE_MS / 1000 * 2
    thread.join()
    [error] = outcome
    assert isinstance(error, JournalUnavailableError)
    assert b.epoch == 2
    assert b.step(3) is None  # b renews
    assert a.step(3) is Change.LOST  # a connects again and finds b leading
    a.journal.close()
    b.journal.close()
