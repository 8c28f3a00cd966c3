"""`keeper run` and the manual commands against GMX v2's own contracts, with a config made from
examples/arbitrum.toml: the keeper runs as a child process, the test moves the reference feeds
and acts as GMX's order keeper, executing (or letting GMX cancel) every order the keeper
creates. Checked on chain (Reader.getPosition, isPositionLiquidatable, balances) and in the
journal (`keeper history --json`)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.config import GMX_ADDRESS_KEYS
from keeper.testing.devnet import KEY_ENV, to_toml
from keeper.testing.plugin import KeeperProcessFactory
from keeper.testing.process import KeeperProcess
from keeper.venues.gmx import REQUEST_EXPIRATION_TIME
from keeper.venues.gmx_math import OrderType
from tests.integration.gmx.keeper_run import (
    BLOCK_SECONDS,
    KEEPER,
    OPEN,
    TELEGRAM_TOKEN_ENV,
    caught_up,
    example_settings,
    local_settings,
    settle,
)
from tests.integration.ops.test_running_keeper import Receiver
from tests.integration.realgmx.harness import (
    USD,
    LaggingEndpoint,
    LiquidationView,
    OrderFate,
    OrderOutcome,
    PendingOrder,
    RealGmx,
)
from tests.integration.realgmx.test_realgmx_venue import COLLATERAL, ENTRY, SIZE_USD, open_position

pytestmark = pytest.mark.integration


# --- the config --------------------------------------------------------------------------------


def gmx_settings(
    gmx: RealGmx,
    where: Path,
    alerts_url: str,
    *,
    thresholds: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    sequencer: bool = False,
    rpc: str | None = None,
) -> dict[str, Any]:
    """examples/arbitrum.toml for this deployment (`local_settings`): chain id 31337, this
    node, GMX's own Multicall3, the addresses of this deployment (no preset), and the
    scenario's `thresholds` and `budget` changes (each one says why where it is made)."""
    sections = gmx.config_sections()
    return local_settings(
        sections["chain"], sections["venue"], gmx.trader.address, where, alerts_url,
        thresholds=thresholds, budget=budget, sequencer=sequencer, rpc=rpc,
    )  # fmt: skip


_ABSENT = object()


def differences(a: Any, b: Any, where: str = "") -> set[str]:
    """The keys (as `section.key`, `alerts[0].url`) whose values differ between two configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in a.keys() | b.keys():
            out |= differences(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{where}.{k}".lstrip("."))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        tables = [(x, y) for x, y in zip(a, b, strict=True) if isinstance(x, dict)]
        if len(tables) == len(a):
            return {
                d for i, (x, y) in enumerate(tables) for d in differences(x, y, f"{where}[{i}]")
            }
    return set() if a == b else {where}


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(settings))
    return path


@dataclass
class Scene:
    """The trader's 10 ETH long on GMX (12,500 USDC at 5,000) and a keeper config for it."""

    gmx: RealGmx
    key: str
    tmp: Path
    receiver: Receiver
    env: dict[str, str]
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def config(self, name: str = "keeper.toml", **changes: Any) -> Path:
        """A config file from the example (`gmx_settings`' changes)."""
        settings = gmx_settings(self.gmx, self.tmp, self.receiver.url, **changes)
        return write_config(self.tmp / name, settings)

    @property
    def journal(self) -> Path:
        return self.tmp / "journal.sqlite"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KEEPER, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={**os.environ, **self.env},
            cwd=self.tmp,
        )

    def mine_every_second(self) -> None:
        """Anvil mines a block a second from now on (its clock set to now first, so that the
        example's max_block_age_s holds); one block per transaction again after the test."""
        self.gmx.sync_clock()
        self.gmx.interval_mining(BLOCK_SECONDS)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`keeper ARGS` as a child process (stopped after the test, if still running)."""
        proc = subprocess.Popen(
            [KEEPER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **self.env},
            cwd=self.tmp,
        )
        self.started.append(proc)
        return proc

    def history(self, config: Path) -> list[dict[str, Any]]:
        """`keeper history --json` intents, oldest first."""
        done = self.cli("history", "--config", str(config), "--json", "--limit", "500")
        assert done.returncode == 0, done.stderr
        intents: list[dict[str, Any]] = json.loads(done.stdout)["intents"]
        return intents[::-1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def scene(realgmx: RealGmx, tmp_path: Path, receiver: Receiver) -> Iterator[Scene]:
    key = open_position(realgmx)
    env = {
        KEY_ENV: "0x" + bytes(realgmx.trader.key).hex(),
        TELEGRAM_TOKEN_ENV: "123456:local-receiver",
    }
    scene = Scene(realgmx, key, tmp_path, receiver, env)
    yield scene
    for proc in scene.started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    realgmx.interval_mining(0)


@pytest.fixture
def ticking(scene: Scene) -> None:
    """Anvil mines a block a second, as a chain does, rather than a block the moment a
    transaction arrives (the manual commands' tests)."""
    scene.mine_every_second()


# --- the config against the chain ---------------------------------------------------------------


def test_the_example_config_checks_online_against_gmx(scene: Scene) -> None:
    config = scene.config()
    changed = differences(example_settings(), tomllib.loads(config.read_text()))
    assert changed == {
        "keeper.journal",
        "keeper.halt_file",
        "chain.chain_id",
        "chain.rpc",
        "chain.multicall",
        "chain.sequencer_uptime_feed",
        "chain.sequencer_grace_s",
        "venue.preset",
        *(f"venue.{name}" for name in GMX_ADDRESS_KEYS),
        "venue.subaccount_router",
        "accounts.watch",
        "signer.source",
        "signer.keystore",
        "signer.password_file",
        "signer.key_env",
        "metrics.listen",
        "alerts[0].url",
    }, sorted(changed)
    done = scene.cli("config", "check", "--online", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    usdc = scene.gmx.usdc
    assert "  alerts: telegram:127.0.0.1" in lines, done.stdout
    assert (
        f"  budget token: USDC ({usdc}), 6 decimals; top-ups up to 2000.000000 each, "
        "5000.000000 a day, 200.000000 in reserve"
    ) in lines, done.stdout
    assert any(line.startswith("  watched: 1 position(s), 0 cross account(s)") for line in lines)
    assert not [line for line in lines if "warning" in line], done.stdout


def test_config_check_online_refuses_a_sequencer_feed_the_chain_does_not_have(
    scene: Scene,
) -> None:
    config = scene.config(sequencer=True)
    done = scene.cli("config", "check", "--online", str(config))
    assert done.returncode == 1, done.stdout
    assert "chain.sequencer_uptime_feed" in done.stderr, done.stderr


# --- `keeper run` with the test as GMX's order keeper ------------------------------------------


def journal_rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows of the keeper's journal (none before the keeper made it)."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute(sql, args))
        except sqlite3.OperationalError:
            return []


def intents(path: Path) -> list[sqlite3.Row]:
    return journal_rows(
        path,
        "SELECT id, kind, status, spend_amount, payload, created_block FROM intents ORDER BY id",
    )


def status_block(path: Path, intent_id: int, status: str) -> int:
    """The block at which the journal recorded `status` for the intent."""
    (row,) = journal_rows(
        path,
        "SELECT block_number FROM events WHERE intent_id = ? AND to_status = ?",
        (intent_id, status),
    )
    return int(row["block_number"])


@dataclass
class Guarded:
    """`keeper run` protecting the trader's position: the test moves the ETH reference feed and,
    as GMX's order keeper, executes every order the keeper creates; after every move it asks
    GMX's Reader whether the position is liquidatable."""

    scene: Scene
    run: KeeperProcess
    config: Path
    checked: list[tuple[Decimal, LiquidationView]] = field(default_factory=list)

    @property
    def gmx(self) -> RealGmx:
        return self.scene.gmx

    def caught_up(self) -> int:
        """Waits until the keeper has processed the chain's head; that block."""
        return caught_up(self.run, self.gmx.block_number())

    def open_statuses(self) -> set[str]:
        return {str(r["status"]) for r in intents(self.scene.journal) if r["status"] in OPEN}

    def move(self, eth: Decimal | int) -> list[OrderOutcome]:
        """The ETH feed to `eth`, then `settle` there; what GMX did with the keeper's orders."""
        price = Decimal(eth)
        self.gmx.set_feed_prices({self.gmx.weth: price})
        self.check_safe(price)
        return self.settle(price)

    def settle(
        self, eth: Decimal, *, quiet_blocks: int = 2, timeout: float = 60.0
    ) -> list[OrderOutcome]:
        """Executes every order the keeper creates at `eth` until the keeper has processed
        `quiet_blocks` blocks in a row with nothing in flight and no order pending."""
        gmx, trader = self.gmx, self.gmx.trader.address
        outcomes = settle(
            self.run, gmx.block_number, self.open_statuses,
            lambda: gmx.execute_pending(trader, gmx.prices(eth)), eth,
            quiet_blocks=quiet_blocks, timeout=timeout,
        )  # fmt: skip
        self.check_safe(eth)
        return outcomes

    def await_order(self, timeout: float = 30.0) -> PendingOrder:
        """Waits until the keeper's order is mined and the keeper follows it; the order."""
        trader = self.gmx.trader.address

        def ready() -> bool:
            return self.open_statuses() == {"awaiting_execution"} and bool(
                self.gmx.pending_orders(trader)
            )

        self.run.wait_for(ready, timeout, "the keeper's order awaiting execution")
        (order,) = self.gmx.pending_orders(trader)
        return order

    def check_safe(self, eth: Decimal) -> None:
        """GMX's Reader.isPositionLiquidatable at `eth`, as GMX's liquidation keeper asks it."""
        if self.gmx.position(self.scene.key).size_in_usd == 0:
            return
        view = self.gmx.is_liquidatable(self.scene.key, self.gmx.prices(eth))
        self.checked.append((eth, view))
        assert not view.liquidatable, f"GMX would liquidate the position at {eth}: {view}"

    def stop(self) -> None:
        assert self.run.stop() == 0, self.run.output()[-4000:]
        assert "stopped cleanly" in self.run.output()


@pytest.fixture
def guard(scene: Scene, keeper_process: KeeperProcessFactory) -> Callable[[Path], Guarded]:
    """Starts `keeper run` on a config, with Anvil mining a block a second."""

    def start(config: Path) -> Guarded:
        scene.mine_every_second()
        guarded = Guarded(scene, keeper_process(config, scene.env), config)
        guarded.caught_up()
        return guarded

    return start


def usdc(raw: int) -> Decimal:
    return Decimal(raw).scaleb(-6)


def equity_and_notional(gmx: RealGmx, key: str, eth: Decimal) -> tuple[Decimal, Decimal]:
    """GMX's remaining collateral of the position at `eth` (no fees on this market) and its
    notional there, in USD."""
    p = gmx.position(key)
    size = Decimal(p.size_in_tokens).scaleb(-18)
    pnl = size * eth - Decimal(p.size_in_usd).scaleb(-30)
    return usdc(p.collateral_amount) + pnl, size * eth


def ratio_at(gmx: RealGmx, key: str, eth: Decimal) -> Decimal:
    equity, notional = equity_and_notional(gmx, key, eth)
    return equity / notional


def test_keeper_run_with_a_sequencer_feed_the_chain_lacks_acts_on_nothing(
    scene: Scene, keeper_process: KeeperProcessFactory
) -> None:
    """Why the example's sequencer feed is taken out of the config on this chain."""
    gmx, trader = scene.gmx, scene.gmx.trader.address
    feed = example_settings()["chain"]["sequencer_uptime_feed"]
    scene.mine_every_second()
    run = keeper_process(scene.config(sequencer=True), scene.env)
    gmx.set_feed_prices({gmx.weth: Decimal(3820)})  # a top-up is due
    run.wait_for(lambda: "tick failed" in run.output(), 30, "a failed tick")
    head = gmx.block_number()
    run.wait_for(lambda: gmx.block_number() >= head + 3, 30, "three more blocks")
    assert f"sequencer feed {feed}: bad answer" in run.output()
    assert run.last_block() is None, "no block was ever processed"
    assert intents(scene.journal) == []
    assert gmx.pending_orders(trader) == []
    alerts = [str(body["text"]) for body in scene.receiver.bodies]
    assert any("rpc_stalled" in a and "sequencer feed" in a for a in alerts), alerts
    assert run.stop() == 0


def test_keeper_run_tops_up_a_falling_long_and_gmx_executes_it(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    guarded = guard(scene.config())
    wallet = gmx.balance(gmx.usdc, trader)
    # margin ratio (12,500 + 10 (P - 5,000)) / 10 P = 1 - 3,750 / P: above top_up_below 0.02
    for eth in (4200, 3860):
        assert guarded.move(eth) == [], eth
    assert intents(scene.journal) == []
    # 3,820: the ratio is 0.0183; 37,500 - 9.6 x 3,820 = 828 USDC bring it to top_up_to 0.04
    (outcome,) = guarded.move(3820)
    assert outcome.executed, outcome
    rows = intents(scene.journal)
    # the top-up's intent, then the approval of the Router it needs (the keeper's own)
    assert [(r["kind"], r["status"]) for r in rows] == [("top_up", "done"), ("approve", "done")]
    spent = int(rows[0]["spend_amount"])
    assert spent == 828 * 10**6, usdc(spent)
    assert spent <= 2000 * 10**6, "max_top_up_per_position"
    position = gmx.position(key)
    assert position.collateral_amount == COLLATERAL * 10**6 + spent
    assert position.size_in_usd == SIZE_USD * USD
    assert ratio_at(gmx, key, Decimal(3820)) >= Decimal("0.04")
    assert gmx.balance(gmx.usdc, trader) == wallet - spent
    assert gmx.balance(gmx.usdc, trader) >= 200 * 10**6, "the reserve"
    # 3,760: with 12,500 USDC GMX liquidates below 3,800; with 13,328 below 3,717.2
    assert guarded.move(3760) == []
    assert [r["status"] for r in intents(scene.journal)] == ["done", "done"]
    assert {eth for eth, _ in guarded.checked} == {Decimal(p) for p in (4200, 3860, 3820, 3760)}
    health = guarded.run.health()
    assert health is not None
    assert health["status"] == "ok", health  # the example's max_block_age_s = 30 holds
    assert guarded.run.metric("keeper_positions_watched") == 1
    guarded.stop()
    history = scene.history(guarded.config)
    assert [(h["kind"], h["status"]) for h in history] == [("top_up", "done"), ("approve", "done")]
    assert history[0]["position"] == key
    assert history[0]["reason"].startswith("top_up: ratio"), history[0]
    assert scene.receiver.bodies == [], "a top-up done raises no warning"


def test_keeper_run_reduces_when_the_budget_cannot_restore_the_ratio(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    # a small budget: 100 USDC a day, far from the 780 USDC the ratio needs at 3,825
    budget = {"max_top_up_per_position": "100", "max_spend_per_day": "100"}
    guarded = guard(scene.config(budget=budget))
    wallet = gmx.balance(gmx.usdc, trader)
    assert guarded.move(4200) == []
    # 3,825: ratio 0.0196, between reduce_below 0.015 and top_up_below 0.02: all the budget
    (partial,) = guarded.move(3825)
    assert partial.executed, partial
    rows = intents(scene.journal)
    assert [(r["kind"], r["status"]) for r in rows] == [("top_up", "done"), ("approve", "done")]
    assert int(rows[0]["spend_amount"]) == 100 * 10**6
    assert gmx.position(key).collateral_amount == (COLLATERAL + 100) * 10**6
    # 3,795: (12,600 - 12,050) / 37,950 = 0.0145 is below reduce_below, the budget is spent;
    # GMX liquidates below 3,790 now
    (cut,) = guarded.move(3795)
    assert cut.executed, cut
    at, before_cut = next((eth, v) for eth, v in guarded.checked if eth == 3795)
    assert before_cut.remaining_collateral_usd == 550 * USD, (at, before_cut)
    assert before_cut.min_collateral_usd_for_leverage == 500 * USD, before_cut
    assert {eth for eth, _ in guarded.checked} == {Decimal(p) for p in (4200, 3825, 3795)}
    rows = intents(scene.journal)
    assert [(r["kind"], r["status"]) for r in rows][2:] == [("reduce", "done")]
    size_delta = int(json.loads(rows[2]["payload"])["size_delta"])
    position = gmx.position(key)
    assert position.size_in_tokens == 10 * 10**18 - size_delta
    # equity stays 550 USDC (no fees here): 550 / (q x 3,795) >= 0.04 needs q <= 3.6232
    assert Decimal(position.size_in_tokens).scaleb(-18) <= Decimal("3.6233")
    # top_up_to 0.04 within one USDC unit: GMX takes the cut's loss from the collateral
    # rounded up to whole units of USDC, which the keeper's model of a cut does not
    equity, notional = equity_and_notional(gmx, key, Decimal(3795))
    assert equity + Decimal("0.000001") >= Decimal("0.04") * notional, equity / notional
    assert gmx.balance(gmx.usdc, trader) == wallet - 100 * 10**6, "the budget, and no more"
    guarded.stop()
    history = scene.history(guarded.config)
    assert [(h["kind"], h["status"]) for h in history] == [
        ("top_up", "done"),
        ("approve", "done"),
        ("reduce", "done"),
    ]
    assert history[0]["reason"].startswith("top_up_partial:"), history[0]
    assert history[2]["reason"].startswith("reduce:"), history[2]


def test_keeper_run_closes_below_close_below(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    # The example's close_below 0.011 is under the ratio at which GMX liquidates this 4x long:
    # GMX wants 1% of the size at entry (500 USD), which at 3,800 is 500 / 38,000 = 0.0132 of
    # the notional; a long reaches 0.011 only past its liquidation price. Raised to
    # reduce_below so that a close can be seen before GMX would liquidate.
    guarded = guard(scene.config(thresholds={"close_below": "0.015"}))
    wallet = gmx.balance(gmx.usdc, trader)
    assert guarded.move(4200) == []
    # a gap from 4,200 to 3,805 in one block: ratio 550 / 38,050 = 0.0145
    (close,) = guarded.move(3805)
    assert close.executed, close
    assert gmx.position(key).size_in_usd == 0
    assert gmx.pending_orders(trader) == []
    # what is left, 12,500 + 10 (3,805 - 5,000) = 550 USDC, comes back to the wallet
    assert gmx.balance(gmx.usdc, trader) == wallet + 550 * 10**6
    assert [(r["kind"], r["status"]) for r in intents(scene.journal)] == [("close", "done")]
    (at, before_close) = guarded.checked[-1]
    assert at == 3805, guarded.checked
    assert before_close.remaining_collateral_usd == 550 * USD, before_close
    guarded.stop()
    (history,) = scene.history(guarded.config)
    assert (history["kind"], history["status"]) == ("close", "done")
    assert history["reason"].startswith("below_close:"), history


def test_keeper_run_decides_again_after_gmx_cancels_its_order(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    guarded = guard(scene.config())
    wallet = gmx.balance(gmx.usdc, trader)
    assert guarded.move(4200) == []
    gmx.set_feed_prices({gmx.weth: Decimal(3820)})
    order = guarded.await_order()
    assert order.collateral_delta_amount == 828 * 10**6
    # GMX's oracle prices ETH at 3,700 when its keeper gets to the order: the position would
    # be liquidatable even with the top-up, and GMX cancels the order
    outcome = gmx.execute_order(order.key, gmx.prices(3700))
    assert outcome.fate is OrderFate.CANCELLED, outcome
    assert outcome.error is not None
    assert outcome.error.name == "LiquidatablePosition", outcome.error
    # 12,500 + 828 + 10 (3,700 - 5,000) = 328 USD left, under 1% of the 50,000 at entry
    assert dict(outcome.error.args)["remainingCollateralUsd"] == str(328 * USD), outcome.error
    assert gmx.balance(gmx.usdc, trader) == wallet, "GMX sends the collateral back"
    # the keeper sees the cancel, and decides again on the next block (the feed says 3,820)
    (again,) = guarded.settle(Decimal(3820))
    assert again.executed, again
    assert gmx.position(key).collateral_amount == (COLLATERAL + 828) * 10**6
    rows = intents(scene.journal)
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("top_up", "cancelled"),
        ("approve", "done"),
        ("top_up", "done"),
        ("approve", "done"),
    ]
    # decided again on the next block the keeper processed (the next block, unless it had
    # to skip blocks to keep up with the head)
    cancelled_at = status_block(scene.journal, int(rows[0]["id"]), "cancelled")
    skipped = guarded.run.metric("keeper_blocks_skipped_total")
    assert skipped is not None
    assert cancelled_at < rows[2]["created_block"] <= cancelled_at + 1 + int(skipped), (
        cancelled_at,
        rows[2]["created_block"],
        skipped,
    )
    assert gmx.balance(gmx.usdc, trader) == wallet - 828 * 10**6
    assert {eth for eth, _ in guarded.checked} == {Decimal(4200), Decimal(3820)}
    guarded.stop()
    history = scene.history(guarded.config)
    assert [h["status"] for h in history if h["kind"] == "top_up"] == ["cancelled", "done"]
    alerts = [str(body["text"]) for body in scene.receiver.bodies]
    assert any("cancelled" in a and f"0x{order.key.hex()}" in a for a in alerts), alerts


def test_keeper_run_cancels_an_order_left_past_its_expiry_and_decides_again(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    expiry = gmx.get_uint(REQUEST_EXPIRATION_TIME)
    guarded = guard(scene.config())
    wallet = gmx.balance(gmx.usdc, trader)
    gmx.set_feed_prices({gmx.weth: Decimal(3820)})
    stale = guarded.await_order()
    # GMX's keepers leave it: REQUEST_EXPIRATION_TIME later its owner may cancel it
    gmx.advance_time(expiry)
    (again,) = guarded.settle(Decimal(3820))
    assert again.key != stale.key
    assert again.executed, again
    assert gmx.position(key).collateral_amount == (COLLATERAL + 828) * 10**6
    assert gmx.balance(gmx.usdc, trader) == wallet - 828 * 10**6
    rows = intents(scene.journal)
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("top_up", "expired"),
        ("approve", "done"),
        ("cancel_order", "done"),
        ("top_up", "done"),
        ("approve", "done"),
    ]
    guarded.stop()
    (cancel,) = [h for h in scene.history(guarded.config) if h["kind"] == "cancel_order"]
    assert f"0x{stale.key.hex()}" in cancel["reason"], cancel


# --- manual commands: they follow the order GMX executes later ----------------------------------


def wait_for_order(
    gmx: RealGmx, command: subprocess.Popen[str], timeout: float = 60
) -> PendingOrder:
    """The one order the trader's command created, once it is in GMX's DataStore."""
    deadline = time.monotonic() + timeout
    while not (orders := gmx.pending_orders(gmx.trader.address)):
        if command.poll() is not None:
            out, err = command.communicate()
            raise AssertionError(f"the command exited {command.returncode}: {out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no order from the command after {timeout:g} s")
        time.sleep(0.1)
    (order,) = orders
    return order


def finish(command: subprocess.Popen[str], timeout: float = 60) -> tuple[int, list[dict[str, Any]]]:
    """The command's exit code and the results it printed (--json)."""
    out, err = command.communicate(timeout=timeout)
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    results = [r for p in printed for r in p.get("results", [])]
    assert printed, (out, err)
    assert "prepared" in printed[0], (out, err)
    return command.returncode, results


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["kind"], r["status"]) for r in results]


def still_following(gmx: RealGmx, command: subprocess.Popen[str]) -> bool:
    """Whether the command is still running a few blocks and a second later."""
    gmx.mine(3)
    time.sleep(1.0)
    return command.poll() is None


@pytest.mark.usefixtures("ticking")
def test_top_up_follows_its_order_until_gmx_executes_it(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    config = scene.config()
    listed = scene.cli("positions", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["positions"]
    # a GMX market is named by its index token's own symbol: WNT on this state (WETH on
    # Arbitrum), and the position is MARKET:SIDE by that name
    assert (row["key"], row["market"], row["side"]) == (key, gmx.symbol(gmx.weth), "long"), row
    wallet = gmx.balance(gmx.usdc, trader)
    position = f"{row['market']}:long"
    command = scene.start("top-up", position, "1500", "--config", str(config), "--yes", "--json")
    order = wait_for_order(gmx, command)
    assert order.order_type is OrderType.MARKET_INCREASE
    assert (order.size_delta_usd, order.collateral_delta_amount) == (0, 1500 * 10**6)
    assert still_following(gmx, command), "the command returned before GMX executed the order"
    outcome = gmx.execute_order(order.key, gmx.prices(ENTRY))
    assert outcome.executed, outcome
    code, results = finish(command)
    assert code == 0, results
    assert statuses(results) == [("approve", "done"), ("top_up", "done")], results
    assert gmx.position(key).collateral_amount == (COLLATERAL + 1500) * 10**6
    assert gmx.balance(gmx.usdc, trader) == wallet - 1500 * 10**6
    history = scene.history(config)
    assert [(h["kind"], h["status"]) for h in history] == [("top_up", "done"), ("approve", "done")]
    assert history[0]["reason"] == "manual: requested from the command line"


@pytest.mark.usefixtures("ticking")
def test_top_up_without_waiting_returns_once_its_order_is_mined(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    config = scene.config()
    done = scene.cli("top-up", key, "1500", "--config", str(config), "--yes", "--no-wait", "--json")
    assert done.returncode == 0, done.stderr
    results = [r for line in done.stdout.splitlines() for r in json.loads(line).get("results", [])]
    assert statuses(results) == [("approve", "done"), ("top_up", "awaiting_execution")]
    (order,) = gmx.pending_orders(trader)
    assert order.collateral_delta_amount == 1500 * 10**6
    assert gmx.position(key).collateral_amount == COLLATERAL * 10**6, "not executed yet"
    history = scene.history(config)
    assert [(h["kind"], h["status"]) for h in history] == [
        ("top_up", "awaiting_execution"),
        ("approve", "done"),
    ]
    # while that order waits, nothing else is sent on the position
    refused = scene.cli("close", key, "--config", str(config), "--yes")
    assert refused.returncode == 1, refused.stderr
    assert "already open" in refused.stderr, refused.stderr
    assert gmx.pending_orders(trader) == [order]
    # GMX executes it; a `keeper run` started later follows the intent to done
    assert gmx.execute_order(order.key, gmx.prices(ENTRY)).executed
    guarded = guard(config)
    guarded.run.wait_for(
        lambda: [r["status"] for r in intents(scene.journal)] == ["done", "done"],
        30,
        "the top-up done",
    )
    assert gmx.position(key).collateral_amount == (COLLATERAL + 1500) * 10**6
    guarded.stop()


@pytest.mark.usefixtures("ticking")
def test_reduce_follows_its_order_until_gmx_executes_it(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    config = scene.config()
    command = scene.start("reduce", key, "4", "--config", str(config), "--yes", "--json")
    order = wait_for_order(gmx, command)
    assert order.order_type is OrderType.MARKET_DECREASE
    assert order.size_delta_usd == 20_000 * USD, "4 of the 10 ETH at 5,000"
    assert still_following(gmx, command)
    assert gmx.execute_order(order.key, gmx.prices(ENTRY)).executed
    code, results = finish(command)
    assert (code, statuses(results)) == (0, [("reduce", "done")]), results
    position = gmx.position(key)
    assert (position.size_in_tokens, position.size_in_usd) == (6 * 10**18, 30_000 * USD)
    assert position.collateral_amount == COLLATERAL * 10**6
    assert gmx.pending_orders(trader) == []
    assert [(h["kind"], h["status"]) for h in scene.history(config)] == [("reduce", "done")]


@pytest.mark.usefixtures("ticking")
def test_a_receipt_served_late_does_not_send_the_order_twice(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    endpoint = LaggingEndpoint(gmx.url, receipt_lag_s=3.0)
    config = scene.config(rpc=endpoint.url)
    done: subprocess.CompletedProcess[str] | None = None
    try:
        done = scene.cli(
            "reduce", key, "4", "--config", str(config), "--yes", "--no-wait", "--json",
            timeout=20,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pass  # still sending it again, block after block
    finally:
        endpoint.close()
    assert endpoint.held_receipts > 0, "the receipt was never asked for early"
    orders = gmx.pending_orders(trader)
    assert len(orders) == 1, f"{len(orders)} orders for one reduce of 4 ETH"
    assert done is not None, "the command did not return"
    assert done.returncode == 0, done.stderr
    (reduce,) = scene.history(config)
    assert len(reduce["transactions"]) == 1, reduce["transactions"]


@pytest.mark.usefixtures("ticking")
def test_an_executed_order_whose_log_is_served_late_ends_done(scene: Scene) -> None:
    gmx, key = scene.gmx, scene.key
    endpoint = LaggingEndpoint(gmx.url, log_lag_s=3.0)
    try:
        config = scene.config(rpc=endpoint.url)
        command = scene.start("top-up", key, "1500", "--config", str(config), "--yes", "--json")
        order = wait_for_order(gmx, command)
        assert gmx.execute_order(order.key, gmx.prices(ENTRY)).executed
        code, results = finish(command)
    finally:
        endpoint.close()
    assert endpoint.held_logs > 0, "no log was served late"
    assert gmx.position(key).collateral_amount == (COLLATERAL + 1500) * 10**6
    assert (code, statuses(results)[-1]) == (0, ("top_up", "done")), results


@pytest.mark.usefixtures("ticking")
def test_a_market_and_side_naming_two_positions_is_refused(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    other = gmx.open_position(
        gmx.trader,
        collateral_amount=gmx.units(gmx.weth, 2),
        size_usd=10_000,
        is_long=True,
        prices=gmx.prices(ENTRY),
        collateral_token=gmx.weth,
    )
    assert other != key
    config = scene.config()
    name = f"{gmx.symbol(gmx.weth)}:long"
    done = scene.cli("close", name, "--config", str(config), "--yes", "--no-wait")
    assert gmx.pending_orders(trader) == [], "an order was sent for one of the two longs"
    assert done.returncode == 1, done.stdout
    assert key in done.stderr, done.stderr
    assert other in done.stderr, done.stderr


@pytest.mark.usefixtures("ticking")
def test_close_that_gmx_cancels_ends_cancelled(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    config = scene.config()
    command = scene.start("close", key, "--config", str(config), "--yes", "--json")
    order = wait_for_order(gmx, command)
    assert order.order_type is OrderType.MARKET_DECREASE
    assert order.size_delta_usd == SIZE_USD * USD
    # ETH fell 2% before GMX's keeper got to it: below the close's acceptable price (1% under
    # the mark of 5,000), GMX cancels it
    outcome = gmx.execute_order(order.key, gmx.prices(4900))
    assert outcome.fate is OrderFate.CANCELLED, outcome
    assert outcome.error is not None
    assert outcome.error.name == "OrderNotFulfillableAtAcceptablePrice", outcome.error
    code, results = finish(command)
    assert code == 1, results
    assert statuses(results) == [("close", "cancelled")], results
    assert gmx.position(key).size_in_usd == SIZE_USD * USD
    assert gmx.pending_orders(trader) == []
    assert [(h["kind"], h["status"]) for h in scene.history(config)] == [("close", "cancelled")]


@pytest.mark.usefixtures("ticking")
def test_an_order_left_past_its_expiry_is_cancelled_and_ends_expired(scene: Scene) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    expiry = gmx.get_uint(REQUEST_EXPIRATION_TIME)
    assert expiry == 300, "the state's REQUEST_EXPIRATION_TIME"
    config = scene.config()
    wallet = gmx.balance(gmx.usdc, trader)
    command = scene.start("top-up", key, "1500", "--config", str(config), "--yes", "--json")
    order = wait_for_order(gmx, command)
    assert gmx.balance(gmx.usdc, trader) == wallet - 1500 * 10**6, "sent with the order"
    assert still_following(gmx, command)
    # nobody executes it: 300 s later GMX lets its owner cancel it, and the command does
    gmx.advance_time(expiry)
    code, results = finish(command)
    assert code == 1, results
    assert statuses(results) == [("approve", "done"), ("top_up", "expired")], results
    assert gmx.pending_orders(trader) == []
    assert gmx.balance(gmx.usdc, trader) == wallet, "GMX returns the collateral"
    assert gmx.position(key).collateral_amount == COLLATERAL * 10**6
    history = scene.history(config)
    assert [(h["kind"], h["status"]) for h in history][:2] == [
        ("top_up", "expired"),
        ("approve", "done"),
    ]
    cancel = history[2]
    assert cancel["kind"] == "cancel_order", history
    assert f"0x{order.key.hex()}" in cancel["reason"], cancel
    (tx,) = cancel["transactions"]
    assert tx["status"] == "final", tx


@pytest.mark.usefixtures("ticking")
def test_an_expired_order_leaves_nothing_open_and_the_next_one_is_cancelled_too(
    scene: Scene,
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    expiry = gmx.get_uint(REQUEST_EXPIRATION_TIME)
    config = scene.config()
    wallet = gmx.balance(gmx.usdc, trader)
    for attempt in (1, 2):
        command = scene.start(
            "top-up", key, "1500", "--config", str(config), "--yes", "--json",
            "--wait-timeout", "20",
        )  # fmt: skip
        wait_for_order(gmx, command)
        gmx.advance_time(expiry)
        code, results = finish(command)
        assert (code, statuses(results)[-1]) == (1, ("top_up", "expired")), (attempt, results)
        assert gmx.pending_orders(trader) == [], attempt
        assert gmx.balance(gmx.usdc, trader) == wallet, attempt
        left = [(h["kind"], h["status"]) for h in scene.history(config) if h["status"] in OPEN]
        assert left == [], (attempt, left)
