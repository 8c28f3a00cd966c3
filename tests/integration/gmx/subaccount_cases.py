"""Subaccount mode (accounts.delegated) on any GMX deployment on Anvil: the bodies of the tests
that run it on GMX's own contracts (tests/integration/realgmx/test_realgmx_subaccount*.py) and
on ours (tests/integration/gmx/test_gmx_subaccount*.py).

Each deployment's tests give the bodies the moves on their chain: a `SubaccountChain` (open the
trader's long, execute a pending order at a price, the error an eth_call reverts with, ...) for
the adapter's scenarios, a `KeeperChain` (`keeper run` and the manual commands, with the test as
GMX's order keeper) for the keeper's. The trader's position is the same on both: 10 ETH long at
5,000 with 12,500 USDC, on a market without fees, and every number below follows from it.

The trader's main key sends the setup the adapter builds (`delegation_setup`); the keeper's
subaccount key then tops up (collateral from the trader's wallet, through GMX's Router) and
closes (proceeds to the trader) through the SubaccountRouter, and GMX refuses every order of
the subaccount that would pay the subaccount, and every key the trader never added.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.model import Close, Reason, Scope, TopUp
from keeper.testing.devnet import dev_account
from keeper.venues.base import (
    DELEGATION_LOW_ACTIONS,
    ActionState,
    Delegates,
    MinedTx,
    TxPlan,
    Watch,
)
from keeper.venues.gmx import (
    CreateOrder,
    GmxDeployment,
    GmxFn,
    GmxVenue,
    RawPosition,
)
from keeper.venues.gmx_math import FLOAT_PRECISION, OrderType

__all__ = [
    "COLLATERAL",
    "ENTRY",
    "MAX_ACTIONS",
    "MINTED",
    "SIZE_USD",
    "SUBACCOUNT_INDEX",
    "TOP_UP",
    "USD",
    "WHY",
    "Guard",
    "IntentRow",
    "KeeperChain",
    "Outcome",
    "SubaccountChain",
    "a_key_the_trader_never_added_cannot_act",
    "add_subaccount",
    "gmx_refuses_a_subaccount_order_that_pays_the_subaccount",
    "gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state",
    "gmx_subaccount_refuses_bad_arguments",
    "intents",
    "keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader",
    "keeper_run_refuses_to_start_for_an_account_that_never_added_it",
    "ratio_at",
    "set_up",
    "setup_makes_an_active_subaccount_with_limits",
    "subaccount",
    "the_subaccount_tops_up_and_closes_for_the_trader",
]

ENTRY = Decimal(5000)
SIZE_USD = 50_000  # 10 ETH at 5,000
COLLATERAL = 12_500  # USDC
TOP_UP = 1_500  # USDC
MINTED = 100_000  # USDC minted to the trader before it opens
SUBACCOUNT_INDEX = 7  # a funded Anvil account with no role in either GMX state
MAX_ACTIONS = 25
USD = FLOAT_PRECISION
WHY = Reason("test", "because the test says so")
_SUB_MULTICALL = GmxFn.of("SubaccountRouter", "multicall")
_SUB_SEND_WNT = GmxFn.of("SubaccountRouter", "sendWnt")
_SUB_CREATE_ORDER = GmxFn.of("SubaccountRouter", "createOrder")


def subaccount() -> LocalAccount:
    return dev_account(SUBACCOUNT_INDEX)


# --- what a deployment's tests provide ---------------------------------------------------------


class Outcome(Protocol):
    """What GMX did with one order the keeper created."""

    @property
    def executed(self) -> bool: ...


class GmxChain(Protocol):
    """A GMX deployment on Anvil with a SubaccountRouter: what both kinds of scenario read
    and send on it."""

    @property
    def url(self) -> str: ...
    @property
    def deployment(self) -> GmxDeployment: ...
    @property
    def trader(self) -> LocalAccount: ...
    @property
    def usdc(self) -> str: ...

    def block_time(self) -> int: ...
    def send(
        self, account: LocalAccount, to: str, data: bytes, *, value: int = 0, what: str = "tx"
    ) -> TxReceipt:
        """Signs and sends a transaction and waits for it; AssertionError when it reverts."""
        ...

    def balance(self, token: str, account: str) -> int: ...
    def native_balance(self, account: str) -> int: ...
    def position(self, key: str) -> RawPosition: ...


class SubaccountChain(GmxChain, Protocol):
    """The moves the adapter's scenarios make on the deployment."""

    @property
    def market_token(self) -> str: ...

    def advance_time(self, seconds: int) -> None: ...
    def send_plan(self, account: LocalAccount, plan: TxPlan) -> list[MinedTx]:
        """Sends a venue's plan step by step at the node's gas price."""
        ...

    def usdc_units(self, whole: int) -> int: ...
    def mint_usdc(self, to: str, whole: int) -> None: ...
    def open_long(self) -> str:
        """The trader mints MINTED USDC and opens SIZE_USD long at ENTRY with COLLATERAL USDC
        (its own order, executed by GMX); the position key."""
        ...

    def pending_orders(self, account: str) -> list[bytes]:
        """The keys of the account's orders in the DataStore."""
        ...

    def execute_at(self, key: bytes, eth: Decimal) -> Outcome:
        """GMX's order keeper executes the order at `eth` (USDC at 1), or GMX cancels it."""
        ...

    def revert_name(self, to: str, data: bytes, *, sender: str, value: int = 0) -> str:
        """The name of the GMX error an eth_call reverts with (AssertionError if it does not)."""
        ...


class Guard(Protocol):
    """`keeper run` protecting the trader's position, the test acting as GMX's order keeper."""

    def move(self, eth: int) -> Sequence[Outcome]:
        """The ETH price to `eth`, then every order the keeper creates executed there until
        the keeper is quiet; what GMX did with them."""
        ...

    def stop(self) -> None:
        """Stops the keeper, which must exit cleanly."""
        ...


class KeeperChain(GmxChain, Protocol):
    """The trader's long (as `SubaccountChain.open_long` opens it) and `keeper` commands on the
    deployment, from a config made from examples/arbitrum.toml."""

    @property
    def key(self) -> str:
        """The trader's position."""
        ...

    @property
    def journal(self) -> Path: ...

    def sign_with(self, account: LocalAccount) -> None:
        """The key `keeper` commands sign with from now on (from the environment)."""
        ...

    def delegated_config(self, **thresholds: str) -> Path:
        """The config with accounts.delegated = true and these threshold changes."""
        ...

    def guard(self, config: Path) -> Guard: ...
    def cli(self, *args: str, timeout: float = 120) -> CompletedProcess[str]: ...


# --- shared moves ------------------------------------------------------------------------------


async def set_up(venue: GmxVenue, chain: SubaccountChain, sub: str, *, max_actions: int) -> int:
    """The trader's main key sends what `delegation_setup` builds; the expiry it set."""
    expires_at = chain.block_time() + 30 * 86400
    steps = await venue.delegation_setup(
        chain.trader.address, sub, max_actions=max_actions, expires_at=expires_at, token=chain.usdc
    )
    assert [s.to for s in steps] == [venue.deployment.subaccount_router, chain.usdc]
    for step in steps:
        chain.send(chain.trader, step.to, step.data, value=step.value, what=step.description)
    return expires_at


async def add_subaccount(chain: KeeperChain, sub: str) -> None:
    """The trader, with its main key, sends what the adapter's delegation_setup builds: 20
    order actions for a week."""
    rpc = HttpJsonRpc(chain.url, timeout=30)
    try:
        venue = await GmxVenue.connect(rpc, chain.deployment, wallet_token=chain.usdc)
        steps = await venue.delegation_setup(
            chain.trader.address,
            sub,
            max_actions=20,
            expires_at=chain.block_time() + 7 * 86400,
            token=chain.usdc,
        )
    finally:
        await rpc.close()
    for step in steps:
        chain.send(chain.trader, step.to, step.data, value=step.value, what=step.description)


@dataclass(frozen=True, slots=True)
class IntentRow:
    kind: str
    status: str
    spend_amount: int


def intents(journal: Path) -> list[IntentRow]:
    """The keeper's intents, oldest first (none before the keeper made its journal)."""
    if not journal.exists():
        return []
    with closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT kind, status, spend_amount FROM intents ORDER BY id").fetchall()
    return [IntentRow(str(k), str(s), int(a or 0)) for k, s, a in rows]


def ratio_at(position: RawPosition, eth: Decimal) -> Decimal:
    """The position's equity over its notional at `eth` (USDC collateral, no fees)."""
    size = Decimal(position.size_in_tokens).scaleb(-18)
    pnl = size * eth - Decimal(position.size_in_usd).scaleb(-30)
    return (Decimal(position.collateral_amount).scaleb(-6) + pnl) / (size * eth)


# --- the adapter as a subaccount ---------------------------------------------------------------


async def setup_makes_an_active_subaccount_with_limits(
    chain: SubaccountChain, venue: GmxVenue
) -> None:
    assert isinstance(venue, Delegates)
    sub = subaccount()
    trader = chain.trader.address
    before = await venue.delegation(trader, sub.address, token=chain.usdc)
    assert not before.active
    assert any("not a subaccount" in p for p in before.problems), before.problems

    chain.mint_usdc(trader, 1_000)
    expires_at = await set_up(venue, chain, sub.address, max_actions=MAX_ACTIONS)
    after = await venue.delegation(trader, sub.address, token=chain.usdc)
    assert after.active, after.problems
    assert after.actions_left == MAX_ACTIONS
    assert after.expires_at == expires_at
    assert after.problems == ()
    assert after.top_up_left is not None
    assert after.top_up_left.raw == chain.balance(chain.usdc, trader)

    # a few actions or days left is a problem to alert on, not yet inactive
    await set_up(venue, chain, sub.address, max_actions=DELEGATION_LOW_ACTIONS - 1)
    low = await venue.delegation(trader, sub.address)
    assert low.active
    assert low.actions_left == DELEGATION_LOW_ACTIONS - 1
    assert any("actions left" in p for p in low.problems), low.problems
    chain.advance_time(31 * 86400)
    late = await venue.delegation(trader, sub.address)
    assert not late.active
    assert any("expired" in p for p in late.problems), late.problems


async def the_subaccount_tops_up_and_closes_for_the_trader(
    chain: SubaccountChain, venue: GmxVenue
) -> None:
    sub = subaccount()
    trader = chain.trader.address
    key = chain.open_long()
    await set_up(venue, chain, sub.address, max_actions=MAX_ACTIONS)
    watch = Watch((trader,), wallet=sub.address, wallet_token=chain.usdc)

    snapshot = await venue.snapshot(watch)
    token = snapshot.position(venue.name, key).collateral_token
    amount = token.amount(chain.usdc_units(TOP_UP))
    action = TopUp(venue.name, Scope.POSITION, key, trader, token, amount, WHY)
    plan = await venue.build(action, snapshot, sender=sub.address)
    assert [s.to for s in plan.steps] == [venue.deployment.subaccount_router]
    assert plan.approvals == 0
    assert await venue.simulate_execution(plan, snapshot) is None

    wallet_before = chain.balance(chain.usdc, trader)
    sub_eth_before = chain.native_balance(sub.address)
    done = chain.send_plan(sub, plan)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    order_key = venue.order_key(done)
    assert order_key is not None
    assert chain.pending_orders(trader) == [order_key]  # the trader's order
    assert chain.pending_orders(sub.address) == []
    assert chain.balance(chain.usdc, trader) == wallet_before - amount.raw  # from the trader
    outcome = chain.execute_at(order_key, ENTRY)
    assert outcome.executed, outcome
    assert await venue.action_state(plan, done) is ActionState.DONE
    assert chain.position(key).collateral_amount == chain.usdc_units(COLLATERAL + TOP_UP)
    assert chain.balance(chain.usdc, sub.address) == 0
    assert chain.native_balance(sub.address) < sub_eth_before  # it paid the gas
    assert (await venue.delegation(trader, sub.address)).actions_left == MAX_ACTIONS - 1

    snapshot = await venue.snapshot(watch)
    market_id = snapshot.position(venue.name, key).market_id
    plan = await venue.build(
        Close(venue.name, key, trader, market_id, WHY), snapshot, sender=sub.address
    )
    assert await venue.simulate_execution(plan, snapshot) is None
    wallet_before = chain.balance(chain.usdc, trader)
    done = chain.send_plan(sub, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    outcome = chain.execute_at(order_key, ENTRY)
    assert outcome.executed, outcome
    assert chain.position(key).size_in_usd == 0
    paid = chain.balance(chain.usdc, trader) - wallet_before
    assert paid == chain.usdc_units(COLLATERAL + TOP_UP)
    assert chain.balance(chain.usdc, sub.address) == 0
    assert (await venue.delegation(trader, sub.address)).actions_left == MAX_ACTIONS - 2


async def gmx_refuses_a_subaccount_order_that_pays_the_subaccount(
    chain: SubaccountChain, venue: GmxVenue, field: str
) -> None:
    sub = subaccount()
    trader = chain.trader.address
    chain.open_long()
    await set_up(venue, chain, sub.address, max_actions=MAX_ACTIONS)
    payee = {"receiver": trader, "cancellation_receiver": trader, field: sub.address}
    order = CreateOrder(
        receiver=payee["receiver"],
        cancellation_receiver=payee["cancellation_receiver"],
        market=chain.market_token,
        initial_collateral_token=chain.usdc,
        order_type=OrderType.MARKET_DECREASE,
        is_long=True,
        size_delta_usd=SIZE_USD * USD,
        acceptable_price=0,
    )
    data = _SUB_MULTICALL.encode(
        [
            _SUB_SEND_WNT.encode(venue.deployment.order_vault, 0),
            _SUB_CREATE_ORDER.encode(trader, order.as_tuple()),
        ]
    )
    router = venue.deployment.subaccount_router or ""
    expected = (
        "InvalidReceiverForSubaccountOrder"
        if field == "receiver"
        else "InvalidCancellationReceiverForSubaccountOrder"
    )
    assert chain.revert_name(router, data, sender=sub.address) == expected
    assert chain.pending_orders(trader) == []


async def a_key_the_trader_never_added_cannot_act(chain: SubaccountChain, venue: GmxVenue) -> None:
    stranger = subaccount()
    trader = chain.trader.address
    key = chain.open_long()
    snapshot = await venue.snapshot(Watch((trader,), wallet=stranger.address))
    market_id = snapshot.position(venue.name, key).market_id
    plan = await venue.build(
        Close(venue.name, key, trader, market_id, WHY), snapshot, sender=stranger.address
    )
    (step,) = plan.steps
    assert step.to == venue.deployment.subaccount_router
    name = chain.revert_name(step.to, step.data, sender=stranger.address, value=step.value)
    assert name == "SubaccountNotAuthorized"


# --- `keeper run` and the manual commands as a subaccount --------------------------------------


def keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(chain: KeeperChain) -> None:
    key, trader, sub = chain.key, chain.trader.address, subaccount()
    asyncio.run(add_subaccount(chain, sub.address))
    chain.sign_with(sub)  # the keeper holds the subaccount key only
    # close_below raised to 0.015 (the example's 0.011 lies past GMX's liquidation price for
    # this position)
    guarded = chain.guard(chain.delegated_config(close_below="0.015"))
    wallet = chain.balance(chain.usdc, trader)
    sub_eth = chain.native_balance(sub.address)
    assert list(guarded.move(4200)) == []
    # 3,820: ratio 0.0183, under top_up_below 0.02: 828 USDC from the trader's wallet
    (top_up,) = guarded.move(3820)
    assert top_up.executed, top_up
    rows = intents(chain.journal)
    # no approval of the keeper's own: the trader approved the Router in the setup
    assert [(r.kind, r.status) for r in rows] == [("top_up", "done")]
    spent = rows[0].spend_amount
    assert spent == 828 * 10**6
    assert chain.position(key).collateral_amount == COLLATERAL * 10**6 + spent
    assert chain.balance(chain.usdc, trader) == wallet - spent
    assert ratio_at(chain.position(key), Decimal(3820)) >= Decimal("0.04")
    # 3,720: equity 13,328 + 10 (3,720 - 5,000) = 528 USDC, ratio 0.0142 under close_below;
    # GMX liquidates only below 3,717.2
    (close,) = guarded.move(3720)
    assert close.executed, close
    assert chain.position(key).size_in_usd == 0
    assert chain.balance(chain.usdc, trader) == wallet - spent + 528 * 10**6, "paid to the trader"
    assert chain.balance(chain.usdc, sub.address) == 0
    assert chain.native_balance(sub.address) < sub_eth, "the subaccount paid the gas"
    assert [(r.kind, r.status) for r in intents(chain.journal)] == [
        ("top_up", "done"),
        ("close", "done"),
    ]
    guarded.stop()


def keeper_run_refuses_to_start_for_an_account_that_never_added_it(chain: KeeperChain) -> None:
    chain.sign_with(subaccount())
    done = chain.cli("run", "--config", str(chain.delegated_config()), timeout=60)
    assert done.returncode != 0
    assert "accounts.delegated" in done.stderr, done.stderr
    assert "not a subaccount" in done.stderr, done.stderr


def gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(chain: KeeperChain) -> None:
    trader, sub = chain.trader.address, subaccount()
    chain.sign_with(sub)
    config = str(chain.delegated_config())
    args = ("gmx", "subaccount", "--config", config, "--max-actions", "5", "--days", "7")
    done = chain.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["delegate"] == sub.address
    (row,) = report["accounts"]
    assert row["account"] == trader
    assert not row["active"]
    assert any("not a subaccount" in p for p in row["problems"]), row
    router = chain.deployment.subaccount_router
    assert [tx["to"] for tx in row["setup"]] == [router, chain.usdc]
    for tx in row["setup"]:  # the trader's main key sends them
        chain.send(chain.trader, tx["to"], bytes.fromhex(tx["data"][2:]), value=tx["value"])

    after = json.loads(chain.cli(*args, "--json").stdout)["accounts"][0]
    assert after["active"], after
    assert after["actions_left"] == 5
    assert after["expires_at"] >= chain.block_time() + 7 * 86400 - 60
    text = chain.cli(*args)
    assert text.returncode == 0, text.stderr
    assert f"account {trader}: active" in text.stdout
    assert "cast send" in text.stdout
    assert bytes(sub.key).hex() not in text.stdout + text.stderr


def gmx_subaccount_refuses_bad_arguments(chain: KeeperChain) -> None:
    config = str(chain.delegated_config())
    for bad in (["--max-actions", "0"], ["--days", "-1"], ["--subaccount", "0x12"]):
        done = chain.cli("gmx", "subaccount", "--config", config, *bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert bad[0] in done.stderr, done.stderr
