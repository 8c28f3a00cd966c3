"""`keeper run` on a GMX deployment on Anvil, for the tests that drive it, on our test
deployment (subaccount_rig.py) and on GMX's own contracts (tests/integration/realgmx/
test_realgmx_keeper.py): the example config made for the local chain, and the wait for the
keeper to settle while the test, as GMX's order keeper, executes the orders it creates."""

from __future__ import annotations

import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from keeper.config import GMX_ADDRESS_KEYS
from keeper.testing.anvil import free_port
from keeper.testing.devnet import KEY_ENV
from keeper.testing.process import KeeperProcess
from keeper.venues.gmx import GmxDeployment

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "arbitrum.toml"
KEEPER = str(Path(sys.executable).with_name("keeper"))
TELEGRAM_TOKEN_ENV = "KEEPER_TELEGRAM_TOKEN"  # the example's [[alerts]] token_env
IN_FLIGHT = frozenset({"decided", "signed", "sent", "mined"})
OPEN = IN_FLIGHT | {"awaiting_execution"}
BLOCK_SECONDS = 1  # Anvil mines a block a second while `keeper run` runs

T = TypeVar("T")


def example_settings() -> dict[str, Any]:
    """examples/arbitrum.toml as the keeper reads it (comments aside)."""
    return tomllib.loads(EXAMPLE.read_text())


def venue_section(d: GmxDeployment) -> dict[str, Any]:
    """The [venue] table for deployment `d`: every address, no preset."""
    venue: dict[str, Any] = {"kind": "gmx"}
    venue.update({name: getattr(d, name) for name in GMX_ADDRESS_KEYS})
    venue["subaccount_router"] = d.subaccount_router
    return venue


def local_settings(
    chain: Mapping[str, Any],
    venue: Mapping[str, Any],
    trader: str,
    where: Path,
    alerts_url: str,
    *,
    thresholds: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    sequencer: bool = False,
    rpc: str | None = None,
) -> dict[str, Any]:
    """examples/arbitrum.toml with only what a local chain needs changed: its `chain` keys
    (chain id, node, Multicall3) and `venue` table, `trader` watched, the journal and halt file
    in `where`, the example's alert sink at `alerts_url`, and the scenario's `thresholds` and
    `budget` changes; `sequencer` keeps the example's sequencer uptime feed; `rpc` is an
    endpoint in front of the node."""
    settings = example_settings()
    settings["keeper"].update(journal=str(where / "journal.sqlite"), halt_file=str(where / "HALT"))
    section = settings["chain"]
    section.update(chain)
    if rpc is not None:
        section["rpc"] = [rpc]
    if not sequencer:
        # Chainlink's Arbitrum sequencer uptime feed has no contract on this chain, which is
        # no L2 with a sequencer: every block's read of it would fail
        del section["sequencer_uptime_feed"], section["sequencer_grace_s"]
    settings["venue"] = dict(venue)
    settings["accounts"]["watch"] = [trader]
    # the keeper acts for the account it signs as: the trader's key, from the environment
    # (a raw key is allowed on chain 31337 only)
    settings["signer"] = {"source": "env", "key_env": KEY_ENV}
    settings["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    (alert,) = settings["alerts"]
    alert["url"] = alerts_url  # the example's Telegram sink, at a local receiver
    settings["thresholds"].update(thresholds or {})
    settings["budget"].update(budget or {})
    return settings


def caught_up(run: KeeperProcess, head: int) -> int:
    """Waits until the keeper has processed block `head`; that block."""
    run.wait_for(lambda: (run.last_block() or -1) >= head, 30, f"the keeper at block {head}")
    return head


def settle(
    run: KeeperProcess,
    head: Callable[[], int],
    open_statuses: Callable[[], set[str]],
    execute_pending: Callable[[], list[T]],
    eth: object,
    *,
    quiet_blocks: int = 2,
    timeout: float = 60.0,
) -> list[T]:
    """Executes every order the keeper creates (`execute_pending`: the outcomes, [] when none
    is pending) until the keeper has processed `quiet_blocks` blocks in a row with nothing in
    flight and no order pending; the outcomes. `eth` names the price in the timeout's error."""
    outcomes: list[T] = []
    quiet_from: int | None = None
    deadline = time.monotonic() + timeout
    while True:
        block = caught_up(run, head())
        statuses = open_statuses()
        if statuses & IN_FLIGHT:
            quiet_from = None
        elif executed := execute_pending():
            outcomes += executed
            quiet_from = None
            continue
        elif statuses:  # executed or cancelled, not yet seen by the keeper
            quiet_from = None
        elif quiet_from is None:
            quiet_from = block
        elif block - quiet_from >= quiet_blocks:
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the keeper did not settle at {eth} in {timeout:g} s: open intents "
                f"{sorted(statuses)}\n{run.output()[-4000:]}"
            )
        time.sleep(0.1)
    return outcomes
