"""The transaction manager: simulate, price, sign, journal, send, replace, cancel, confirm.

One `TxManager` per (chain, sender). It speaks our JSON-RPC client (`ChainReads`: a
FailoverRpc, or `Reads` over one endpoint) and signs with a `keeper.signer.Signer`.

- `submit(request)`: simulate with eth_call (a revert is decoded and recorded, never sent),
  estimate gas (times a margin), price EIP-1559 fees from eth_feeHistory under the fee cap
  (above it nothing is sent: failure `fee_cap`), add the L1 data fee on OP-stack chains,
  then allocate a nonce, sign and commit in one journal transaction, and only then broadcast.
  "nonce too low" / "already known" / an underpriced clash with a foreign pending transaction
  resync the nonce and sign again. Several submits in one block get consecutive nonces
  without waiting for each other.
- `resolve(intent_id)`: await the receipt; rebroadcast what the node does not know; replace a
  transaction not mined within `replace_after_blocks` at the same nonce with fees bumped at
  least 12.5% (up to the cap; a `rebuild` hook may rebuild its calldata); cancel with a
  zero-value self-transfer when the caller's `still_wanted` check says the action is
  pointless (intent obsolete); detect a nonce taken by an outside sender and send again at a
  fresh nonce; count confirmations, and put an intent whose block was reorganised away back
  to sent. Final after `confirmations` blocks: done (or awaiting_execution on a venue with
  delayed execution), failed when the receipt says reverted, obsolete for a cancel.
- `reconcile()`: on start, resolve every open intent of this sender (rebroadcasting what was
  signed but maybe never sent) and expire stale ones that were decided but never signed.

Crash points for tests: KEEPER_CRASH_AT=after_journal_commit|after_broadcast|after_receipt
kills the process with SIGKILL at that step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.chain.jsonrpc import RpcError, RpcResponseError, RpcSendOutcomeUnknownError
from keeper.chain.revert import RevertReason, decode_revert, is_revert, revert_data
from keeper.chain.rpc import ChainReads
from keeper.journal import (
    OPEN_STATUSES,
    Intent,
    IntentStatus,
    Journal,
    JournalConflictError,
    JournalError,
    JournalFencedError,
    JournalUnavailableError,
    TxKind,
    TxRecord,
    TxStatus,
    UnsignedTx,
)
from keeper.signer import Signer

log = logging.getLogger(__name__)

CRASH_ENV = "KEEPER_CRASH_AT"
CRASH_POINTS = ("after_journal_commit", "after_broadcast", "after_receipt")
STOP_ENV = "KEEPER_STOP_AT"
STOP_POINTS = ("before_sign", *CRASH_POINTS)

GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
NODE_INTERFACE = "0x00000000000000000000000000000000000000C8"
_GET_L1_FEE = keccak(b"getL1Fee(bytes)")[:4]
_GAS_ESTIMATE_L1 = keccak(b"gasEstimateL1Component(address,bool,bytes)")[:4]
MIN_BUMP = Decimal("0.125")
TRANSFER_GAS = 21_000
# A throwaway key, used only to size a transaction for the L1 fee before the real signature.
_SIZING_ACCOUNT = Account.from_key(b"\x01" * 32)

_LIVE = (TxStatus.SIGNED, TxStatus.SENT, TxStatus.MINED)
# A node's refusals of a fee below the block's base fee (not a clash at the nonce).
_FEE_TOO_LOW = ("less than block base fee", "fee cap less than", "fee too low", "feecap too low")


def crash_point(name: str) -> None:
    """Kill this process (SIGKILL, no cleanup) when KEEPER_CRASH_AT names this step; stop it
    (SIGSTOP, as a paused VM or a long GC would, until someone sends SIGCONT) when
    KEEPER_STOP_AT does. For tests of crashes and of late leaders."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("crash point %s reached: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == name:
        log.warning("stop point %s reached: stopping the process", name)
        os.kill(os.getpid(), signal.SIGSTOP)


class ChainKind(StrEnum):
    """How the chain charges for L1 data: not at all, OP-stack oracle, Arbitrum's gas."""

    ETHEREUM = "ethereum"
    OP_STACK = "op_stack"
    ARBITRUM = "arbitrum"


class Failure(StrEnum):
    """Why an intent failed (the journal's `failure` column starts with this)."""

    SIMULATION_REVERTED = "simulation_reverted"
    FEE_CAP = "fee_cap"  # fees above the cap: the caller raises an alert
    COST_CAP = "cost_cap"  # the whole cost (gas at max fee + L1 fee + value) above its cap
    SEND_REJECTED = "send_rejected"
    REVERTED = "reverted"  # mined, but the receipt says it reverted
    NONCE_RESYNC = "nonce_resync"  # the nonce kept being taken


ALERT_FAILURES = frozenset({Failure.FEE_CAP, Failure.COST_CAP, Failure.NONCE_RESYNC})


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """EIP-1559 pricing: the tip from the feeHistory percentile, max fee from the base fee.

    `max_fee_cap` (wei per gas) is the most the keeper ever offers; `max_cost` (wei), when
    set, caps gas_limit * max_fee + L1 fee + value. `bump` >= 0.125 is the replacement step.
    """

    max_fee_cap: int
    min_priority_fee: int = 10**8
    max_priority_fee: int = 5 * 10**9
    reward_percentile: int = 50
    history_blocks: int = 10
    base_fee_multiplier: int = 2
    bump: Decimal = MIN_BUMP
    max_cost: int | None = None

    def __post_init__(self) -> None:
        if self.max_fee_cap <= 0:
            raise ValueError(f"max_fee_cap must be positive, got {self.max_fee_cap}")
        if not 0 <= self.min_priority_fee <= self.max_priority_fee:
            raise ValueError("min_priority_fee must be in [0, max_priority_fee]")
        if self.bump < MIN_BUMP:
            raise ValueError(
                f"bump must be at least {MIN_BUMP} (nodes refuse less), got {self.bump}"
            )
        if not 0 <= self.reward_percentile <= 100:
            raise ValueError("reward_percentile must be in [0, 100]")
        if self.history_blocks < 1 or self.base_fee_multiplier < 1:
            raise ValueError("history_blocks and base_fee_multiplier must be at least 1")


@dataclass(frozen=True, slots=True)
class TxConfig:
    """Per-chain settings of the transaction manager."""

    chain_id: int
    fees: FeePolicy
    chain_kind: ChainKind = ChainKind.ETHEREUM
    gas_margin: Decimal = Decimal("1.2")
    # added after the margin: state can change between estimate and inclusion (a funding
    # index that was zero becomes non-zero: 20k gas per slot), which a ratio alone misses
    gas_headroom: int = 50_000
    confirmations: int = 1  # final when the receipt's block is this deep (1: included)
    replace_after_blocks: int = 3
    receipt_timeout: float = 120.0  # seconds resolve() waits before returning "still open"
    poll_interval: float = 0.2
    max_resyncs: int = 3
    simulate_block: str = "pending"
    stale_decided_ms: int = 60_000  # reconcile expires intents decided but unsigned this long

    def __post_init__(self) -> None:
        if self.gas_margin < 1:
            raise ValueError(f"gas_margin must be >= 1, got {self.gas_margin}")
        if self.gas_headroom < 0:
            raise ValueError(f"gas_headroom must be >= 0, got {self.gas_headroom}")
        if self.confirmations < 1 or self.replace_after_blocks < 1:
            raise ValueError("confirmations and replace_after_blocks must be at least 1")


@dataclass(frozen=True, slots=True)
class TxRequest:
    """What a venue adapter asks to send, for one journal intent."""

    intent_id: int
    to: str
    data: bytes = b""
    value: int = 0
    gas_headroom: int = 0  # the venue's own, on top of the config's (see venues.base.TxRequest)


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee: int
    priority_fee: int
    base_fee: int


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """Where an intent stands after submit/resolve. `failure` set means it failed for that."""

    intent_id: int
    status: IntentStatus
    failure: Failure | None = None
    detail: str = ""
    tx_hash: str | None = None
    nonce: int | None = None
    revert: RevertReason | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def needs_alert(self) -> bool:
        return self.failure in ALERT_FAILURES


class FeeCapExceededError(Exception):
    """The fees the chain asks for exceed the configured cap."""

    def __init__(self, needed: int, cap: int) -> None:
        self.needed = needed
        self.cap = cap
        super().__init__(f"base fee + tip {needed} wei/gas exceeds max_fee_cap {cap}")


Rebuild = Callable[[Intent, Fees], Awaitable[TxRequest]]
StillWanted = Callable[[Intent], Awaitable[bool]]


def _ceil_mul(value: int, factor: Decimal) -> int:
    return int((Decimal(value) * factor).to_integral_value(rounding=ROUND_CEILING))


def price_fees(history: dict[str, Any], policy: FeePolicy) -> Fees:
    """Fees from an eth_feeHistory answer; FeeCapExceededError when they pass the cap."""
    try:
        base = int(history["baseFeePerGas"][-1], 16)
        rewards = sorted(
            int(r[0], 16) for r in history.get("reward") or [] if r and int(r[0], 16) > 0
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RpcError("eth_feeHistory", f"malformed answer ({exc})") from None
    tip = rewards[len(rewards) // 2] if rewards else policy.min_priority_fee
    tip = min(max(tip, policy.min_priority_fee), policy.max_priority_fee)
    if base + tip > policy.max_fee_cap:
        raise FeeCapExceededError(base + tip, policy.max_fee_cap)
    max_fee = min(base * policy.base_fee_multiplier + tip, policy.max_fee_cap)
    return Fees(max_fee=max_fee, priority_fee=tip, base_fee=base)


def bump_fees(old: TxRecord, fresh: Fees | None, policy: FeePolicy) -> Fees | None:
    """Replacement fees: both at least `bump` above the old ones, and no lower than fresh
    ones; None when the cap leaves no room for a large enough bump."""
    factor = 1 + policy.bump
    tip = _ceil_mul(old.priority_fee, factor)
    max_fee = _ceil_mul(old.max_fee, factor)
    if fresh is not None:
        tip = max(tip, fresh.priority_fee)
        max_fee = max(max_fee, fresh.max_fee)
    max_fee = min(max_fee, policy.max_fee_cap)
    if max_fee < _ceil_mul(old.max_fee, factor) or tip > max_fee:
        return None
    return Fees(max_fee=max_fee, priority_fee=tip, base_fee=fresh.base_fee if fresh else 0)


def _quantity(value: Any) -> int | None:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else None


class TxManager:
    """Sends intents' transactions for one sender on one chain; see the module docstring."""

    def __init__(
        self,
        rpc: ChainReads,
        journal: Journal,
        signer: Signer,
        config: TxConfig,
        *,
        delayed_venues: Collection[str] = (),
        decode_error: Callable[[bytes], RevertReason] | None = None,
    ) -> None:
        """`decode_error`: the venue's decoder of revert data (`Venue.decode_error`), so that a
        simulation's revert is named by the venue's own errors; without it reverts are decoded
        with the shipped ABIs."""
        self.rpc = rpc
        self.journal = journal
        self.signer = signer
        self.config = config
        self.sender = signer.address
        self.delayed_venues = frozenset(delayed_venues)
        self.decode_error = decode_error
        # replicas: called right before each broadcast; raises JournalFencedError when this
        # process no longer holds the leader lease (keeper.lease.Leadership.check)
        self.guard: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"TxManager(chain {self.config.chain_id}, {self.sender})"

    # -- pricing and simulation --

    async def fees(self) -> Fees:
        """Current EIP-1559 fees under the cap; FeeCapExceededError above it."""
        p = self.config.fees
        history = await self.rpc.request(
            "eth_feeHistory", [hex(p.history_blocks), "latest", [p.reward_percentile]]
        )
        if not isinstance(history, dict):
            raise RpcError("eth_feeHistory", f"answer is not an object: {history!r:.80}")
        return price_fees(history, p)

    def _revert(self, exc: RpcResponseError) -> RevertReason:
        data = revert_data(exc)
        if self.decode_error is not None and data is not None:
            return self.decode_error(data)
        return decode_revert(data)

    async def simulate(self, request: TxRequest) -> RevertReason | None:
        """eth_call the request as the sender: None if it succeeds, else the decoded revert."""
        try:
            await self.rpc.eth_call(
                request.to,
                request.data,
                self.config.simulate_block,
                sender=self.sender,
                value=request.value,
            )
        except RpcResponseError as exc:
            if not is_revert(exc):
                raise
            return self._revert(exc)
        return None

    async def estimate_gas(self, request: TxRequest) -> int:
        """The gas estimate times the margin, plus the headroom. A revert raises
        RpcResponseError."""
        tx = {
            "from": self.sender,
            "to": request.to,
            "data": "0x" + request.data.hex(),
            "value": hex(request.value),
        }
        estimate = _quantity(await self.rpc.request("eth_estimateGas", [tx]))
        if estimate is None:
            raise RpcError("eth_estimateGas", "answer is not a quantity")
        headroom = self.config.gas_headroom + request.gas_headroom
        return _ceil_mul(estimate, self.config.gas_margin) + headroom

    def _tx_dict(self, request: TxRequest, nonce: int, fees: Fees, gas: int) -> dict[str, Any]:
        return {
            "type": 2,
            "chainId": self.config.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(request.to),
            "value": request.value,
            "data": request.data,
            "gas": gas,
            "maxFeePerGas": fees.max_fee,
            "maxPriorityFeePerGas": fees.priority_fee,
        }

    async def l1_fee(self, request: TxRequest, fees: Fees, gas: int, nonce: int) -> int:
        """The L1 data fee (wei) the chain adds outside gas: OP-stack only (0 elsewhere).

        On Arbitrum the L1 component is part of the gas estimate already; it is logged.
        """
        kind = self.config.chain_kind
        if kind is ChainKind.ETHEREUM:
            return 0
        if kind is ChainKind.OP_STACK:
            sized = _SIZING_ACCOUNT.sign_transaction(self._tx_dict(request, nonce, fees, gas))
            data = _GET_L1_FEE + abi_encode(["bytes"], [bytes(sized.raw_transaction)])
            out = await self.rpc.eth_call(GAS_PRICE_ORACLE, data, "latest")
            (fee,) = abi_decode(["uint256"], out)
            return int(fee)
        l1_gas = await self.arbitrum_l1_gas(request)
        log.debug("intent %d: Arbitrum L1 component %d gas", request.intent_id, l1_gas)
        return 0

    async def arbitrum_l1_gas(self, request: TxRequest) -> int:
        """Arbitrum's L1 gas for this request (NodeInterface.gasEstimateL1Component)."""
        data = _GAS_ESTIMATE_L1 + abi_encode(
            ["address", "bool", "bytes"], [request.to, False, request.data]
        )
        out = await self.rpc.eth_call(NODE_INTERFACE, data, "latest", sender=self.sender)
        l1_gas, _base, _l1_base = abi_decode(["uint64", "uint256", "uint256"], out)
        return int(l1_gas)

    # -- submit --

    def _fail(self, intent_id: int, failure: Failure, detail: str, **extra: Any) -> TxOutcome:
        try:
            intent = self.journal.set_status(
                intent_id, IntentStatus.FAILED, detail=detail, failure=f"{failure.value}: {detail}"
            )
        except (JournalFencedError, JournalUnavailableError):
            raise
        except JournalError:  # closed meanwhile (by another process): say what it is now
            return self._outcome(self.journal.intent(intent_id))
        log.warning("intent %d failed (%s): %s", intent_id, failure.value, detail)
        return TxOutcome(intent_id, intent.status, failure, detail, **extra)

    async def submit(self, request: TxRequest) -> TxOutcome:
        """Simulate, price, sign, journal, broadcast. Returns after the broadcast."""
        prepared = await self.prepare(request)
        if isinstance(prepared, TxOutcome):
            return prepared
        return await self._broadcast_new(request, prepared, resyncs=0)

    async def prepare(self, request: TxRequest) -> TxRecord | TxOutcome:
        """Everything up to the journal commit of the signed transaction (nothing sent)."""
        intent = self.journal.intent(request.intent_id)
        if intent.status is not IntentStatus.DECIDED:
            return TxOutcome(intent.id, intent.status, detail="already signed: resolve it")
        # the simulation, the gas estimate and the fees are independent: one round trip, not
        # three; the first of them to refuse (in this order) decides, as if run one by one
        simulated, estimated, priced = await asyncio.gather(
            self.simulate(request),
            self.estimate_gas(request),
            self.fees(),
            return_exceptions=True,
        )
        if isinstance(simulated, BaseException):
            raise simulated
        if simulated is not None:
            return self._fail(
                intent.id, Failure.SIMULATION_REVERTED, simulated.message, revert=simulated
            )
        if isinstance(estimated, RpcResponseError) and is_revert(estimated):
            revert = self._revert(estimated)
            return self._fail(intent.id, Failure.SIMULATION_REVERTED, revert.message, revert=revert)
        if isinstance(estimated, BaseException):
            raise estimated
        if isinstance(priced, FeeCapExceededError):
            return self._fail(intent.id, Failure.FEE_CAP, str(priced))
        if isinstance(priced, BaseException):
            raise priced
        return await self._sign(request, priced, estimated, kind=TxKind.ACTION)

    async def _sign(
        self,
        request: TxRequest,
        fees: Fees,
        gas: int,
        *,
        kind: TxKind,
        nonce: int | None = None,
        supersede: Sequence[int] = (),
    ) -> TxRecord | TxOutcome:
        hint, head = await asyncio.gather(
            self.rpc.get_transaction_count(self.sender, "pending"), self.rpc.block_number()
        )
        l1 = await self.l1_fee(request, fees, gas, nonce if nonce is not None else hint)
        cost = gas * fees.max_fee + l1 + request.value
        cap = self.config.fees.max_cost
        if cap is not None and cost > cap:
            return self._fail(
                request.intent_id,
                Failure.COST_CAP,
                f"cost {cost} wei (gas {gas} x {fees.max_fee} + L1 {l1} + value) exceeds {cap}",
            )

        def sign(chosen: int) -> UnsignedTx:
            signed = self.signer.sign_transaction(self._tx_dict(request, chosen, fees, gas))
            return UnsignedTx(
                raw=signed.raw,
                hash=signed.hash,
                to=request.to,
                value=request.value,
                data=request.data,
                max_fee=fees.max_fee,
                priority_fee=fees.priority_fee,
                gas_limit=gas,
                l1_fee=l1,
            )

        crash_point("before_sign")
        try:
            tx = self.journal.record_signed(
                request.intent_id,
                chain_id=self.config.chain_id,
                sender=self.sender,
                kind=kind,
                nonce_hint=hint,
                sign=sign,
                nonce=nonce,
                block=head,
                supersede=supersede,
            )
        except JournalConflictError as exc:
            log.info("intent %d: %s; leaving it to the other writer", request.intent_id, exc)
            return replace(self._outcome(self.journal.intent(request.intent_id)), detail=str(exc))
        log.info(
            "intent %d: signed %s %s nonce %d max fee %d tip %d gas %d",
            request.intent_id, kind.value, tx.hash, tx.nonce, fees.max_fee, fees.priority_fee, gas,
        )  # fmt: skip
        crash_point("after_journal_commit")
        return tx

    async def _broadcast_new(self, request: TxRequest, tx: TxRecord, *, resyncs: int) -> TxOutcome:
        """Broadcast a freshly signed action; resync the nonce when it was taken."""
        while True:
            result = await self._broadcast(tx)
            if result != "nonce_taken":
                intent = self.journal.intent(tx.intent_id)
                if result == "rejected":
                    return TxOutcome(
                        intent.id, intent.status, Failure.SEND_REJECTED, intent.failure or ""
                    )
                detail = (
                    "refused for its fee: resolve replaces it" if result == "fee_too_low" else ""
                )
                return TxOutcome(intent.id, intent.status, None, detail, tx.hash, tx.nonce)
            resyncs += 1
            if resyncs > self.config.max_resyncs:
                return self._fail(
                    tx.intent_id, Failure.NONCE_RESYNC, f"nonce taken {resyncs} times in a row"
                )
            fees = Fees(tx.max_fee, tx.priority_fee, 0)
            signed = await self._sign(request, fees, tx.gas_limit, kind=tx.kind)
            if isinstance(signed, TxOutcome):
                return signed
            tx = signed

    async def _broadcast(self, tx: TxRecord, *, fresh: bool = True) -> str:
        """Send the signed bytes: "sent", "nonce_taken", "fee_too_low" or "rejected".

        A `fresh` transaction (signed just now, never accepted by a node) that is refused is
        marked rejected, so its nonce is free again, and a refused action fails its intent
        unless another of its transactions is live. A rebroadcast (fresh=False) that is
        refused stays as it was: it may sit in some pool still, so only its nonce being
        mined (or a replacement at that nonce) settles it.
        """
        head = await self.rpc.block_number()
        if self.guard is not None:
            self.guard()
        try:
            await self.rpc.send_raw_transaction(tx.raw)
        except RpcSendOutcomeUnknownError as exc:
            log.warning("intent %d: %s", tx.intent_id, exc)
        except RpcResponseError as exc:
            text = exc.rpc_message.lower()
            if "already known" in text or "known transaction" in text:
                pass
            elif any(p in text for p in _FEE_TOO_LOW):
                # Priced under the base fee now: keep it; a bumped replacement follows.
                log.warning("intent %d: %s refused for its fee: %s", tx.intent_id, tx.hash, text)
                return "fee_too_low"
            elif "nonce too low" in text or "underpriced" in text or "already imported" in text:
                if await self._receipt(tx.hash) is not None or await self._known(tx.hash):
                    pass  # it is ours that used the nonce
                elif not fresh:
                    log.warning(
                        "intent %d: %s refused at rebroadcast: %s", tx.intent_id, tx.hash, text
                    )
                    return "nonce_taken"
                else:
                    self.journal.set_tx_status(
                        tx.id, TxStatus.REJECTED, block=head, detail=f"nonce {tx.nonce}: {text}"
                    )
                    log.warning(
                        "intent %d: nonce %d taken (%s): resync", tx.intent_id, tx.nonce, text
                    )
                    return "nonce_taken"
            elif not fresh:
                log.warning("intent %d: %s refused at rebroadcast: %s", tx.intent_id, tx.hash, text)
                return "rejected"
            else:
                self.journal.set_tx_status(
                    tx.id, TxStatus.REJECTED, block=head, detail=f"send rejected: {text}"
                )
                if not any(t.status in _LIVE for t in self.journal.transactions(tx.intent_id)):
                    self._fail(tx.intent_id, Failure.SEND_REJECTED, exc.rpc_message)
                return "rejected"
        crash_point("after_broadcast")
        intent = self.journal.intent(tx.intent_id)
        self.journal.set_tx_status(
            tx.id,
            TxStatus.SENT,
            intent_status=IntentStatus.SENT if intent.status is IntentStatus.SIGNED else None,
            block=head,
            sent_block=head,
            detail=f"sent {tx.hash} nonce {tx.nonce}",
        )
        log.info("intent %d: sent %s nonce %d", tx.intent_id, tx.hash, tx.nonce)
        return "sent"

    async def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        got = await self.rpc.request("eth_getTransactionReceipt", [tx_hash])
        return got if isinstance(got, dict) and got.get("blockHash") else None

    async def _known(self, tx_hash: str) -> bool:
        return await self.rpc.request("eth_getTransactionByHash", [tx_hash]) is not None

    # -- resolve --

    async def send(self, request: TxRequest, **resolve_args: Any) -> TxOutcome:
        """submit, then resolve to a final state (or the receipt timeout)."""
        out = await self.submit(request)
        if not out.is_open:
            return out
        return await self.resolve(request.intent_id, **resolve_args)

    async def resolve(
        self,
        intent_id: int,
        *,
        timeout: float | None = None,
        rebuild: Rebuild | None = None,
        still_wanted: StillWanted | None = None,
    ) -> TxOutcome:
        """Drive an intent's transactions until final (or `timeout`, default the config's)."""
        deadline = time.monotonic() + (self.config.receipt_timeout if timeout is None else timeout)
        checked_block = -1
        while True:
            intent = self.journal.intent(intent_id)
            if intent.status not in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED):
                return self._outcome(intent)
            head = await self.rpc.block_number()
            done = await self._step(intent, head, rebuild, still_wanted, head > checked_block)
            checked_block = head
            if done is not None:
                return done
            if time.monotonic() >= deadline:
                out = self._outcome(self.journal.intent(intent_id))
                return replace(out, detail=f"still {out.status} after the receipt timeout")
            await asyncio.sleep(self.config.poll_interval)

    def _outcome(self, intent: Intent) -> TxOutcome:
        txs = self.journal.transactions(intent.id)
        best = next((t for t in txs if t.status in (TxStatus.FINAL, TxStatus.MINED)), None)
        if best is None and txs:
            best = txs[-1]
        failure = None
        if intent.failure:
            try:
                failure = Failure(intent.failure.split(":", 1)[0])
            except ValueError:
                failure = None
        return TxOutcome(
            intent.id,
            intent.status,
            failure,
            intent.failure or "",
            tx_hash=None if best is None else best.hash,
            nonce=None if best is None else best.nonce,
        )

    async def _step(
        self,
        intent: Intent,
        head: int,
        rebuild: Rebuild | None,
        still_wanted: StillWanted | None,
        new_block: bool,
    ) -> TxOutcome | None:
        txs = [t for t in self.journal.transactions(intent.id) if t.status in _LIVE]
        if not txs:
            return self._fail(intent.id, Failure.SEND_REJECTED, "no live transaction left")
        receipts = {t.id: await self._receipt(t.hash) for t in txs}
        # A recorded receipt that is gone, or now in another block: reorganised away.
        reorged = False
        for t in txs:
            got = receipts[t.id]
            if t.status is TxStatus.MINED and (got is None or got["blockHash"] != t.block_hash):
                self.journal.set_tx_status(
                    t.id,
                    TxStatus.SENT,
                    intent_status=IntentStatus.SENT,
                    block=head,
                    detail=f"reorged: {t.hash} left block {t.block_number} ({t.block_hash})",
                )
                log.warning(
                    "intent %d: %s reorged out of block %s", intent.id, t.hash, t.block_number
                )
                reorged = True
        if reorged:
            return None  # look again with the journal's new state
        mined = [(t, receipts[t.id]) for t in txs if receipts[t.id] is not None]
        if mined:
            t, receipt = mined[0]
            assert receipt is not None
            return await self._on_receipt(intent, t, receipt, txs, head)
        # Nothing mined: was the nonce used by someone else?
        nonce = txs[0].nonce
        latest = await self.rpc.get_transaction_count(self.sender, "latest")
        if latest > nonce:
            again = {t.id: await self._receipt(t.hash) for t in txs}
            if any(again.values()):
                return None  # mined between the two looks: next round records it
            if any([await self._known(t.hash) for t in txs]):
                # ours holds the nonce and the node has not served its receipt yet (still
                # storing the block's receipts; another node behind a load balancer)
                return None
            return await self._nonce_lost(intent, txs, head)
        # Unknown to the node (never broadcast, or dropped, or reorged out): send again.
        for t in txs:
            if t.status is TxStatus.SIGNED or not await self._known(t.hash):
                await self._broadcast(t, fresh=False)
        if not new_block:
            return None
        current = self.journal.intent(intent.id)
        last = txs[-1]
        has_cancel = any(t.kind is TxKind.CANCEL for t in txs)
        if still_wanted is not None and not has_cancel and not await still_wanted(current):
            await self._replace(current, last, head, cancel=True, rebuild=None)
            return None
        sent_at = max((t.sent_block or 0) for t in txs)
        if head - sent_at >= self.config.replace_after_blocks:
            await self._replace(current, last, head, cancel=has_cancel, rebuild=rebuild)
        return None

    async def _on_receipt(
        self,
        intent: Intent,
        t: TxRecord,
        receipt: dict[str, Any],
        txs: list[TxRecord],
        head: int,
    ) -> TxOutcome | None:
        block = _quantity(receipt.get("blockNumber"))
        if block is None:
            return None
        canonical = await self.rpc.get_block(block)
        if canonical.hash != receipt["blockHash"]:
            return None  # the node is mid-reorg: look again next round
        status = _quantity(receipt.get("status"))
        fields = {
            "block_number": block,
            "block_hash": receipt["blockHash"],
            "receipt_status": status,
            "gas_used": _quantity(receipt.get("gasUsed")),
            "effective_gas_price": str(_quantity(receipt.get("effectiveGasPrice")) or 0),
        }
        if t.status is not TxStatus.MINED:
            crash_point("after_receipt")
            self.journal.set_tx_status(
                t.id,
                TxStatus.MINED,
                intent_status=IntentStatus.MINED,
                block=block,
                receipt=fields,
                detail=f"{t.kind.value} {t.hash} mined in block {block} status {status}",
            )
            log.info(
                "intent %d: %s mined in block %d (status %s)", intent.id, t.hash, block, status
            )
        if head - block + 1 < self.config.confirmations:
            return None
        for other in txs:
            if other.id != t.id:
                self.journal.set_tx_status(
                    other.id, TxStatus.SUPERSEDED, block=head, detail=f"{t.hash} took the nonce"
                )
        if t.kind is TxKind.CANCEL:
            final, failure = IntentStatus.OBSOLETE, None
        elif status != 1:
            final, failure = IntentStatus.FAILED, f"{Failure.REVERTED.value}: {t.hash} in {block}"
        elif intent.venue in self.delayed_venues:
            final, failure = IntentStatus.AWAITING_EXECUTION, None
        else:
            final, failure = IntentStatus.DONE, None
        self.journal.set_tx_status(
            t.id,
            TxStatus.FINAL,
            intent_status=final,
            block=head,
            failure=failure,
            detail=f"{t.hash} final at depth {head - block + 1}",
        )
        return self._outcome(self.journal.intent(intent.id))

    async def _nonce_lost(self, intent: Intent, txs: list[TxRecord], head: int) -> TxOutcome | None:
        """Our nonce went to an outside transaction: ours can never be mined; send again
        at a fresh nonce (or give up: obsolete when it was being cancelled or would revert)."""
        nonce = txs[0].nonce
        log.warning("intent %d: nonce %d was used by another transaction", intent.id, nonce)
        action = [t for t in txs if t.kind is not TxKind.CANCEL][-1]
        request = TxRequest(intent.id, action.to, action.data, action.value)
        why = ""
        if any(t.kind is TxKind.CANCEL for t in txs):
            why = f"being cancelled; nonce {nonce} used outside"
        elif (revert := await self.simulate(request)) is not None:
            why = f"nonce {nonce} used outside and the action would now revert: {revert}"
        fees: Fees | None = None
        if not why:
            try:
                fees = await self.fees()
            except FeeCapExceededError as exc:
                why = str(exc)
        if fees is None:
            for t in txs:
                self.journal.set_tx_status(
                    t.id, TxStatus.SUPERSEDED, block=head, detail=f"nonce {nonce} used outside"
                )
            if why.startswith("base fee"):
                return self._fail(intent.id, Failure.FEE_CAP, why)
            with contextlib.suppress(JournalError):  # another writer may have closed it
                self.journal.set_status(intent.id, IntentStatus.OBSOLETE, block=head, detail=why)
            return self._outcome(self.journal.intent(intent.id))
        signed = await self._sign(
            request, fees, action.gas_limit, kind=TxKind.ACTION, supersede=[t.id for t in txs]
        )
        if isinstance(signed, TxOutcome):
            return None if signed.is_open else signed
        out = await self._broadcast_new(request, signed, resyncs=0)
        return None if out.is_open else out

    async def _replace(
        self,
        intent: Intent,
        last: TxRecord,
        head: int,
        *,
        cancel: bool,
        rebuild: Rebuild | None,
    ) -> None:
        try:
            fresh: Fees | None = await self.fees()
        except FeeCapExceededError:
            fresh = None
        fees = bump_fees(last, fresh, self.config.fees)
        if fees is None:
            log.warning(
                "intent %d: %s stuck and the fee cap %d leaves no room for a bump",
                intent.id, last.hash, self.config.fees.max_fee_cap,
            )  # fmt: skip
            return
        if cancel:
            request = TxRequest(intent.id, self.sender, b"", 0)
            gas, kind = TRANSFER_GAS, TxKind.CANCEL
        else:
            request = TxRequest(intent.id, last.to, last.data, last.value)
            gas, kind = last.gas_limit, TxKind.REPLACEMENT
            if rebuild is not None:
                request = await rebuild(intent, fees)
                if await self.simulate(request) is not None:
                    request = TxRequest(intent.id, self.sender, b"", 0)
                    gas, kind = TRANSFER_GAS, TxKind.CANCEL
                else:
                    gas = max(gas, await self.estimate_gas(request))
        signed = await self._sign(request, fees, gas, kind=kind, nonce=last.nonce)
        if isinstance(signed, TxOutcome):
            return
        log.info(
            "intent %d: %s %s -> %s at nonce %d, max fee %d -> %d",
            intent.id, kind.value, last.hash, signed.hash, last.nonce, last.max_fee, fees.max_fee,
        )  # fmt: skip
        await self._broadcast(signed)

    # -- reconcile --

    async def reconcile(
        self,
        *,
        timeout: float | None = None,
        rebuild: Rebuild | None = None,
        still_wanted: StillWanted | None = None,
    ) -> list[TxOutcome]:
        """On start: resolve this sender's open intents; expire stale unsigned ones."""
        now_ms = time.time_ns() // 1_000_000
        work: list[int] = []
        outcomes: list[TxOutcome] = []
        for intent in self.journal.open_intents():
            txs = self.journal.transactions(intent.id)
            if not txs:
                if now_ms - intent.updated_at_ms >= self.config.stale_decided_ms:
                    self.journal.set_status(
                        intent.id, IntentStatus.EXPIRED, detail="decided but never signed"
                    )
                    outcomes.append(self._outcome(self.journal.intent(intent.id)))
                continue
            if any(t.sender != self.sender or t.chain_id != self.config.chain_id for t in txs):
                continue
            if intent.status is IntentStatus.AWAITING_EXECUTION:
                continue  # the venue adapter resolves it
            work.append(intent.id)
        resolved = await asyncio.gather(
            *(
                self.resolve(i, timeout=timeout, rebuild=rebuild, still_wanted=still_wanted)
                for i in work
            )
        )
        return outcomes + list(resolved)
