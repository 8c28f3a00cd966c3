"""`keeper status` (replicas, the leader, its epoch and lease age) and `keeper journal migrate`
(a SQLite journal copied into Postgres, for replicas to share)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from keeper.config import ConfigError, load
from keeper.journal import (
    Journal,
    JournalError,
    JournalTarget,
    PostgresTarget,
    is_postgres_url,
    open_journal,
)

__all__ = [
    "add_parsers",
    "migrate_command",
    "status_command",
    "status_report",
]

STATUS_EPILOG = """\
Reads the journal only (never the chain). With a leader lease ([leader], on by default with
a Postgres journal) it lists each lease: who leads, at which epoch, how long ago it was
renewed and when it expires; and each replica: its role at its last heartbeat and how long
ago that was. Exit status: 0, 1 when the journal cannot be opened, 2 on a bad config.
"""

MIGRATE_EPILOG = """\
Copies every intent, transaction, nonce and event (ids kept) of a SQLite journal into an
empty Postgres journal, in one transaction, then checks the counts. Stop the keeper that uses
the SQLite file first. The target is the config's keeper.journal (--config), or --to URL with
--password-env VAR or --password-file FILE (never a password in the URL).
"""


def add_parsers(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="replicas, the leader, its epoch and lease age (from the journal)",
        description="The replicas sharing this config's journal and who leads.",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--config", metavar="FILE", required=True)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(parser=status)

    journal = commands.add_parser(
        "journal", help="journal tools", description="Journal tools: migrate."
    )
    tools = journal.add_subparsers(dest="journal_command", metavar="TOOL", required=True)
    migrate = tools.add_parser(
        "migrate",
        help="copy a SQLite journal into Postgres",
        description="Copy a SQLite journal into an empty Postgres journal.",
        epilog=MIGRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--from", dest="source", metavar="FILE", required=True)
    target = migrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--config", metavar="FILE", help="the target: this config's journal")
    target.add_argument("--to", metavar="URL", help="the target: a postgresql:// URL")
    secret = migrate.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="with --to: the password's variable")
    secret.add_argument("--password-file", metavar="FILE", help="with --to: the password's file")
    migrate.set_defaults(parser=migrate)


def status_command(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if isinstance(config.journal, Path) and not config.journal.exists():
        print(f"keeper status: no journal at {config.journal} yet", file=sys.stderr)
        return 1
    try:
        journal = open_journal(config.journal)
    except JournalError as exc:
        print(f"keeper status: {exc}", file=sys.stderr)
        return 1
    try:
        report = status_report(journal)
    except JournalError as exc:
        print(f"keeper status: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"journal: {report['journal']} ({report['backend']}, schema {report['schema']})")
    if not report["leases"]:
        print("no leader lease (one keeper, or [leader] is off)")
    for lease in report["leases"]:
        state = "expired" if lease["expired"] else f"expires in {lease['expires_in_s']}s"
        print(
            f"lease {lease['scope']}: leader {lease['owner']} epoch {lease['epoch']}, "
            f"renewed {lease['age_s']}s ago at block {lease['renewed_block']}, {state}"
        )
    if report["replicas"]:
        print(f"{'replica':<40} {'role':<8} {'epoch':>5} {'block':>10} {'seen':>8}")
    for r in report["replicas"]:
        print(
            f"{r['owner']:<40} {r['role']:<8} {r['epoch'] if r['epoch'] is not None else '-':>5}"
            f" {r['head_block'] if r['head_block'] is not None else '-':>10}"
            f" {str(r['seen_s']) + 's':>8}"
        )
    return 0


def status_report(journal: Journal) -> dict[str, Any]:
    """The leases and replicas of a journal, as plain data (ages in seconds, by the journal's
    clock: the database's, for Postgres)."""
    now = journal.now_ms()
    return {
        "journal": journal.path,
        "backend": journal.backend,
        "schema": journal.schema_version(),
        "leases": [
            {
                "scope": lease.scope,
                "owner": lease.owner,
                "epoch": lease.epoch,
                "renewed_block": lease.renewed_block,
                "expires_block": lease.expires_block,
                "age_s": _seconds(now - lease.renewed_at_ms),
                "expires_in_s": _seconds(lease.expires_at_ms - now),
                "expired": lease.expired(),
            }
            for lease in journal.leases()
        ],
        "replicas": [
            {
                "scope": r.scope,
                "owner": r.owner,
                "host": r.host,
                "pid": r.pid,
                "role": r.role,
                "epoch": r.epoch,
                "head_block": r.head_block,
                "seen_s": _seconds(now - r.seen_at_ms),
            }
            for r in journal.replicas()
        ],
    }


def _seconds(ms: int) -> float:
    return round(ms / 1000, 1)


def migrate_command(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    source_path = Path(args.source)
    if not source_path.is_file():
        parser.error(f"--from: no SQLite journal at {source_path}")
    target: JournalTarget
    if args.config is not None:
        if args.password_env or args.password_file:
            parser.error("--password-env/--password-file go with --to (the config says its own)")
        try:
            target = load(args.config).journal
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        if not isinstance(target, PostgresTarget):
            parser.error(f"--config: its keeper.journal is a SQLite file ({target}), not Postgres")
    else:
        if not is_postgres_url(args.to):
            parser.error("--to: expected a postgresql://user@host:port/database URL")
        try:
            target = PostgresTarget(
                args.to,
                password_env=args.password_env,
                password_file=Path(args.password_file) if args.password_file else None,
            )
        except ValueError as exc:
            parser.error(f"--to: {exc}")
    try:
        source = Journal(source_path)
    except Exception as exc:
        print(f"keeper journal migrate: cannot open {source_path}: {exc}", file=sys.stderr)
        return 1
    try:
        destination = open_journal(target)
    except JournalError as exc:
        source.close()
        print(f"keeper journal migrate: {exc}", file=sys.stderr)
        return 1
    try:
        copied = destination.copy_from(source)
        expected = {t: len(rows) for t, rows in source.dump().items() if t in copied}
        found = {t: n for t, n in _counts(destination).items() if t in copied}
        if found != expected:
            print(
                f"keeper journal migrate: counts differ after the copy: {found} != {expected}",
                file=sys.stderr,
            )
            return 1
    except JournalError as exc:
        print(f"keeper journal migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
        destination.close()
    summary = ", ".join(f"{n} {t}" for t, n in copied.items())
    print(f"copied {source_path} into {target}: {summary}")
    return 0


def _counts(journal: Journal) -> dict[str, int]:
    return {t: len(rows) for t, rows in journal.dump().items()}


COMMANDS = {"status": status_command, "journal": migrate_command}
