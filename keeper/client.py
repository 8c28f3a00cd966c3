"""The front door for scripts and notebooks: `connect()` or `Client.from_config()`.

A `Client` is one venue on one chain: it reads positions and markets, prepares actions (built
by the venue, simulated, priced, and previewed: margin ratio and liquidation price before ->
after), sends them through the same journal and nonce manager as `keeper run` (so a script
never races a running keeper), and can run the keeper itself inside your asyncio program
(`protect`). `keeper.sync` offers the same, blocking.

```python
import keeper
from web3 import AsyncWeb3

w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider("https://arb1.arbitrum.io/rpc"))
async with await keeper.connect(w3, venue="gmx", preset="arbitrum", accounts=[me]) as client:
    for view in await client.positions():
        print(view.symbol, view.position.side, view.margin_ratio, view.liquidation_price)
```
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from keeper.chain.blocks import BlockStream
from keeper.chain.jsonrpc import JsonRpc
from keeper.chain.rpc import FailoverRpc
from keeper.chain.web3rpc import Web3Rpc
from keeper.config import load
from keeper.journal import Journal
from keeper.loop import Keeper, LoopSettings, NoEvents, TickReport
from keeper.manual import ManualError, Plan, execute, prepare
from keeper.model import Market, Position, Snapshot, Token
from keeper.policy import Budget, Thresholds
from keeper.runtime import (
    StartError,
    check_delegations,
    open_runtime,
    open_venue,
    pick_token,
    rebuild_for,
    thresholds_for,
)
from keeper.signer import Signer
from keeper.txs import FeePolicy, Rebuild, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import Delegates, Delegation, Execution, Venue, Watch
from keeper.views import PositionView, position_views

__all__ = ["Client", "Outcome", "Step", "budget_in", "connect"]

Subject = PositionView | Position | str
"""What an action is on: a position (as `positions()` returns it), or a reference as the
command line takes it: a position key, `MARKET:SIDE` (`ETH:long`), or `cross`."""


@dataclass(frozen=True, slots=True)
class Step:
    """One intent of a sent plan (an approval, or the action): where it ended."""

    intent_id: int
    kind: str
    status: str
    tx_hash: str | None
    failure: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a sent plan ended: the action's `status` is the journal's (done, cancelled,
    expired, failed, obsolete; awaiting_execution when not waited for, or not final within the
    timeout); `steps` has each intent, approvals first, the action last."""

    steps: tuple[Step, ...]

    @property
    def status(self) -> str:
        return self.steps[-1].status

    @property
    def tx_hash(self) -> str | None:
        return self.steps[-1].tx_hash

    @property
    def failure(self) -> str | None:
        return self.steps[-1].failure

    @property
    def detail(self) -> str:
        return self.steps[-1].detail

    @property
    def done(self) -> bool:
        return self.status == "done"


class Client:
    """One venue on one chain; see the module's docstring. Make one with `connect()` or
    `Client.from_config()`; use it as an async context manager, or `await client.close()`."""

    def __init__(
        self,
        *,
        rpc: FailoverRpc,
        venue: Venue,
        accounts: Sequence[str],
        signer: Signer | None = None,
        journal: Journal | None = None,
        txs: TxManager | None = None,
        wallet_token: Token | None = None,
        budget: Budget | None = None,
        thresholds: Thresholds | None = None,
        poll_interval: float = 0.5,
        rebuild: Rebuild | None = None,
        owns_rpc: bool = True,
        delegated: bool = False,
        delegation_check_blocks: int = 100,
    ) -> None:
        self.rpc = rpc
        self.venue = venue
        self.accounts = tuple(accounts)
        self.signer = signer
        self._journal = journal
        self.txs = txs
        self.wallet_token = wallet_token
        self.budget = budget
        self.thresholds = thresholds
        self._poll_interval = poll_interval
        self._rebuild = rebuild
        self._owns_rpc = owns_rpc
        self.delegated = delegated
        self._delegation_check_blocks = delegation_check_blocks
        self._closed = False

    def __repr__(self) -> str:
        who = self.signer.address if self.signer else "no key"
        return f"Client({self.venue.name}, {len(self.accounts)} account(s), {who})"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    async def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        environ: Mapping[str, str] | None = None,
        prompt: bool = False,
    ) -> Client:
        """A client of a `keeper run` config file: its chain, venue, accounts, key (when it
        has one), journal, thresholds and budget. ConfigError, StartError, SignerError,
        RpcError or VenueError when it cannot start."""
        config = load(Path(path), environ=environ)
        runtime = await open_runtime(config, need_signer=False, environ=environ, prompt=prompt)
        return cls(
            rpc=runtime.rpc,
            venue=runtime.venue,
            accounts=config.accounts,
            signer=runtime.signer,
            journal=runtime.journal,
            txs=runtime.txs,
            wallet_token=runtime.budget_token,
            budget=runtime.budget,
            thresholds=thresholds_for(config, runtime.venue.name),
            poll_interval=runtime.poll_interval,
            rebuild=rebuild_for(runtime.venue, runtime.journal),
            delegated=config.delegated,
            delegation_check_blocks=config.delegation_check_blocks,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the journal and the endpoints this client opened (not an AsyncWeb3 of
        yours: its provider stays as you left it)."""
        if self._closed:
            return
        self._closed = True
        if self._journal is not None:
            self._journal.close()
        if self._owns_rpc:
            await self.rpc.close()

    # -- the Session a manual action needs ------------------------------------------------------

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise ManualError(
                "this client has no journal: connect with a signer (or journal=...) to act"
            )
        return self._journal

    @property
    def watch(self) -> Watch:
        return Watch(
            self.accounts,
            self.signer.address if self.signer else None,
            self.wallet_token.address if self.wallet_token else None,
            delegated=self.delegated and self.signer is not None,
        )

    @property
    def poll_interval(self) -> float:
        return self._poll_interval

    # -- reads --------------------------------------------------------------------------------

    async def snapshot(self, *, block: int | None = None) -> Snapshot:
        """The watched accounts (and the signer's wallet) at `block` (default: latest)."""
        return (await self.venue.read(self.watch, block=block)).snapshot

    async def positions(
        self, account: str | None = None, *, block: int | None = None
    ) -> list[PositionView]:
        """The positions of the watched accounts, or of `account`, with their margin ratio,
        liquidation price, signed distance to it and equity, at `block`."""
        watch = self.watch
        if account is not None:
            watch = replace(watch, accounts=(to_checksum_address(account),))
        snap = (await self.venue.read(watch, block=block)).snapshot
        return position_views(snap)

    async def delegations(self) -> list[Delegation]:
        """Each watched account's grant to this client's key (delegated mode: the key acts
        for accounts that named it, within the limits they set), at the latest block."""
        if self.signer is None:
            raise ManualError("delegations: this client has no key (connect with a signer)")
        if not isinstance(self.venue, Delegates):
            raise ManualError(f"delegations: venue {self.venue.name} has no delegates")
        token = self.wallet_token.address if self.wallet_token else None
        return [
            await self.venue.delegation(a, self.signer.address, token=token) for a in self.accounts
        ]

    async def markets(self, *, block: int | None = None) -> list[Market]:
        """Every market of the venue: mark price, maintenance rate, funding, at `block`."""
        return list(await self.venue.markets(block=block))

    # -- writes -------------------------------------------------------------------------------

    async def prepare_top_up(self, position: Subject, amount: Decimal | int | str) -> Plan:
        """Add `amount` (whole tokens of the collateral) to a position or cross account."""
        return await self.prepare("top_up", position, amount)

    async def prepare_withdraw(self, position: Subject, amount: Decimal | int | str) -> Plan:
        """Take `amount` of collateral back from a position or cross account."""
        return await self.prepare("withdraw", position, amount)

    async def prepare_reduce(self, position: Subject, size: Decimal | int | str) -> Plan:
        """Cut a position's size by `size` index tokens."""
        return await self.prepare("reduce", position, size)

    async def prepare_close(self, position: Subject) -> Plan:
        """Close a whole position."""
        return await self.prepare("close", position)

    async def send(self, plan: Plan, *, wait: bool = True, timeout: float = 900.0) -> Outcome:
        """Records the plan's intent in the journal (refused while one is open on the same
        position, from a running keeper say), sends it, and follows it to its final state: on
        a venue that executes later (GMX), until the order executes, is cancelled or expires
        (at most `timeout` seconds; `wait=False` returns once it is mined)."""
        if not plan.ok:
            raise ManualError(f"{plan.action.kind} on {plan.subject}: the plan is not ok")
        results = await execute(self, plan, wait=wait, wait_timeout=timeout)
        return Outcome(
            tuple(
                Step(
                    intent_id=sent.intent_id,
                    kind=sent.kind,
                    status=outcome.status.value if outcome is not None else sent.outcome,
                    tx_hash=outcome.tx_hash if outcome is not None else None,
                    failure=outcome.failure.value if outcome and outcome.failure else None,
                    detail=outcome.detail if outcome is not None else sent.detail,
                )
                for sent, outcome in results
            )
        )

    async def prepare(
        self, kind: str, position: Subject, amount: Decimal | int | str | None = None
    ) -> Plan:
        """`prepare_top_up` and the others by the action's kind: top_up, withdraw, reduce
        (amount: the size to cut), close."""
        if self.txs is None:
            raise ManualError(f"{kind}: this client has no key (connect with a signer)")
        ref = position if isinstance(position, str) else position.key
        return await prepare(self, kind, ref, None if amount is None else str(amount))

    # -- the keeper, embedded -----------------------------------------------------------------

    async def protect(
        self,
        *,
        thresholds: Thresholds | None = None,
        budget: Budget | None = None,
        dry_run: bool = False,
        ticks: int | None = None,
        halt_file: Path | None = None,
    ) -> AsyncGenerator[TickReport, None]:
        """The keeper's loop (`keeper run`'s) on this client's accounts, one `TickReport` per
        block as it goes: read, decide, act, record. Thresholds and budget default to the
        config's (`from_config`). Without a key, or with `dry_run`, it decides and records
        but sends nothing. Stops after `ticks` blocks, or when you stop iterating (break, or
        cancel the task): the bookkeeping of what is in flight is finished first."""
        thresholds = thresholds or self.thresholds
        budget = budget or self.budget
        if thresholds is None or budget is None:
            raise ValueError("protect: give thresholds and budget (or use Client.from_config)")
        token = self.wallet_token or (await self.snapshot()).wallet.token
        reports: asyncio.Queue[TickReport | BaseException | None] = asyncio.Queue()
        stream = BlockStream(
            self.rpc, poll_interval=self._poll_interval, heads=self.rpc.head_source()
        )
        keeper = Keeper(
            venue=self.venue,
            rpc=self.rpc,
            stream=stream,
            journal=self.journal,
            watch=self.watch,
            thresholds=thresholds,
            budget=budget,
            settings=LoopSettings(
                venue_token=token.address,
                dry_run=dry_run,
                halt_file=halt_file,
                stop_after_ticks=ticks,
                delegation_check_blocks=self._delegation_check_blocks if self.delegated else 0,
            ),
            txs=None if dry_run else self.txs,
            events=_Reports(reports),
            rebuild=self._rebuild,
        )

        async def run() -> None:
            try:
                code = await keeper.run(signals=False)
                if code != 0:
                    reports.put_nowait(RuntimeError(f"the keeper loop stopped with code {code}"))
            finally:
                reports.put_nowait(None)  # the end
                await stream.close()

        task = asyncio.create_task(run())
        try:
            while True:
                item = await reports.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            keeper.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Reports(NoEvents):
    """Tick reports into the queue `protect` yields from; alerts are logged."""

    def __init__(self, queue: asyncio.Queue[TickReport | BaseException | None]) -> None:
        self.queue = queue

    def tick_done(self, report: TickReport) -> None:
        self.queue.put_nowait(report)


async def connect(
    source: AsyncWeb3[Any] | JsonRpc | str | Sequence[str],
    *,
    venue: str = "reference",
    preset: str | None = None,
    addresses: Mapping[str, str] | None = None,
    accounts: Sequence[str] = (),
    signer: Signer | LocalAccount | None = None,
    journal: str | os.PathLike[str] | None = None,
    budget_token: str | None = None,
    chain_id: int | None = None,
    multicall: str | None = None,
    max_fee_gwei: Decimal | int | str = 100,
    transport: str = "aiohttp",
    delegated: bool = False,
) -> Client:
    """A client of `venue` over `source`: an `AsyncWeb3` of yours (its provider as you set it
    up: headers, WebSocket, IPC), a JsonRpc, or endpoint URLs / IPC paths (failing over in
    order; HTTP through `transport`).

    `venue` is "reference" (`addresses`: exchange and lens), "gmx" (`preset` "arbitrum" or
    "avalanche", `addresses` replacing the preset's, or all of them without one) or "gains"
    (`preset` "arbitrum", "base", ..., or `addresses` {"diamond": ...}). `accounts` are
    watched; `signer` (a Signer, or an eth-account LocalAccount) is the key that acts, for its
    own positions, or with `delegated` as the delegate of every account (a GMX subaccount, a
    reference-exchange operator, a Gains trading delegate: each grant is checked here,
    ManualError when one is not active;
    top-ups are then paid from each account's own wallet); with it, `journal` (default keeper-
    journal.sqlite) records every action, shared with any `keeper run` using the same file.
    `budget_token` names the token the wallet pays top-ups in (needed where positions hold
    several). `chain_id`, when given, must be the endpoints'. `multicall` is the Multicall3 to
    batch through (default: a GMX preset's own, else the canonical 0xcA11...). `max_fee_gwei`
    caps what a transaction offers per gas.
    """
    owns = True
    checked = [to_checksum_address(a) for a in accounts]
    if isinstance(source, AsyncWeb3):
        rpc = FailoverRpc([Web3Rpc(source)])
    elif isinstance(source, FailoverRpc):
        rpc, owns = source, False
    elif isinstance(source, str):
        rpc = FailoverRpc([source], transport=transport)
    elif isinstance(source, JsonRpc) and not isinstance(source, Sequence):
        rpc = FailoverRpc([source])
    else:
        rpc = FailoverRpc(list(source), transport=transport)
    try:
        actual = await rpc.chain_id()
        if chain_id is not None and actual != chain_id:
            raise ManualError(f"chain_id is {chain_id} but the endpoints serve chain {actual}")
        opened = await open_venue(
            rpc,
            venue,
            addresses=dict(addresses or {}),
            preset=preset,
            chain_id=actual,
            multicall=multicall,
        )
        tokens = await opened.collateral_tokens()
        token = (
            pick_token(budget_token, tokens, source="connect")
            if budget_token is not None or len(tokens) == 1
            else None
        )
        key = Signer(signer) if isinstance(signer, LocalAccount) else signer
        log_path = Path(journal) if journal is not None else None
        book: Journal | None = None
        txs: TxManager | None = None
        if key is not None or log_path is not None:
            book = Journal(log_path or Path("keeper-journal.sqlite"))
        if key is not None and book is not None:
            fee_cap = int(Decimal(max_fee_gwei) * 10**9)
            txs = TxManager(
                rpc,
                book,
                key,
                TxConfig(chain_id=actual, fees=FeePolicy(fee_cap)),
                delayed_venues=[opened.name] if opened.execution is Execution.DELAYED else [],
                decode_error=opened.decode_error,
            )
        if delegated:
            if key is None or token is None:
                raise ManualError("connect: delegated needs a signer and the budget token")
            try:
                await check_delegations(opened, checked, key.address, token.address)
            except StartError as exc:
                raise ManualError(f"connect: {exc}") from None
    except BaseException:
        if owns:
            await rpc.close()
        raise
    return Client(
        rpc=rpc,
        venue=opened,
        accounts=checked,
        signer=key,
        journal=book,
        txs=txs,
        wallet_token=token,
        rebuild=rebuild_for(opened, book) if book is not None else None,
        owns_rpc=owns,
        delegated=delegated,
    )


def budget_in(token: Token, **amounts: Decimal | int | str) -> Budget:
    """A Budget in whole tokens of `token`: max_top_up_per_position, max_spend_per_day,
    reserve (e.g. `budget_in(usdc, max_top_up_per_position=500, max_spend_per_day=2000,
    reserve=100)`)."""
    return Budget(
        **{
            name: TokenAmount.from_value_exact(Decimal(str(value)), token.decimals)
            for name, value in amounts.items()
        }
    )
