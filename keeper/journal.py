"""The durable record of intents and their transactions: what makes actions exactly-once.

SQLite by default (WAL, a busy timeout, BEGIN IMMEDIATE for every write), with a schema in
plain SQL a Postgres backend can share: INTEGER/BIGINT/TEXT columns, a partial unique index
(Postgres has them), JSON, bytes (hex) and wei amounts as TEXT, times as unix milliseconds.
Only the `id INTEGER PRIMARY KEY` columns need Postgres' spelling (BIGINT GENERATED ALWAYS AS
IDENTITY), and `?` placeholders become `%s`.

- An intent is one decided action on one position: (venue, position_key, seq). The partial
  unique index `intents_one_open` allows at most one open intent per position; `open_intent`
  returns the open one instead of a second ("the same decision on the next block is
  dropped"), and a later action after it closed gets seq + 1.
- A transaction row holds the signed raw bytes, hash, nonce and fees; it is committed before
  the bytes are broadcast (write-ahead). Nonces are chosen inside the same write transaction
  (`record_signed`), so two processes sharing one account and one journal never collide.
- Every status change of an intent or a transaction is an `events` row, with time and block.

Intent statuses (see IntentStatus): decided -> signed -> sent -> mined -> (awaiting_execution
->) done, or cancelled | expired | failed | obsolete. A mined transaction whose block was
reorganised away puts its intent back to sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = [
    "CLOSED_STATUSES",
    "MIGRATIONS",
    "OPEN_STATUSES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "Backend",
    "Event",
    "Fence",
    "Intent",
    "IntentStatus",
    "Journal",
    "JournalConflictError",
    "JournalError",
    "JournalFencedError",
    "JournalTarget",
    "JournalUnavailableError",
    "Lease",
    "PostgresTarget",
    "Replica",
    "SqliteBackend",
    "TxKind",
    "TxRecord",
    "TxStatus",
    "UnsignedTx",
    "check_postgres_url",
    "is_postgres_url",
    "open_journal",
]


class IntentStatus(StrEnum):
    DECIDED = "decided"  # recorded, nothing signed yet
    SIGNED = "signed"  # a signed transaction is in the journal (maybe not broadcast yet)
    SENT = "sent"  # broadcast (or its fate unknown); awaiting a receipt
    MINED = "mined"  # a receipt, not yet final (a reorg sends it back to sent)
    AWAITING_EXECUTION = "awaiting_execution"  # final; the venue executes it later (GMX)
    DONE = "done"
    CANCELLED = "cancelled"  # the venue cancelled it (a delayed order)
    EXPIRED = "expired"  # it went stale before it was sent, or the venue's order expired
    FAILED = "failed"  # simulation reverted, fee cap, send rejected, reverted on chain
    OBSOLETE = "obsolete"  # pointless now: its nonce was spent on a zero-value self-transfer
    SKIPPED = "skipped"  # decided but deliberately not sent: dry run, observer, halt, not ours


OPEN_STATUSES = (
    IntentStatus.DECIDED,
    IntentStatus.SIGNED,
    IntentStatus.SENT,
    IntentStatus.MINED,
    IntentStatus.AWAITING_EXECUTION,
)
CLOSED_STATUSES = tuple(s for s in IntentStatus if s not in OPEN_STATUSES)

# Allowed transitions; the journal refuses any other (a bug upstream, not a chain event).
TRANSITIONS: Mapping[IntentStatus, frozenset[IntentStatus]] = {
    IntentStatus.DECIDED: frozenset(
        {
            IntentStatus.SIGNED,
            IntentStatus.FAILED,
            IntentStatus.EXPIRED,
            IntentStatus.OBSOLETE,
            IntentStatus.SKIPPED,
        }
    ),
    IntentStatus.SIGNED: frozenset(
        {
            IntentStatus.SIGNED,
            IntentStatus.SENT,
            IntentStatus.MINED,
            IntentStatus.FAILED,
            IntentStatus.OBSOLETE,
        }
    ),
    IntentStatus.SENT: frozenset(
        {
            IntentStatus.SIGNED,
            IntentStatus.SENT,
            IntentStatus.MINED,
            IntentStatus.FAILED,
            IntentStatus.OBSOLETE,
        }
    ),
    IntentStatus.MINED: frozenset(
        {
            IntentStatus.SENT,
            IntentStatus.AWAITING_EXECUTION,
            IntentStatus.DONE,
            IntentStatus.FAILED,
            IntentStatus.OBSOLETE,
        }
    ),
    IntentStatus.AWAITING_EXECUTION: frozenset(
        {
            IntentStatus.SENT,
            IntentStatus.DONE,
            IntentStatus.CANCELLED,
            IntentStatus.EXPIRED,
            IntentStatus.FAILED,
        }
    ),
}


class TxStatus(StrEnum):
    SIGNED = "signed"  # in the journal, not known to be broadcast
    SENT = "sent"  # broadcast accepted, or the outcome unknown
    MINED = "mined"  # has a receipt (status in receipt_status)
    FINAL = "final"  # mined and buried under the configured depth
    REJECTED = "rejected"  # the node refused it: its nonce was not used by it
    SUPERSEDED = "superseded"  # another transaction took its nonce (ours or not)


LIVE_TX_STATUSES = (TxStatus.SIGNED, TxStatus.SENT, TxStatus.MINED)
# Rows in these states do not hold their nonce.
NONCE_FREE_STATUSES = (TxStatus.REJECTED,)


class TxKind(StrEnum):
    ACTION = "action"
    REPLACEMENT = "replacement"  # same nonce, bumped fees (calldata maybe rebuilt)
    CANCEL = "cancel"  # zero-value self-transfer at the nonce


class JournalError(Exception):
    """The journal refused a write (an illegal transition, an unknown id...)."""


class JournalConflictError(JournalError):
    """Another writer changed the intent first (e.g. another process resolving it)."""


class JournalFencedError(JournalError):
    """A write refused because this replica no longer holds the leader lease (a newer epoch
    exists, or it never held it): another replica is acting, this one must stand by."""


class JournalUnavailableError(JournalError):
    """The journal's database could not be reached (or the connection broke mid-transaction:
    that write may or may not have committed). The next call connects again."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id {pk},
    venue TEXT NOT NULL,
    position_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    spend_token TEXT,
    spend_amount TEXT,
    status TEXT NOT NULL,
    failure TEXT,
    reason TEXT,
    created_block BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (venue, position_key, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS intents_one_open ON intents (venue, position_key)
    WHERE status IN ('decided', 'signed', 'sent', 'mined', 'awaiting_execution');
CREATE INDEX IF NOT EXISTS intents_by_time ON intents (created_at_ms);
CREATE TABLE IF NOT EXISTS transactions (
    id {pk},
    intent_id BIGINT NOT NULL REFERENCES intents (id),
    kind TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    sender TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    to_address TEXT NOT NULL,
    value_wei TEXT NOT NULL,
    data TEXT NOT NULL,
    raw TEXT NOT NULL,
    tx_hash TEXT NOT NULL UNIQUE,
    max_fee TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    gas_limit BIGINT NOT NULL,
    l1_fee TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_block BIGINT,
    block_number BIGINT,
    block_hash TEXT,
    receipt_status INTEGER,
    gas_used BIGINT,
    effective_gas_price TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_by_intent ON transactions (intent_id);
CREATE INDEX IF NOT EXISTS transactions_by_nonce ON transactions (chain_id, sender, nonce);
CREATE TABLE IF NOT EXISTS nonces (
    chain_id BIGINT NOT NULL,
    sender TEXT NOT NULL,
    next_nonce BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (chain_id, sender)
);
CREATE TABLE IF NOT EXISTS events (
    id {pk},
    intent_id BIGINT NOT NULL REFERENCES intents (id),
    tx_id BIGINT REFERENCES transactions (id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    block_number BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_intent ON events (intent_id);
"""

LEASES = """
ALTER TABLE intents ADD COLUMN epoch BIGINT;
ALTER TABLE transactions ADD COLUMN epoch BIGINT;
CREATE TABLE leases (
    scope TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    renewed_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    renewed_block BIGINT,
    expires_block BIGINT
);
CREATE TABLE replicas (
    scope TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    role TEXT NOT NULL,
    epoch BIGINT,
    head_block BIGINT,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, owner)
);
"""

# (version, SQL): applied in order, each in its own write transaction, once. `{pk}` is the
# backend's spelling of an integer primary key that numbers itself.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, SCHEMA), (2, LEASES))
SCHEMA_VERSION = MIGRATIONS[-1][0]
TABLES = ("intents", "transactions", "nonces", "events", "leases", "replicas")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Intent:
    """One decided action on one position, as the journal holds it."""

    id: int
    venue: str
    position_key: str
    seq: int
    kind: str
    payload: Mapping[str, Any]
    spend_token: str | None
    spend_amount: int | None
    status: IntentStatus
    failure: str | None
    reason: str | None
    created_block: int | None
    created_at_ms: int
    updated_at_ms: int
    epoch: int | None = None  # the lease epoch it was decided under (None: no lease)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction of an intent."""

    id: int
    intent_id: int
    kind: TxKind
    chain_id: int
    sender: str
    nonce: int
    to: str
    value: int
    data: bytes
    raw: bytes
    hash: str
    max_fee: int
    priority_fee: int
    gas_limit: int
    l1_fee: int
    status: TxStatus
    sent_block: int | None
    block_number: int | None
    block_hash: str | None
    receipt_status: int | None
    gas_used: int | None
    effective_gas_price: int | None
    created_at_ms: int
    epoch: int | None = None  # the lease epoch it was signed under (None: no lease)

    @property
    def max_cost(self) -> int:
        """Worst-case wei: gas limit at the max fee, plus value and the L1 data fee."""
        return self.gas_limit * self.max_fee + self.l1_fee + self.value


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    intent_id: int
    tx_id: int | None
    from_status: str | None
    to_status: str
    at_ms: int
    block_number: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class UnsignedTx:
    """What `record_signed`'s sign callback returns for the nonce it was given."""

    raw: bytes
    hash: str
    to: str
    value: int
    data: bytes
    max_fee: int
    priority_fee: int
    gas_limit: int
    l1_fee: int = 0


def _intent(row: Any) -> Intent:
    return Intent(
        id=row["id"],
        venue=row["venue"],
        position_key=row["position_key"],
        seq=row["seq"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        spend_token=row["spend_token"],
        spend_amount=None if row["spend_amount"] is None else int(row["spend_amount"]),
        status=IntentStatus(row["status"]),
        failure=row["failure"],
        reason=row["reason"],
        created_block=row["created_block"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
        epoch=row["epoch"],
    )


def _tx(row: Any) -> TxRecord:
    egp = row["effective_gas_price"]
    return TxRecord(
        id=row["id"],
        intent_id=row["intent_id"],
        kind=TxKind(row["kind"]),
        chain_id=row["chain_id"],
        sender=row["sender"],
        nonce=row["nonce"],
        to=row["to_address"],
        value=int(row["value_wei"]),
        data=bytes.fromhex(row["data"]),
        raw=bytes.fromhex(row["raw"]),
        hash=row["tx_hash"],
        max_fee=int(row["max_fee"]),
        priority_fee=int(row["priority_fee"]),
        gas_limit=row["gas_limit"],
        l1_fee=int(row["l1_fee"]),
        status=TxStatus(row["status"]),
        sent_block=row["sent_block"],
        block_number=row["block_number"],
        block_hash=row["block_hash"],
        receipt_status=row["receipt_status"],
        gas_used=row["gas_used"],
        effective_gas_price=None if egp is None else int(egp),
        created_at_ms=row["created_at_ms"],
        epoch=row["epoch"],
    )


def _lease(row: Any, now_ms: int) -> Lease:
    return Lease(
        scope=row["scope"],
        owner=row["owner"],
        epoch=int(row["epoch"]),
        acquired_at_ms=int(row["acquired_at_ms"]),
        renewed_at_ms=int(row["renewed_at_ms"]),
        expires_at_ms=int(row["expires_at_ms"]),
        renewed_block=None if row["renewed_block"] is None else int(row["renewed_block"]),
        expires_block=None if row["expires_block"] is None else int(row["expires_block"]),
        now_ms=now_ms,
    )


def _json_safe(value: Any, where: str) -> Any:
    """Payload values: ints, strings, bools, None, lists and dicts of them. No floats."""
    if isinstance(value, float):
        raise TypeError(f"payload {where} is a float; use an int or a decimal string")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (int, str, bool)):
        return value
    raise TypeError(f"payload {where} has type {type(value).__name__}; use int or str")


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """A Postgres journal: `url` (postgresql://user@host:port/db?options, no password in it)
    and where its password comes from, an environment variable or a file (or neither: libpq's
    own PGPASSWORD / ~/.pgpass). The password is read when the journal opens, never stored
    here, never logged."""

    url: str
    password_env: str | None = None
    password_file: Path | None = None

    def __post_init__(self) -> None:
        check_postgres_url(self.url)

    def __str__(self) -> str:
        return self.url

    def password(self) -> str | None:
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise JournalError(
                    f"keeper.journal_password_env: {self.password_env} is not set or empty"
                )
            return value
        if self.password_file is not None:
            try:
                value = self.password_file.read_text().strip()
            except OSError as exc:
                raise JournalError(
                    f"keeper.journal_password_file: cannot read {self.password_file}:"
                    f" {exc.strerror}"
                ) from None
            if not value:
                raise JournalError(f"keeper.journal_password_file: {self.password_file} is empty")
            return value
        return None


JournalTarget = Path | PostgresTarget
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(text: str) -> bool:
    return text.startswith(POSTGRES_SCHEMES)


def check_postgres_url(url: str) -> None:
    """ValueError unless `url` is a postgresql:// URL with a host and without a password."""
    parts = urlsplit(url)
    if not is_postgres_url(url):
        raise ValueError("a Postgres journal is a postgresql://user@host:port/database URL")
    if parts.password is not None:
        raise ValueError(
            "the journal URL holds a password: put it in keeper.journal_password_env or"
            " keeper.journal_password_file instead"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("the journal URL names no host")


@dataclass(slots=True)
class Fence:
    """Which lease this process writes under: every journal write (an intent, a nonce, a
    signed or sent transaction, any status) checks, inside its own database transaction,
    that the lease `scope` is still `owner`'s at `epoch`, and is refused otherwise
    (JournalFencedError). `epoch` None: not the leader, every write is refused."""

    scope: str
    owner: str
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """The leader lease of one scope (a chain and a signer), as the journal holds it."""

    scope: str
    owner: str
    epoch: int
    acquired_at_ms: int
    renewed_at_ms: int
    expires_at_ms: int
    renewed_block: int | None
    expires_block: int | None
    now_ms: int  # the journal's clock when this was read (the database's, for Postgres)

    def expired(self, head_block: int | None = None) -> bool:
        if self.now_ms >= self.expires_at_ms:
            return True
        return (
            head_block is not None
            and self.expires_block is not None
            and head_block >= self.expires_block
        )


@dataclass(frozen=True, slots=True)
class Replica:
    """One keeper process that took part in a lease: its last heartbeat."""

    scope: str
    owner: str
    host: str
    pid: int
    role: str
    epoch: int | None
    head_block: int | None
    started_at_ms: int
    seen_at_ms: int


class _Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Backend(Protocol):
    """What the journal needs from a database: SQL with `?` placeholders, rows that read like
    mappings, serialised write transactions, versioned migrations."""

    name: str
    primary_key: str  # the spelling of an auto-numbered integer primary key
    integrity_errors: tuple[type[Exception], ...]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> _Rows: ...

    def write(self) -> AbstractContextManager[None]: ...

    def now_ms(self) -> int | None: ...

    def ids_follow(self, table: str) -> None:
        """After rows were inserted with explicit ids: new ids continue above them."""

    def describe(self) -> str: ...

    def close(self) -> None: ...


class SqliteBackend:
    """WAL, a busy timeout, synchronous=FULL, BEGIN IMMEDIATE for every write."""

    name = "sqlite"
    primary_key = "INTEGER PRIMARY KEY"
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("PRAGMA foreign_keys = ON")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> _Rows:
        return self.db.execute(sql, args)

    @contextmanager
    def write(self) -> Iterator[None]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk errors
            raise JournalUnavailableError(f"journal {self.path}: {exc}") from None
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def now_ms(self) -> int | None:
        return None

    def ids_follow(self, table: str) -> None:
        return None  # an INTEGER PRIMARY KEY continues above the largest id by itself

    def describe(self) -> str:
        return self.path

    def close(self) -> None:
        self.db.close()


def open_journal(target: JournalTarget, **kw: Any) -> Journal:
    """The journal a config names: a SQLite file (its folder made if missing) or a Postgres
    database (its password read from the target's source). JournalError when it cannot be
    opened: a missing password, a database that cannot be reached, a newer schema."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return Journal(target, **kw)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {target}: {exc}") from None
    return Journal(target, **kw)


class Journal:
    """The journal: one SQLite file (a Path) or a Postgres database (a PostgresTarget, or a
    postgresql:// URL, with `password` or the target's password source). Safe to share
    between processes (and asyncio tasks); the schema is migrated to the current version
    when it opens. `fence` set: every write is checked against the leader lease."""

    def __init__(
        self,
        target: str | Path | PostgresTarget,
        *,
        busy_timeout_ms: int = 10_000,
        clock_ms: Callable[[], int] = _now_ms,
        fence: Fence | None = None,
        password: str | None = None,
    ) -> None:
        self._clock_ms = clock_ms
        self.fence = fence
        if isinstance(target, str) and is_postgres_url(target):
            target = PostgresTarget(target)
        self._backend: Backend
        if isinstance(target, PostgresTarget):
            from keeper.journal_pg import PostgresBackend  # noqa: PLC0415 (psycopg if used)

            self._backend = PostgresBackend(
                target.url, password if password is not None else target.password()
            )
            self.path = target.url
        else:
            self._backend = SqliteBackend(target, busy_timeout_ms=busy_timeout_ms)
            self.path = str(target)
        try:
            self._migrate()
        except BaseException:
            self._backend.close()
            raise

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgres"."""
        return self._backend.name

    def close(self) -> None:
        self._backend.close()

    # -- plumbing --

    @property
    def _db(self) -> Backend:
        return self._backend

    def _migrate(self) -> None:
        """Each missing schema version, in order, each in one write transaction (which, on
        Postgres, holds the journal's advisory lock: replicas starting together migrate once)."""
        b = self._backend
        with b.write():
            b.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, sql in MIGRATIONS:
            with b.write():
                row = b.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
                current = 0 if row is None or row["v"] is None else int(row["v"])
                if current > SCHEMA_VERSION:
                    raise JournalError(
                        f"journal {b.describe()} has schema version {current}, newer than this"
                        f" keeper's {SCHEMA_VERSION}: upgrade the keeper"
                    )
                if current >= version:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        b.execute(statement.replace("{pk}", b.primary_key))
                b.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        row = self._backend.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
        return int(row["v"])

    @contextmanager
    def _write(self, *, fenced: bool = True) -> Iterator[Backend]:
        """A write transaction (serialised with every other writer), fenced by the lease."""
        with self._backend.write():
            if fenced:
                self._check_fence()
            yield self._backend

    def _check_fence(self) -> None:
        f = self.fence
        if f is None:
            return
        if f.epoch is None:
            raise JournalFencedError(f"not the leader of {f.scope}: nothing is written")
        row = self._backend.execute(
            "SELECT owner, epoch FROM leases WHERE scope = ?", (f.scope,)
        ).fetchone()
        if row is None or row["owner"] != f.owner or int(row["epoch"]) != f.epoch:
            holder = "nobody" if row is None else f"{row['owner']} at epoch {row['epoch']}"
            raise JournalFencedError(
                f"lease {f.scope} is held by {holder}, not by {f.owner} at epoch {f.epoch}"
            )

    def _epoch(self) -> int | None:
        return None if self.fence is None else self.fence.epoch

    def _event(
        self,
        db: Backend,
        intent_id: int,
        from_status: str | None,
        to_status: str,
        *,
        tx_id: int | None = None,
        block: int | None = None,
        detail: str = "",
        now: int,
    ) -> None:
        db.execute(
            "INSERT INTO events (intent_id, tx_id, from_status, to_status, at_ms, block_number,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (intent_id, tx_id, from_status, to_status, now, block, detail),
        )

    def _intent_row(self, db: Backend, intent_id: int) -> Intent:
        row = db.execute("SELECT * FROM intents WHERE id = ?", (intent_id,)).fetchone()
        if row is None:
            raise JournalError(f"no intent with id {intent_id}")
        return _intent(row)

    def _set_intent(
        self,
        db: Backend,
        intent: Intent,
        status: IntentStatus,
        *,
        now: int,
        block: int | None,
        detail: str,
        tx_id: int | None = None,
        failure: str | None = None,
    ) -> None:
        if status not in TRANSITIONS.get(intent.status, frozenset()):
            raise JournalError(
                f"intent {intent.id}: illegal transition {intent.status} -> {status}"
            )
        if status is intent.status and failure is None:
            self._event(
                db, intent.id, intent.status, status, tx_id=tx_id, block=block, detail=detail,
                now=now,
            )  # fmt: skip
            return
        db.execute(
            "UPDATE intents SET status = ?, failure = COALESCE(?, failure), updated_at_ms = ?"
            " WHERE id = ?",
            (status.value, failure, now, intent.id),
        )
        self._event(
            db, intent.id, intent.status, status, tx_id=tx_id, block=block, detail=detail, now=now
        )

    # -- intents --

    def open_intent(
        self,
        venue: str,
        position_key: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        block: int | None = None,
        spend_token: str | None = None,
        spend_amount: int | None = None,
        reason: str = "",
    ) -> tuple[Intent, bool]:
        """Record a decided action; (intent, True), or (the open one, False) if there is one.

        `payload` holds the action's figures: ints and decimal strings only (no floats).
        `spend_amount` (token units) counts in `spend_in_window` until the intent fails.
        """
        body = json.dumps(_json_safe(dict(payload), "payload"), sort_keys=True)
        if spend_amount is not None and spend_amount < 0:
            raise ValueError(f"spend_amount must be >= 0, got {spend_amount}")
        now = self._clock_ms()
        try:
            with self._write() as db:
                existing = self._open_for(db, venue, position_key)
                if existing is not None:
                    return existing, False
                row = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) AS seq FROM intents"
                    " WHERE venue = ? AND position_key = ?",
                    (venue, position_key),
                ).fetchone()
                cur = db.execute(
                    "INSERT INTO intents (venue, position_key, seq, kind, payload, spend_token,"
                    " spend_amount, status, reason, created_block, created_at_ms, updated_at_ms,"
                    " epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        venue,
                        position_key,
                        row["seq"] + 1,
                        kind,
                        body,
                        spend_token,
                        None if spend_amount is None else str(spend_amount),
                        IntentStatus.DECIDED.value,
                        reason,
                        block,
                        now,
                        now,
                        self._epoch(),
                    ),
                )
                intent_id = int(cur.fetchall()[0]["id"])
                self._event(db, intent_id, None, IntentStatus.DECIDED, block=block,
                            detail=reason, now=now)  # fmt: skip
                return self._intent_row(db, intent_id), True
        except self._backend.integrity_errors:
            # Another writer won the race for this position: its intent is the open one.
            found = self.open_intent_for(venue, position_key)
            if found is None:
                raise
            return found, False

    def _open_for(self, db: Backend, venue: str, position_key: str) -> Intent | None:
        marks = ",".join("?" * len(OPEN_STATUSES))
        row = db.execute(
            f"SELECT * FROM intents WHERE venue = ? AND position_key = ? AND status IN ({marks})",
            (venue, position_key, *OPEN_STATUSES),
        ).fetchone()
        return None if row is None else _intent(row)

    def open_intent_for(self, venue: str, position_key: str) -> Intent | None:
        return self._open_for(self._db, venue, position_key)

    def intent(self, intent_id: int) -> Intent:
        return self._intent_row(self._db, intent_id)

    def set_status(
        self,
        intent_id: int,
        status: IntentStatus,
        *,
        block: int | None = None,
        detail: str = "",
        failure: str | None = None,
    ) -> Intent:
        """Move an intent to `status` (a legal transition), with an event row."""
        now = self._clock_ms()
        with self._write() as db:
            intent = self._intent_row(db, intent_id)
            self._set_intent(
                db, intent, status, now=now, block=block, detail=detail, failure=failure
            )
            return self._intent_row(db, intent_id)

    def note(self, intent_id: int, detail: str, *, block: int | None = None) -> None:
        """An event without a status change (e.g. the venue's order key once it is known)."""
        now = self._clock_ms()
        with self._write() as db:
            intent = self._intent_row(db, intent_id)
            self._event(
                db, intent.id, intent.status, intent.status, block=block, detail=detail, now=now
            )

    def open_intents(self, venue: str | None = None) -> list[Intent]:
        marks = ",".join("?" * len(OPEN_STATUSES))
        sql = f"SELECT * FROM intents WHERE status IN ({marks})"
        args: list[Any] = list(OPEN_STATUSES)
        if venue is not None:
            sql += " AND venue = ?"
            args.append(venue)
        return [_intent(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def recent_actions(
        self,
        *,
        since_ms: int | None = None,
        since_block: int | None = None,
        venue: str | None = None,
        statuses: Sequence[IntentStatus] | None = None,
    ) -> list[Intent]:
        """Intents that did or may still do something (not failed/expired/obsolete/cancelled
        unless `statuses` says), newest first: for cooldowns and hysteresis."""
        wanted = statuses or (*OPEN_STATUSES, IntentStatus.DONE)
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT * FROM intents WHERE status IN ({marks})"
        args: list[Any] = list(wanted)
        if since_ms is not None:
            sql += " AND created_at_ms >= ?"
            args.append(since_ms)
        if since_block is not None:
            sql += " AND created_block >= ?"
            args.append(since_block)
        if venue is not None:
            sql += " AND venue = ?"
            args.append(venue)
        return [_intent(r) for r in self._db.execute(sql + " ORDER BY id DESC", args)]

    def spend_in_window(self, token: str, window_ms: int, *, now_ms: int | None = None) -> int:
        """Token units that intents decided within `window_ms` spent or may still spend.

        Failed, expired, obsolete and cancelled intents spent nothing and do not count.
        """
        since = (self._clock_ms() if now_ms is None else now_ms) - window_ms
        marks = ",".join("?" * len(OPEN_STATUSES))
        rows = self._db.execute(
            "SELECT spend_amount FROM intents WHERE spend_token = ? AND created_at_ms >= ?"
            f" AND spend_amount IS NOT NULL AND status IN ({marks}, ?)",
            (token, since, *OPEN_STATUSES, IntentStatus.DONE),
        )
        return sum(int(r["spend_amount"]) for r in rows)

    def history(
        self,
        *,
        venue: str | None = None,
        position_key: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[Intent]:
        """Intents of any status, newest first, filtered by position and creation time."""
        sql = "SELECT * FROM intents WHERE 1 = 1"
        args: list[Any] = []
        for column, op, value in (
            ("venue", "=", venue),
            ("position_key", "=", position_key),
            ("created_at_ms", ">=", since_ms),
            ("created_at_ms", "<", until_ms),
        ):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_intent(r) for r in self._db.execute(sql, args)]

    def events(self, intent_id: int | None = None) -> list[Event]:
        sql = "SELECT * FROM events"
        args: tuple[Any, ...] = ()
        if intent_id is not None:
            sql += " WHERE intent_id = ?"
            args = (intent_id,)
        return [
            Event(
                id=r["id"],
                intent_id=r["intent_id"],
                tx_id=r["tx_id"],
                from_status=r["from_status"],
                to_status=r["to_status"],
                at_ms=r["at_ms"],
                block_number=r["block_number"],
                detail=r["detail"],
            )
            for r in self._db.execute(sql + " ORDER BY id", args)
        ]

    # -- transactions --

    def record_signed(
        self,
        intent_id: int,
        *,
        chain_id: int,
        sender: str,
        kind: TxKind,
        nonce_hint: int,
        sign: Callable[[int], UnsignedTx],
        nonce: int | None = None,
        block: int | None = None,
        supersede: Sequence[int] = (),
    ) -> TxRecord:
        """Choose a nonce, sign for it and commit the signed bytes, in one write transaction.

        The nonce is the lowest at or above `nonce_hint` (the chain's pending count) that no
        transaction in the journal holds for (chain_id, sender); `nonce` forces one
        (replacements and cancels reuse their predecessor's). The intent moves to signed.

        Guards against a second writer resolving the same intent: a new action needs the
        intent to have no live transaction except those in `supersede` (marked superseded
        here); a replacement or cancel needs live ones at `nonce`. Else JournalConflictError.
        """
        now = self._clock_ms()
        with self._write() as db:
            intent = self._intent_row(db, intent_id)
            if intent.status not in (IntentStatus.DECIDED, IntentStatus.SIGNED, IntentStatus.SENT):
                raise JournalConflictError(
                    f"intent {intent_id} is {intent.status}: nothing to sign"
                )
            marks = ",".join("?" * len(LIVE_TX_STATUSES))
            live = {
                r["id"]: (r["nonce"], r["status"])
                for r in db.execute(
                    "SELECT id, nonce, status FROM transactions"
                    f" WHERE intent_id = ? AND status IN ({marks})",
                    (intent_id, *LIVE_TX_STATUSES),
                )
            }
            if kind is TxKind.ACTION:
                if set(live) != set(supersede):
                    raise JournalConflictError(
                        f"intent {intent_id}: live transactions {sorted(live)} changed under us"
                    )
                for tx_id in supersede:
                    db.execute(
                        "UPDATE transactions SET status = ?, updated_at_ms = ? WHERE id = ?",
                        (TxStatus.SUPERSEDED.value, now, tx_id),
                    )
                    self._event(
                        db, intent_id, f"tx:{live[tx_id][1]}", f"tx:{TxStatus.SUPERSEDED.value}",
                        tx_id=tx_id, block=block, detail=f"nonce {live[tx_id][0]} used outside",
                        now=now,
                    )  # fmt: skip
            elif nonce is None or not live or {n for n, _ in live.values()} != {nonce}:
                raise JournalConflictError(
                    f"intent {intent_id}: no live transaction at nonce {nonce} to replace"
                )
            if nonce is None:
                nonce = self._free_nonce(db, chain_id, sender, nonce_hint)
            signed = sign(nonce)
            cur = db.execute(
                "INSERT INTO transactions (intent_id, kind, chain_id, sender, nonce, to_address,"
                " value_wei, data, raw, tx_hash, max_fee, priority_fee, gas_limit, l1_fee,"
                " status, sent_block, created_at_ms, updated_at_ms, epoch)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    intent_id,
                    kind.value,
                    chain_id,
                    sender,
                    nonce,
                    signed.to,
                    str(signed.value),
                    signed.data.hex(),
                    signed.raw.hex(),
                    signed.hash,
                    str(signed.max_fee),
                    str(signed.priority_fee),
                    signed.gas_limit,
                    str(signed.l1_fee),
                    TxStatus.SIGNED.value,
                    block,
                    now,
                    now,
                    self._epoch(),
                ),
            )
            new_id = int(cur.fetchall()[0]["id"])
            # The high-water mark (plain SQL: Postgres spells SQLite's two-argument MAX
            # as GREATEST, so the comparison happens here; the write lock is held).
            mark = db.execute(
                "SELECT next_nonce FROM nonces WHERE chain_id = ? AND sender = ?",
                (chain_id, sender),
            ).fetchone()
            if mark is None:
                db.execute(
                    "INSERT INTO nonces (chain_id, sender, next_nonce, updated_at_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (chain_id, sender, nonce + 1, now),
                )
            elif nonce + 1 > mark["next_nonce"]:
                db.execute(
                    "UPDATE nonces SET next_nonce = ?, updated_at_ms = ?"
                    " WHERE chain_id = ? AND sender = ?",
                    (nonce + 1, now, chain_id, sender),
                )
            detail = f"{kind.value} {signed.hash} nonce {nonce}"
            self._set_intent(
                db,
                intent,
                IntentStatus.SIGNED if intent.status is IntentStatus.DECIDED else intent.status,
                now=now,
                block=block,
                detail=detail,
                tx_id=new_id,
            )
            return _tx(db.execute("SELECT * FROM transactions WHERE id = ?", (new_id,)).fetchone())

    def _free_nonce(self, db: Backend, chain_id: int, sender: str, hint: int) -> int:
        marks = ",".join("?" * len(NONCE_FREE_STATUSES))
        held = {
            r["nonce"]
            for r in db.execute(
                "SELECT DISTINCT nonce FROM transactions WHERE chain_id = ? AND sender = ?"
                f" AND nonce >= ? AND status NOT IN ({marks})",
                (chain_id, sender, hint, *NONCE_FREE_STATUSES),
            )
        }
        nonce = hint
        while nonce in held:
            nonce += 1
        return nonce

    def next_nonce(self, chain_id: int, sender: str) -> int | None:
        """The high-water mark: one above the highest nonce ever allocated (None: none yet)."""
        row = self._db.execute(
            "SELECT next_nonce FROM nonces WHERE chain_id = ? AND sender = ?", (chain_id, sender)
        ).fetchone()
        return None if row is None else int(row["next_nonce"])

    def transactions(self, intent_id: int | None = None) -> list[TxRecord]:
        sql = "SELECT * FROM transactions"
        args: tuple[Any, ...] = ()
        if intent_id is not None:
            sql += " WHERE intent_id = ?"
            args = (intent_id,)
        return [_tx(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def transaction(self, tx_id: int) -> TxRecord:
        row = self._db.execute("SELECT * FROM transactions WHERE id = ?", (tx_id,)).fetchone()
        if row is None:
            raise JournalError(f"no transaction with id {tx_id}")
        return _tx(row)

    def set_tx_status(
        self,
        tx_id: int,
        status: TxStatus,
        *,
        intent_status: IntentStatus | None = None,
        block: int | None = None,
        detail: str = "",
        failure: str | None = None,
        sent_block: int | None = None,
        receipt: Mapping[str, Any] | None = None,
    ) -> TxRecord:
        """Record a transaction's new status (and receipt fields), and maybe its intent's."""
        now = self._clock_ms()
        with self._write() as db:
            tx = _tx(db.execute("SELECT * FROM transactions WHERE id = ?", (tx_id,)).fetchone())
            if tx.status in (TxStatus.FINAL, TxStatus.SUPERSEDED) and status is not tx.status:
                return tx  # settled already (by another process): a stale writer changes nothing
            fields: dict[str, Any] = {"status": status.value, "updated_at_ms": now}
            if sent_block is not None:
                fields["sent_block"] = sent_block
            if receipt is not None:
                fields.update(receipt)
            if status in (TxStatus.SENT, TxStatus.SIGNED) and receipt is None:
                fields.update(
                    block_number=None,
                    block_hash=None,
                    receipt_status=None,
                    gas_used=None,
                    effective_gas_price=None,
                )
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE transactions SET {sets} WHERE id = ?", (*fields.values(), tx_id))
            if tx.status is not status:
                self._event(
                    db,
                    tx.intent_id,
                    f"tx:{tx.status.value}",
                    f"tx:{status.value}",
                    tx_id=tx_id,
                    block=block,
                    detail=detail or tx.hash,
                    now=now,
                )
            if intent_status is not None:
                intent = self._intent_row(db, tx.intent_id)
                if intent.is_open and (intent.status is not intent_status or failure is not None):
                    self._set_intent(
                        db,
                        intent,
                        intent_status,
                        now=now,
                        block=block,
                        detail=detail or tx.hash,
                        tx_id=tx_id,
                        failure=failure,
                    )
            return _tx(db.execute("SELECT * FROM transactions WHERE id = ?", (tx_id,)).fetchone())

    # -- the leader lease --

    def now_ms(self) -> int:
        """The clock leases are judged by: the database server's for Postgres (replicas on
        several hosts agree on it), this process's for SQLite (one host)."""
        now = self._backend.now_ms()
        return self._clock_ms() if now is None else now

    def lease(self, scope: str) -> Lease | None:
        now = self.now_ms()
        row = self._backend.execute("SELECT * FROM leases WHERE scope = ?", (scope,)).fetchone()
        return None if row is None else _lease(row, now)

    def leases(self) -> list[Lease]:
        now = self.now_ms()
        return [
            _lease(r, now) for r in self._backend.execute("SELECT * FROM leases ORDER BY scope")
        ]

    def lease_step(
        self,
        scope: str,
        owner: str,
        *,
        lease_ms: int,
        lease_blocks: int | None,
        head_block: int | None,
        host: str,
        pid: int,
        started_at_ms: int,
    ) -> Lease:
        """One replica's turn, in one write transaction: renew the lease if `owner` holds it,
        take it (epoch + 1) if it is free or expired (by time, or by the chain passing its
        `expires_block`), else leave it; and record the replica's heartbeat. Returns the
        lease as it stands after (its owner says who leads)."""
        with self._write(fenced=False) as db:
            now = self.now_ms()
            row = db.execute("SELECT * FROM leases WHERE scope = ?", (scope,)).fetchone()
            current = None if row is None else _lease(row, now)
            expires_block = (
                None if lease_blocks is None or head_block is None else head_block + lease_blocks
            )
            if current is None:
                db.execute(
                    "INSERT INTO leases (scope, owner, epoch, acquired_at_ms, renewed_at_ms,"
                    " expires_at_ms, renewed_block, expires_block) VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
                    (scope, owner, now, now, now + lease_ms, head_block, expires_block),
                )
            elif current.owner == owner:
                db.execute(
                    "UPDATE leases SET renewed_at_ms = ?, expires_at_ms = ?, renewed_block = ?,"
                    " expires_block = ? WHERE scope = ? AND owner = ? AND epoch = ?",
                    (now, now + lease_ms, head_block, expires_block, scope, owner, current.epoch),
                )
            elif current.expired(head_block):
                db.execute(
                    "UPDATE leases SET owner = ?, epoch = ?, acquired_at_ms = ?,"
                    " renewed_at_ms = ?, expires_at_ms = ?, renewed_block = ?, expires_block = ?"
                    " WHERE scope = ? AND epoch = ?",
                    (
                        owner, current.epoch + 1, now, now, now + lease_ms, head_block,
                        expires_block, scope, current.epoch,
                    ),
                )  # fmt: skip
            after = _lease(
                db.execute("SELECT * FROM leases WHERE scope = ?", (scope,)).fetchone(), now
            )
            leading = after.owner == owner
            db.execute(
                "INSERT INTO replicas (scope, owner, host, pid, role, epoch, head_block,"
                " started_at_ms, seen_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, owner) DO UPDATE SET role = excluded.role,"
                " epoch = excluded.epoch, head_block = excluded.head_block,"
                " seen_at_ms = excluded.seen_at_ms",
                (
                    scope, owner, host, pid, "leader" if leading else "standby",
                    after.epoch if leading else None, head_block, started_at_ms, now,
                ),
            )  # fmt: skip
            return after

    def renew_lease(
        self,
        scope: str,
        owner: str,
        epoch: int,
        *,
        lease_ms: int,
        lease_blocks: int | None,
        head_block: int | None,
    ) -> Lease | None:
        """Extend the lease if `owner` still holds it at `epoch` (None if not): the check
        right before a signature or a send."""
        with self._write(fenced=False) as db:
            now = self.now_ms()
            expires_block = (
                None if lease_blocks is None or head_block is None else head_block + lease_blocks
            )
            cur = db.execute(
                "UPDATE leases SET renewed_at_ms = ?, expires_at_ms = ?,"
                " renewed_block = COALESCE(?, renewed_block),"
                " expires_block = COALESCE(?, expires_block)"
                " WHERE scope = ? AND owner = ? AND epoch = ?",
                (now, now + lease_ms, head_block, expires_block, scope, owner, epoch),
            )
            if cur.rowcount != 1:
                return None
            row = db.execute("SELECT * FROM leases WHERE scope = ?", (scope,)).fetchone()
            return _lease(row, now)

    def release_lease(self, scope: str, owner: str, epoch: int | None) -> None:
        """On a clean stop: the lease (if still ours) expires now, so a standby takes over at
        its next block instead of waiting out the lease; the replica shows as stopped."""
        with self._write(fenced=False) as db:
            now = self.now_ms()
            if epoch is not None:
                db.execute(
                    "UPDATE leases SET expires_at_ms = ?, expires_block = NULL"
                    " WHERE scope = ? AND owner = ? AND epoch = ?",
                    (now, scope, owner, epoch),
                )
            db.execute(
                "UPDATE replicas SET role = 'stopped', epoch = NULL, seen_at_ms = ?"
                " WHERE scope = ? AND owner = ?",
                (now, scope, owner),
            )

    def replicas(self, scope: str | None = None) -> list[Replica]:
        """Every replica that took part in a lease (of `scope`), most recently seen first."""
        sql = "SELECT * FROM replicas"
        args: tuple[Any, ...] = ()
        if scope is not None:
            sql += " WHERE scope = ?"
            args = (scope,)
        return [
            Replica(
                scope=r["scope"],
                owner=r["owner"],
                host=r["host"],
                pid=int(r["pid"]),
                role=r["role"],
                epoch=None if r["epoch"] is None else int(r["epoch"]),
                head_block=None if r["head_block"] is None else int(r["head_block"]),
                started_at_ms=int(r["started_at_ms"]),
                seen_at_ms=int(r["seen_at_ms"]),
            )
            for r in self._backend.execute(sql + " ORDER BY seen_at_ms DESC", args)
        ]

    def copy_from(self, source: Journal) -> dict[str, int]:
        """Copy every intent, transaction, nonce and event of `source` into this journal, ids
        kept, in one write transaction; returns the rows copied per table. This journal must
        hold no intents yet (JournalError otherwise). Leases and replicas are not copied: they
        belong to running processes. Stop every keeper on `source` first."""
        copied: dict[str, int] = {}
        with self._write(fenced=False) as db:
            row = db.execute("SELECT COUNT(*) AS n FROM intents").fetchone()
            if int(row["n"]):
                raise JournalError(
                    f"journal {self.path} already holds {row['n']} intent(s): copy into an"
                    " empty one"
                )
            for table in ("intents", "transactions", "nonces", "events"):
                rows = [dict(r) for r in source._backend.execute(f"SELECT * FROM {table}")]
                for r in rows:
                    columns = ", ".join(r)
                    marks = ", ".join("?" * len(r))
                    db.execute(
                        f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(r.values())
                    )
                copied[table] = len(rows)
            for table in ("intents", "transactions", "events"):
                self._backend.ids_follow(table)
        return copied

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, as plain dicts (for audits and tests)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for table in TABLES:
            out[table] = [dict(r) for r in self._db.execute(f"SELECT * FROM {table}")]
        return out
