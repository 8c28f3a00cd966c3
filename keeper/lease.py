"""One leader among replicas: the lease, its epoch, and the fence on the journal.

Replicas of `keeper run` with the same chain and signer share one journal (Postgres, or one
SQLite file on one host). The lease is one row of that journal: owner, expiry (in time, and
optionally in blocks) and an epoch that only grows. Each replica takes a turn on every block
(`Leadership.step`): the holder renews it; another takes it, with the epoch + 1, once it
has expired; the rest stand by, reading the chain and the journal but writing nothing.

What makes a late leader harmless is the fence: the journal of a replica refuses every write
(an intent, a nonce, a signed or sent transaction, a status) unless, inside the same
database transaction, the lease is still its own at its epoch. A leader frozen (SIGSTOP, a
long GC, a VM pause) or cut off while another took over finds every write refused when it
wakes, and stands by. It also renews the lease right before each send (`check`), so a
transaction is broadcast only while its signer leads; a transaction it signed before losing
the lease is in the journal already, and the new leader (which, on taking over, reconciles
open intents with the crash-recovery code) sends those same bytes, never a second action.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from enum import StrEnum

from keeper.journal import Fence, Journal, JournalFencedError, JournalUnavailableError, Lease

__all__ = [
    "Change",
    "Leadership",
    "LeaseSettings",
    "Role",
    "lease_scope",
    "replica_id",
]

log = logging.getLogger(__name__)


class Role(StrEnum):
    LEADER = "leader"
    STANDBY = "standby"


class Change(StrEnum):
    """What a turn changed: this replica took the lease, or lost it."""

    ACQUIRED = "acquired"
    LOST = "lost"


def lease_scope(chain_id: int, signer: str) -> str:
    """Replicas compete for one lease per chain and signing address."""
    return f"{chain_id}:{signer.lower()}"


def replica_id() -> str:
    """This process among replicas: host, pid and a random tag (a restarted process is a new
    replica, which waits for its predecessor's lease to expire)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    lease_ms: int = 3000
    lease_blocks: int | None = None

    @property
    def idle_renew_s(self) -> float:
        """How often a turn is taken while no block arrives: a third of the lease."""
        return self.lease_ms / 3000


class Leadership:
    """This replica's part in the lease of `scope`; sets the journal's fence."""

    def __init__(
        self,
        journal: Journal,
        scope: str,
        settings: LeaseSettings,
        *,
        owner: str | None = None,
    ) -> None:
        self.journal = journal
        self.scope = scope
        self.settings = settings
        self.owner = owner or replica_id()
        self.fence = Fence(scope, self.owner, None)
        journal.fence = self.fence
        self.started_at_ms = journal.now_ms()
        self.last: Lease | None = None  # the lease as last seen
        self.last_error: str | None = None
        self._since = time.monotonic()

    def __repr__(self) -> str:
        return f"Leadership({self.scope!r}, {self.owner!r}, {self.role.value})"

    @property
    def role(self) -> Role:
        return Role.LEADER if self.fence.epoch is not None else Role.STANDBY

    @property
    def is_leader(self) -> bool:
        return self.fence.epoch is not None

    @property
    def epoch(self) -> int | None:
        return self.fence.epoch

    @property
    def leader(self) -> str | None:
        """Who holds the lease, as last seen."""
        return None if self.last is None else self.last.owner

    def seconds_in_role(self) -> float:
        return time.monotonic() - self._since

    def step(self, head_block: int | None) -> Change | None:
        """This replica's turn: renew, take, or stand by. A journal that cannot be reached
        makes a leader stand by (nothing can be written anyway)."""
        s = self.settings
        try:
            lease = self.journal.lease_step(
                self.scope,
                self.owner,
                lease_ms=s.lease_ms,
                lease_blocks=s.lease_blocks,
                head_block=head_block,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at_ms=self.started_at_ms,
            )
        except JournalUnavailableError as exc:
            self.last_error = str(exc)
            log.warning("lease %s: %s", self.scope, exc)
            return self._set(None)
        self.last_error = None
        self.last = lease
        return self._set(lease.epoch if lease.owner == self.owner else None)

    def check(self) -> None:
        """Right before a send: renew the lease, or raise JournalFencedError (and stand by)
        when this replica no longer holds it."""
        epoch = self.fence.epoch
        if epoch is None:
            raise JournalFencedError(f"lease {self.scope}: this replica is not the leader")
        s = self.settings
        try:
            lease = self.journal.renew_lease(
                self.scope,
                self.owner,
                epoch,
                lease_ms=s.lease_ms,
                lease_blocks=s.lease_blocks,
                head_block=None,
            )
        except JournalUnavailableError:
            self._set(None)
            raise
        if lease is None:
            self._set(None)
            raise JournalFencedError(
                f"lease {self.scope}: epoch {epoch} was superseded; standing by"
            )
        self.last = lease

    def lost(self) -> Change | None:
        """The journal refused a write (fenced): stand by until a turn says otherwise."""
        return self._set(None)

    def release(self) -> None:
        """On a clean stop: give the lease up now so a standby need not wait it out."""
        try:
            self.journal.release_lease(self.scope, self.owner, self.fence.epoch)
        except JournalUnavailableError as exc:
            log.warning("lease %s: could not release it: %s", self.scope, exc)
        self._set(None)

    def _set(self, epoch: int | None) -> Change | None:
        before = self.fence.epoch
        self.fence.epoch = epoch
        if before == epoch:
            return None
        if before is not None and epoch is not None:  # lost and taken back in between
            return Change.ACQUIRED
        self._since = time.monotonic()
        return Change.ACQUIRED if epoch is not None else Change.LOST
