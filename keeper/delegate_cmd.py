"""`keeper delegate` (and GMX's name for it, `keeper gmx subaccount`): the grant a trader
gives the keeper's key, shown and set up.

In delegated mode (accounts.delegated) the keeper's key is not a trader's: it is a GMX
subaccount, or an operator of the reference exchange, that each watched account named with
limits (actions, expiry, what top-ups may take from its wallet), and whose every action pays
only ever to the trader. This module reads each account's grant to that key, builds the
transactions the trader sends with the main key to give it (`Delegates.delegation_setup`),
and, when the main key is supplied, sends them through the journal and the transaction
manager like every other transaction of the keeper (simulated first, priced within the
config's fee caps, followed to a receipt, never sent twice for one grant).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from keeper.config import Config
from keeper.journal import IntentStatus
from keeper.runtime import Runtime, StartError, open_runtime, tx_config
from keeper.signer import Signer
from keeper.txs import TxManager, TxOutcome
from keeper.txs import TxRequest as JournalTx
from keeper.venues.base import Delegates, TxRequest, VenueError

__all__ = ["SETUP_KIND", "DelegateOptions", "delegation_report"]

SETUP_KIND = "delegation_setup"
"""The journal's kind for a grant's setup transactions (sent with the trader's main key)."""

DAY = 86_400


@dataclass(frozen=True, slots=True)
class DelegateOptions:
    """What the trader grants: `max_actions` actions for `days` days from the latest block;
    top-ups from its wallet up to `top_up_limit` whole tokens of the budget's token (None:
    unlimited); on GMX,
    up to `auto_top_up` wei of WNT paid back to the subaccount per action for its gas."""

    delegate: str | None = None  # default: the config's signer
    max_actions: int = 1000
    days: int = 90
    top_up_limit: Decimal | None = None
    auto_top_up: int = 0
    main_key: Signer | None = None  # sends the setup for the account it is


async def delegation_report(config: Config, options: DelegateOptions) -> dict[str, Any]:
    """Each watched account's grant to the delegate, the setup it would send, and with
    `options.main_key` the outcome of sending it for that key's account (one JSON-ready
    dict). StartError, VenueError, RpcError or SignerError when it cannot be done."""
    runtime = await open_runtime(config, need_signer=False, prompt=True, check_delegation=False)
    try:
        return await _report(runtime, options)
    finally:
        await runtime.close()


async def _report(runtime: Runtime, options: DelegateOptions) -> dict[str, Any]:
    venue = runtime.venue
    config = runtime.config
    if not isinstance(venue, Delegates):
        raise VenueError(f"venue {venue.name} has no delegates")
    if options.delegate is not None:
        delegate = options.delegate
    elif runtime.signer is not None:
        delegate = runtime.signer.address
    else:
        raise StartError("no delegate: the config has no signer; give the delegate's address")
    main = options.main_key
    if main is not None and main.address.lower() not in {a.lower() for a in config.accounts}:
        raise StartError(
            f"the main key is {main.address}, none of the watched accounts "
            f"({', '.join(config.accounts)}): it can only set up its own grant"
        )
    if main is not None and main.address.lower() == delegate.lower():
        raise StartError("the main key is the delegate itself: the delegate must be another key")
    head = await runtime.rpc.get_block("latest")
    expires_at = head.timestamp + options.days * DAY
    token = runtime.budget_token
    extra: dict[str, int] = {}
    if options.top_up_limit is not None:
        raw = options.top_up_limit * 10**token.decimals
        if raw != raw.to_integral_value():
            raise VenueError(
                f"top-up limit {options.top_up_limit}: {token.symbol} has {token.decimals} decimals"
            )
        extra["top_up_allowance"] = int(raw)
    if options.auto_top_up:
        extra["auto_top_up"] = options.auto_top_up
    rows = []
    for account in config.accounts:
        setup = await venue.delegation_setup(
            account,
            delegate,
            max_actions=options.max_actions,
            expires_at=expires_at,
            token=token.address,
            **extra,
        )
        sent: list[dict[str, Any]] | None = None
        if main is not None and main.address.lower() == account.lower():
            sent = await _send(runtime, main, account, delegate, setup)
        grant = await venue.delegation(account, delegate, token=token.address)
        rows.append(
            {
                "account": account,
                "active": grant.active,
                "actions_left": grant.actions_left,
                "expires_at": grant.expires_at,
                "top_up_left": str(grant.top_up_left) if grant.top_up_left is not None else None,
                "problems": list(grant.problems),
                "setup": [_tx_json(tx) for tx in setup],
                "sent": sent,
            }
        )
    return {
        "venue": venue.name,
        "delegate": delegate,
        "chain_id": config.chain.chain_id,
        "token": token.symbol,
        "accounts": rows,
    }


def _tx_json(tx: TxRequest) -> dict[str, Any]:
    return {
        "to": tx.to,
        "value": tx.value,
        "data": "0x" + tx.data.hex(),
        "description": tx.description,
    }


async def _send(
    runtime: Runtime, main: Signer, account: str, delegate: str, setup: tuple[TxRequest, ...]
) -> list[dict[str, Any]]:
    """The setup sent in order with the main key, each step one journal intent that is
    followed to its receipt; stops at the first that does not succeed (its outcome is the
    last of the list). StartError when a setup for this grant is still open in the journal."""
    journal = runtime.journal
    txs = TxManager(runtime.rpc, journal, main, tx_config(runtime.config))
    head = await runtime.rpc.block_number()
    out: list[dict[str, Any]] = []
    for i, tx in enumerate(setup):
        intent, new = journal.open_intent(
            runtime.venue.name,
            f"{SETUP_KIND}:{account}:{delegate}:{i}",
            SETUP_KIND,
            {"kind": SETUP_KIND, "account": account, "delegate": delegate, "step": i},
            block=head,
            reason=f"{tx.description} (sent with {account}'s own key)",
        )
        if not new:
            raise StartError(
                f"a setup of {delegate} for {account} is still open in the journal "
                f"(intent {intent.id}, {intent.status.value}): see `keeper history`"
            )
        outcome = await txs.send(
            JournalTx(intent.id, tx.to, tx.data, tx.value, gas_headroom=tx.gas_headroom)
        )
        out.append(_outcome_json(tx, outcome))
        if outcome.status is not IntentStatus.DONE:
            break
    return out


def _outcome_json(tx: TxRequest, outcome: TxOutcome) -> dict[str, Any]:
    return {
        "description": tx.description,
        "status": outcome.status.value,
        "tx_hash": outcome.tx_hash,
        "failure": outcome.failure.value if outcome.failure else None,
        "detail": outcome.detail,
    }
