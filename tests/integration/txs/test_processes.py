"""Real processes: killed with SIGKILL at each crash point and restarted; two processes
sharing one account and one journal. Each test runs on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keeper.journal import IntentStatus, Journal, TxStatus
from keeper.testing.anvil import Anvil
from keeper.txs import CRASH_ENV, CRASH_POINTS, TxManager, TxRequest
from tests.integration.txs.conftest import (
    SINK,
    JournalStore,
    Wallet,
    nonce_of,
    sent_from,
    store_for,
)
from tests.integration.txs.driver import KEY_ENV

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["sqlite", "postgres"])
def journal_store(request: pytest.FixtureRequest, tmp_path: Path) -> JournalStore:
    return store_for(request, request.param, tmp_path)


def driver(
    node: Anvil,
    journal: JournalStore,
    wallet: Wallet,
    positions: list[str],
    *,
    crash: str | None = None,
    gate: Path | None = None,
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    env.update(journal.env())
    env[KEY_ENV] = wallet.key
    if crash is not None:
        env[CRASH_ENV] = crash
    args = [sys.executable, "-m", "tests.integration.txs.driver", "--rpc", node.url]
    args += ["--journal", journal.target, "--to", SINK]
    for p in positions:
        args += ["--position", p]
    if gate is not None:
        args += ["--gate", str(gate)]
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_each_crash_point_then_restarted_lands_exactly_once(
    node: Anvil, journal_store: JournalStore, wallet: Wallet, point: str
) -> None:
    start = int(node.rpc("eth_blockNumber"), 16) + 1
    code, _out, err = finish(driver(node, journal_store, wallet, ["pos-1"], crash=point))
    assert code == -signal.SIGKILL, err[-2000:]
    assert f"crash point {point} reached" in err
    code, out, err = finish(driver(node, journal_store, wallet, ["pos-1"]))
    assert code == 0, err[-2000:]
    journal = journal_store.open()
    try:
        [intent] = journal.history()
        assert intent.status is IntentStatus.DONE
        txs = journal.transactions(intent.id)
        assert [t.status for t in txs] == [TxStatus.FINAL]  # nothing re-signed or re-sent
    finally:
        journal.close()
    mined = sent_from(node, wallet.address, start)
    assert [m["hash"] for m in mined] == [txs[0].hash]
    assert nonce_of(node, wallet.address, "pending") == 1
    # A third start finds nothing to do and sends nothing.
    code, out, err = finish(driver(node, journal_store, wallet, ["pos-1"]))
    assert code == 0
    assert out == ""
    assert nonce_of(node, wallet.address, "pending") == 1


async def test_two_processes_sharing_account_and_journal_never_reuse_a_nonce(
    node: Anvil, journal_store: JournalStore, wallet: Wallet, manager: TxManager, journal: Journal
) -> None:
    assert manager.journal.path == journal_store.target
    start = int(node.rpc("eth_blockNumber"), 16) + 1
    n, m = 10, 30  # this process sends n, each of the two others m
    gate = journal_store.workdir / "gate"
    procs = [
        driver(node, journal_store, wallet, [f"{name}-{i}" for i in range(m)], gate=gate)
        for name in ("manual", "other")
    ]
    # All three writers start at the same moment: the drivers wait at a gate until both
    # are ready, and this process opens it and sends at once.
    for _ in range(2400):
        if len(list(gate.parent.glob("gate.ready.*"))) == 2:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError("the driver processes never became ready")
    gate.touch()
    ids = []
    for i in range(n):
        intent, _ = journal.open_intent("refex", f"keeper-{i}", "top_up", {"amount": "1"})
        ids.append(intent.id)
    outs = await asyncio.gather(*(manager.send(TxRequest(i, SINK, b"", 1)) for i in ids))
    assert all(o.status is IntentStatus.DONE for o in outs), outs
    for proc in procs:
        code, _out, err = await asyncio.to_thread(finish, proc)
        assert code == 0, err[-2000:]
    final = [t for t in journal.transactions() if t.status is TxStatus.FINAL]
    total = n + 2 * m
    assert len(final) == total
    nonces = sorted(t.nonce for t in final)
    assert nonces == list(range(total))
    assert len(journal.history(limit=1000)) == total
    mined = sent_from(node, wallet.address, start)
    assert sorted(int(tx["nonce"], 16) for tx in mined) == list(range(total))
    spans = {}
    for writer in ("keeper", "manual", "other"):
        times = [
            t.created_at_ms
            for t in final
            if t.intent_id
            in {i.id for i in journal.history(limit=1000) if i.position_key.startswith(writer)}
        ]
        spans[writer] = (min(times), max(times))

    def overlap(a: str, b: str) -> bool:
        return spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]

    # the writers were signing at the same time
    assert overlap("manual", "other"), spans
    assert overlap("keeper", "manual") or overlap("keeper", "other"), spans
    rejected = [t for t in journal.transactions() if t.status is TxStatus.REJECTED]
    print(f"{total} sends from 3 writers: {len(rejected)} nonce resyncs, no reuse")
