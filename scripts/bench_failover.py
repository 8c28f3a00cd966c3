#!/usr/bin/env python3
"""Failover under faults: three `keeper run` replicas on one Postgres journal, a devnet mining
a block a second, a price path that forces a top-up each round, and at a random moment of
each round the leader is killed (SIGKILL), frozen (SIGSTOP, SIGCONT once another leads), cut
off from the database, or Postgres is restarted. Prints the rounds, duplicate actions found
on chain, intents lost, saveable positions liquidated, and the failover time in blocks
(p50, p99, max; the goal is at most 3 at 1 s blocks).

    .venv/bin/python scripts/bench_failover.py --rounds 100 [--seed N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.failover.chaos import FAULTS, Round, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset")
    parser.add_argument("--lease-seconds", default="2")
    parser.add_argument("--lease-blocks", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="only the summary, as JSON")
    args = parser.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULTS)
    if unknown or not faults:
        parser.error(f"--faults: choose from {', '.join(FAULTS)}")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")

    def show(r: Round) -> None:
        if not args.json:
            print(
                f"round {r.number:>3} {r.fault:<10} at {r.offset_s:+.2f}s: failover "
                f"{r.failover_blocks} blocks, top-ups {r.top_ups}, other actions "
                f"{r.other_actions}, liquidated {r.liquidated}, epochs {r.leaders}",
                flush=True,
            )

    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        report = run_chaos(
            Path(tmp),
            rounds=args.rounds,
            seed=args.seed,
            faults=faults,
            progress=show,
            lease_seconds=args.lease_seconds,
            lease_blocks=args.lease_blocks,
        )
    summary = report.summary()
    print(json.dumps(summary, indent=None if args.json else 2))
    bad = (
        summary["duplicate_actions_on_chain"]
        or summary["unjournaled_transactions"]
        or summary["intents_lost"]
        or summary["saveable_positions_liquidated"]
        or summary["rounds_without_a_new_leader_in_30s"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
