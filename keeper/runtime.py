"""From a validated Config to running parts: RPC, venue, journal, signer, transactions,
metrics and alerts; shared by `keeper run` and the manual commands so both go through the
same journal and transaction manager."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Self

from keeper.alerts import Alerter, AlerterSettings, SinkSettings
from keeper.chain.blocks import BlockStream
from keeper.chain.jsonrpc import RpcError
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.chain.rpc import FailoverRpc
from keeper.chain.timeouts import TimeoutPolicy
from keeper.config import Config, ConfigError, Problem, RpcTimeoutConfig
from keeper.journal import Journal, JournalError, open_journal
from keeper.lease import Leadership, LeaseSettings, lease_scope
from keeper.loop import Keeper, LoopSettings, SequencerFeed, TickReport, sequencer_hold
from keeper.metrics import KeeperMetrics, MetricsServer, MetricsSettings
from keeper.model import Severity, Snapshot, Token
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.signer import KeySource, Signer, load_signer
from keeper.txs import ChainKind, FeePolicy, Rebuild, TxConfig, TxManager
from keeper.venues.base import Delegates, Delegation, Execution, Venue, VenueError, Watch
from keeper.venues.gains import GainsDeployment, GainsVenue
from keeper.venues.gmx import GmxDeployment, GmxVenue, gmx_rebuild
from keeper.venues.reference import ReferenceVenue

log = logging.getLogger(__name__)

_CHAIN_KINDS = {
    "plain": ChainKind.ETHEREUM,
    "op": ChainKind.OP_STACK,
    "arbitrum": ChainKind.ARBITRUM,
}


class StartError(Exception):
    """The keeper cannot start: the message says what to fix."""


def tx_config(config: Config) -> TxConfig:
    c = config.chain
    min_tip = min(10**8, c.max_priority_fee_per_gas)
    return TxConfig(
        chain_id=c.chain_id,
        fees=FeePolicy(
            max_fee_cap=c.max_fee_per_gas,
            min_priority_fee=min_tip,
            max_priority_fee=c.max_priority_fee_per_gas,
        ),
        chain_kind=_CHAIN_KINDS[c.kind],
        gas_margin=c.gas_margin,
        confirmations=max(1, c.confirmations),
        replace_after_blocks=c.replace_after_blocks,
        receipt_timeout=float(c.receipt_timeout_s),
        poll_interval=float(min(c.poll_interval_s, Decimal(1))),
    )


def key_source(config: Config, *, prompt: bool = False) -> KeySource:
    s = config.signer
    if s.source == "none" or config.mode == "observer":
        return KeySource(kind="none")
    if s.source == "env":
        return KeySource(kind="env", key_env=s.key_env, allow_raw_key=s.allow_raw_key)
    return KeySource(
        kind="keystore",
        keystore=str(s.keystore) if s.keystore else None,
        password_env=s.password_env,
        password_file=str(s.password_file) if s.password_file else None,
        prompt=prompt and not (s.password_env or s.password_file),
        allow_raw_key=s.allow_raw_key,
    )


def rpc_for(config: Config) -> FailoverRpc:
    """The config's endpoints behind one failover client (HTTP through `chain.transport`), with
    [rpc]'s timeouts, hedging and broadcasting."""
    r = config.rpc
    return FailoverRpc(
        list(config.chain.rpc),
        max_lag=config.chain.lag_blocks,
        transport=config.chain.transport,
        timeouts={kind: timeout_policy(t) for kind, t in r.timeouts.items()},
        hedge=r.hedge,
        hedge_floor=float(r.hedge_floor_s),
        broadcast=r.broadcast,
    )


def timeout_policy(t: RpcTimeoutConfig) -> TimeoutPolicy:
    """A kind of call's timeouts from [rpc] (seconds as floats: they only time requests)."""
    return TimeoutPolicy(
        floor=float(t.floor_s),
        cap=float(t.cap_s),
        multiple=float(t.multiple),
        initial=None if t.initial_s is None else float(t.initial_s),
    )


def rebuild_for(venue: Venue, journal: Journal) -> Rebuild | None:
    """The transaction manager's hook for replacements, where the venue needs one (GMX: the
    execution fee repriced at the replacement's gas price)."""
    return gmx_rebuild(venue, journal) if isinstance(venue, GmxVenue) else None


def thresholds_for(config: Config, venue_name: str) -> Thresholds:
    """The config's thresholds with override keys `KIND:ID` renamed to the adapter's
    `NAME:ID` (the policy looks overrides up by the venue's name)."""
    t = config.thresholds
    renamed: dict[str, MarketThresholds] = {}
    for key, value in t.overrides.items():
        prefix, colon, ident = key.partition(":")
        renamed[f"{venue_name}:{ident}" if colon and prefix == config.venue.kind else key] = value
    return Thresholds(default=t.default, overrides=renamed)


async def connect_venue(config: Config, rpc: FailoverRpc) -> Venue:
    """The config's venue on `rpc`."""
    v = config.venue
    return await open_venue(
        rpc,
        v.kind,
        addresses=v.addresses,
        preset=v.preset,
        chain_id=config.chain.chain_id,
        multicall=config.chain.multicall,
    )


async def open_venue(
    rpc: FailoverRpc,
    kind: str,
    *,
    addresses: Mapping[str, str],
    preset: str | None,
    chain_id: int,
    multicall: str | None,
) -> Venue:
    """A venue adapter by kind: "reference" (addresses exchange and lens), "gmx" (a preset,
    or every address of a GmxDeployment; with a preset, the addresses given replace its) or
    "gains" (a preset, or the diamond's address; the same rule)."""
    if kind == "reference":
        missing = {"exchange", "lens"} - set(addresses)
        if missing:
            raise VenueError(f"reference venue: missing address(es) {sorted(missing)}")
        return await ReferenceVenue.connect(
            rpc,
            exchange=addresses["exchange"],
            lens=addresses["lens"],
            multicall=multicall or MULTICALL3_ADDRESS,
        )
    if kind == "gmx":
        overrides = dict(addresses)
        deployment: GmxDeployment | str
        if preset is not None:
            deployment = preset
            if multicall is not None:
                overrides["multicall"] = multicall
        else:
            try:
                deployment = GmxDeployment(
                    chain_id=chain_id, multicall=multicall or MULTICALL3_ADDRESS, **overrides
                )
            except TypeError as exc:
                raise VenueError(f"gmx venue: {exc}") from None
            overrides = {}
        return await GmxVenue.connect(rpc, deployment, overrides=overrides or None)
    if kind == "gains":
        gains_overrides = dict(addresses)
        if multicall is not None:
            gains_overrides["multicall"] = multicall
        if preset is not None:
            return await GainsVenue.connect(rpc, preset, overrides=gains_overrides)
        if "diamond" not in gains_overrides:
            raise VenueError("gains venue: missing the diamond's address (or a preset)")
        return await GainsVenue.connect(
            rpc,
            GainsDeployment(
                chain_id=chain_id,
                diamond=gains_overrides.pop("diamond"),
                multicall=gains_overrides.pop("multicall", MULTICALL3_ADDRESS),
            ),
        )
    raise StartError(
        f"venue kind {kind!r}: this build has no adapter for it (reference, gmx, gains)"
    )


def pick_token(spec: str | None, tokens: tuple[Token, ...], *, source: str) -> Token:
    """The collateral token `spec` names among the venue's `tokens`: an address, or a symbol
    (case-insensitive, and it must name one token); None: the venue's only token. ConfigError
    naming budget.token otherwise, with the choices."""

    def fail(message: str) -> ConfigError:
        listed = ", ".join(f"{t.symbol} ({t.address})" for t in tokens) or "none"
        return ConfigError(source, [Problem("budget.token", f"{message}; this venue's: {listed}")])

    if spec is None:
        if len(tokens) == 1:
            return tokens[0]
        raise fail("missing; name the collateral token the wallet pays top-ups in")
    if spec.startswith("0x"):
        found = [t for t in tokens if t.address.lower() == spec.lower()]
    else:
        found = [t for t in tokens if t.symbol.lower() == spec.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise fail(f"{spec} is not a collateral token of the venue")
    raise fail(f"{spec} names {len(found)} tokens: give the address")


async def resolve_budget(config: Config, venue: Venue) -> tuple[Token, Budget]:
    """The token the wallet pays top-ups in, and the budget in its units. ConfigError naming
    budget.token / budget.token_decimals / an amount when the config does not fit the venue."""
    b = config.budget
    token = pick_token(b.token, await venue.collateral_tokens(), source=config.source)
    if b.token_decimals is not None and b.token_decimals != token.decimals:
        raise ConfigError(
            config.source,
            [
                Problem(
                    "budget.token_decimals",
                    f"{b.token_decimals}, but {token.symbol} ({token.address}) has "
                    f"{token.decimals} decimals on this chain",
                )
            ],
        )
    return token, b.in_units(token.decimals, source=config.source)


async def check_against_chain(config: Config) -> list[str]:
    """`config check --online`: connects as `keeper run` would (chain id, the venue's contracts,
    the budget's token and its decimals) without a key, and reads the watched positions once.
    Lines describing what was found; ConfigError for what does not fit the chain, StartError,
    RpcError or VenueError when the chain or venue cannot be reached or checked."""
    async with rpc_for(config) as rpc:
        chain_id = await rpc.chain_id()
        if chain_id != config.chain.chain_id:
            raise ConfigError(
                config.source,
                [
                    Problem(
                        "chain.chain_id",
                        f"{config.chain.chain_id}, but the RPC endpoints serve chain {chain_id}",
                    )
                ],
            )
        venue = await connect_venue(config, rpc)
        token, budget = await resolve_budget(config, venue)
        read = await venue.read(Watch(config.accounts, None, token.address))
        sequencer = await _check_sequencer(config, rpc, read.snapshot)
    snap = read.snapshot
    lines = [
        f"chain {chain_id} answers; venue {venue.name} connected",
        f"budget token: {token.symbol} ({token.address}), {token.decimals} decimals; "
        f"top-ups up to {budget.max_top_up_per_position} each, {budget.max_spend_per_day} a "
        f"day, {budget.reserve} in reserve",
        f"watched: {len(snap.positions)} position(s), {len(snap.accounts)} cross account(s) "
        f"at block {snap.block_number}",
    ]
    lines += [f"warning: {line}" for line in other_collateral(snap, token)]
    if sequencer is not None:
        lines.append(sequencer)
    lines += [f"warning: {issue.message}" for issue in read.issues]
    return lines


async def _check_sequencer(config: Config, rpc: FailoverRpc, snap: Snapshot) -> str | None:
    """The sequencer uptime feed read at the snapshot's block, as every tick of `keeper run`
    reads it; ConfigError naming chain.sequencer_uptime_feed when it does not answer as one."""
    address = config.chain.sequencer_uptime_feed
    if address is None:
        return None
    feed = SequencerFeed(address, config.chain.sequencer_grace_s)
    try:
        held = await sequencer_hold(rpc, feed, snap.block_number, snap.block_time)
    except RpcError as exc:
        problem = Problem(
            "chain.sequencer_uptime_feed",
            f"{address} does not answer as a Chainlink sequencer uptime feed on chain "
            f"{config.chain.chain_id} ({exc}): keeper run would fail on every block",
        )
        raise ConfigError(config.source, [problem]) from None
    return f"sequencer uptime feed {address}: {held or 'up'}"


@dataclass
class Runtime:
    """The parts of one keeper process; `async with open_runtime(...)` closes them."""

    config: Config
    rpc: FailoverRpc
    venue: Venue
    journal: Journal
    signer: Signer | None
    txs: TxManager | None
    budget_token: Token
    budget: Budget
    _closed: bool = field(default=False, repr=False)

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
        if self._closed:
            return
        self._closed = True
        self.journal.close()
        await self.rpc.close()

    @property
    def poll_interval(self) -> float:
        return float(self.config.chain.poll_interval_s)

    @property
    def watch(self) -> Watch:
        return Watch(
            self.config.accounts,
            self.signer.address if self.signer else None,
            self.budget_token.address,
            delegated=self.config.delegated and self.signer is not None,
        )


async def check_delegations(
    venue: Venue, accounts: Sequence[str], delegate: str, token: str
) -> list[Delegation]:
    """Each watched account's grant to `delegate` (accounts.delegated); StartError naming
    every account whose grant is not active, and why. What is active but soon unusable (few
    actions left, near expiry) is logged as a warning and returned for alerts."""
    if not isinstance(venue, Delegates):
        raise StartError(f"accounts.delegated: venue {venue.name} has no delegates")
    grants = [await venue.delegation(a, delegate, token=token) for a in accounts]
    inactive = [g for g in grants if not g.active]
    if inactive:
        lines = "; ".join(f"{g.account}: {', '.join(g.problems)}" for g in inactive)
        raise StartError(
            f"accounts.delegated: {delegate} cannot act for {lines} "
            "(the trader sets it up: `keeper delegate --config FILE` prints how)"
        )
    for g in grants:
        if g.problems:
            log.warning("delegation of %s to %s: %s", g.account, delegate, "; ".join(g.problems))
    return grants


async def open_runtime(
    config: Config,
    *,
    need_signer: bool,
    environ: Mapping[str, str] | None = None,
    prompt: bool = False,
    check_delegation: bool = True,
) -> Runtime:
    """Connects to the chain and the venue, opens the journal and loads the key.

    Checks the chain id against the config before anything else is done, and in delegated
    mode (accounts.delegated) that the key may act for every account (`check_delegation`).
    """
    env = os.environ if environ is None else environ
    source = key_source(config, prompt=prompt)
    if need_signer and source.kind == "none":
        raise StartError("this command sends transactions: the config has no key (signer)")
    signer = load_signer(source, config.chain.chain_id, environ=env)
    rpc = rpc_for(config)
    try:
        chain_id = await rpc.chain_id()
        if chain_id != config.chain.chain_id:
            raise StartError(
                f"chain.chain_id is {config.chain.chain_id} but the RPC endpoints serve chain "
                f"{chain_id}: wrong URL or wrong config"
            )
        venue = await connect_venue(config, rpc)
        token, budget = await resolve_budget(config, venue)
        if config.delegated and signer is not None and check_delegation:
            await check_delegations(venue, config.accounts, signer.address, token.address)
    except BaseException:
        await rpc.close()
        raise
    try:
        journal = open_journal(config.journal)
    except JournalError as exc:
        await rpc.close()
        raise StartError(str(exc)) from None
    delayed = [venue.name] if venue.execution is Execution.DELAYED else []
    txs = (
        TxManager(
            rpc,
            journal,
            signer,
            tx_config(config),
            delayed_venues=delayed,
            decode_error=venue.decode_error,
        )
        if signer is not None
        else None
    )
    return Runtime(
        config=config,
        rpc=rpc,
        venue=venue,
        journal=journal,
        signer=signer,
        txs=txs,
        budget_token=token,
        budget=budget,
    )


class OpsEvents:
    """The loop's reports to metrics and alerts."""

    def __init__(
        self, metrics: KeeperMetrics | None, alerter: Alerter | None, rpc: FailoverRpc
    ) -> None:
        self.metrics = metrics
        self.alerter = alerter
        self.rpc = rpc

    def tick_done(self, report: TickReport) -> None:
        m = self.metrics
        if m is None:
            return
        m.record_tick(
            block_number=report.block_number,
            block_time=report.block_time,
            seconds=report.seconds,
            positions=report.positions,
            accounts=report.accounts,
            lowest_ratio=report.lowest_ratio,
            skipped_blocks=report.skipped_blocks,
        )
        for sent in report.sent:
            m.action(sent.kind, sent.outcome)
        if report.wallet_balance is not None:
            m.wallet_balance("collateral", report.wallet_balance)
        if report.role is not None:
            m.leadership(report.role, report.epoch)
        m.observe_rpc(self.rpc.stats())

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        if self.alerter is not None:
            self.alerter.alert(code, severity, message, key=key)
        else:
            log.warning("alert %s (%s): %s", code, severity.value, message)


def alerter_for(config: Config, metrics: KeeperMetrics | None) -> Alerter | None:
    if not config.alerts:
        return None
    sinks = [
        SinkSettings(
            kind=s.kind,  # type: ignore[arg-type]
            url=s.url,
            token=s.token,
            chat_id=s.chat_id or "",
            name=f"{s.kind}-{i}",
            min_severity=Severity(s.min_severity),
            min_interval_s=float(s.min_interval_s),
        )
        for i, s in enumerate(config.alerts)
    ]
    return Alerter(
        sinks,
        AlerterSettings(dedup_window_s=float(config.alert_dedup_window_s)),
        observer=metrics.alert_delivered if metrics is not None else None,
    )


async def run_keeper(
    config: Config,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    stop_after_ticks: int | None = None,
) -> int:
    """`keeper run`: the loop with metrics and alerts until SIGINT/SIGTERM; the exit code."""
    dry = dry_run or config.dry_run
    if config.leader is not None and (dry or config.mode == "observer"):
        raise StartError(
            "a keeper that does not send (dry run, observer mode) would record its decisions in"
            " the journal the leader acts from, and take part in its lease: give it a journal"
            " of its own (keeper.journal = a SQLite file, or another database), or [leader]"
            " enabled = false with a journal no replica uses"
        )
    runtime = await open_runtime(config, need_signer=False, environ=environ)
    metrics: KeeperMetrics | None = None
    server: MetricsServer | None = None
    alerter: Alerter | None = None
    try:
        if config.metrics is not None:
            metrics = KeeperMetrics(
                MetricsSettings(
                    host=config.metrics.host,
                    port=config.metrics.port,
                    max_block_age_s=float(config.metrics.max_block_age_s),
                    max_rpc_silence_s=float(config.metrics.max_rpc_silence_s),
                ),
                rpc_source=runtime.rpc.stats,
            )
            server = MetricsServer(metrics)
            await server.start()
            log.info("metrics on %s", server.url)
        alerter = alerter_for(config, metrics)
        if alerter is not None:
            await alerter.start()
        await _check_watch(runtime)
        sequencer = (
            SequencerFeed(config.chain.sequencer_uptime_feed, config.chain.sequencer_grace_s)
            if config.chain.sequencer_uptime_feed
            else None
        )
        keeper = Keeper(
            venue=runtime.venue,
            rpc=runtime.rpc,
            stream=BlockStream(
                runtime.rpc,
                poll_interval=float(config.chain.poll_interval_s),
                heads=runtime.rpc.head_source(),
            ),
            journal=runtime.journal,
            watch=runtime.watch,
            thresholds=thresholds_for(config, runtime.venue.name),
            budget=runtime.budget,
            settings=LoopSettings(
                venue_token=runtime.budget_token.address,
                dry_run=dry,
                halt_file=config.halt_file,
                sequencer=sequencer,
                stop_after_ticks=stop_after_ticks,
                delegation_check_blocks=config.delegation_check_blocks,
            ),
            txs=None if dry else runtime.txs,
            events=OpsEvents(metrics, alerter, runtime.rpc),
            rebuild=rebuild_for(runtime.venue, runtime.journal),
            leader=leadership_for(config, runtime),
        )
        who = runtime.signer.address if runtime.signer else "no key"
        log.info(
            "keeper running on %s (chain %d) as %s, watching %d account(s)%s",
            ", ".join(config.chain.rpc_labels),
            config.chain.chain_id,
            who,
            len(config.accounts),
            " [dry run]" if dry else "",
        )
        return await keeper.run()
    finally:
        if alerter is not None:
            await alerter.close()
        if server is not None:
            await server.stop()
        await runtime.close()


def leadership_for(config: Config, runtime: Runtime) -> Leadership | None:
    """The replica's part in the leader lease ([leader]), for a keeper with a key."""
    if config.leader is None or runtime.signer is None:
        return None
    leadership = Leadership(
        runtime.journal,
        lease_scope(config.chain.chain_id, runtime.signer.address),
        LeaseSettings(config.leader.lease_ms, config.leader.lease_blocks),
    )
    log.info("replica %s: competing for the lease %s", leadership.owner, leadership.scope)
    return leadership


async def _check_watch(runtime: Runtime) -> None:
    """Warnings at start: threshold overrides for markets the venue does not have, and watched
    positions whose collateral is not the budget's token (reduce and close only)."""
    config = runtime.config
    read = await runtime.venue.read(runtime.watch)
    markets = {m.market_id for m in read.snapshot.markets}
    for key in config.thresholds.overrides:
        ident = key.partition(":")[2] or key
        if ident not in markets:
            log.warning(
                'thresholds.markets."%s": no market %s on this venue (markets: %s)',
                key,
                ident,
                ", ".join(sorted(markets)),
            )
    for line in other_collateral(read.snapshot, runtime.budget_token):
        log.warning("%s", line)


def other_collateral(snapshot: Snapshot, token: Token) -> list[str]:
    """A line for each position whose collateral is not `token` (the budget's): reduce and
    close only."""
    return [
        f"position {p.key} ({p.market_id} {p.side.value}) holds {p.collateral_token.symbol} as "
        f"collateral, the budget is in {token.symbol}: it is protected by reduce and close only"
        for p in snapshot.positions
        if p.collateral_token.address != token.address
    ]
