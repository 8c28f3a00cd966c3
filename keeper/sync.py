"""The same API, blocking, for scripts and notebooks (as web3.py offers `Web3` beside
`AsyncWeb3`).

```python
from keeper import sync

with sync.connect("http://127.0.0.1:8545", addresses={...}, accounts=[me], signer=acct) as c:
    view = c.positions()[0]
    plan = c.prepare_top_up(view, 500)
    print(plan.preview)
    print(c.send(plan).status)
```

Each client runs its asyncio work on an event loop of its own, in a thread of its own, so it
works where a loop is already running (a Jupyter notebook). Give it URLs, not an `AsyncWeb3`
made on another loop: connections belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

from keeper.client import Client, Outcome, Subject
from keeper.client import connect as connect_async
from keeper.loop import TickReport
from keeper.manual import Plan
from keeper.model import Market, Snapshot
from keeper.policy import Budget, Thresholds
from keeper.venues.base import Delegation
from keeper.views import PositionView

__all__ = ["SyncClient", "connect", "from_config"]

T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread; `run(coro)` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class SyncClient:
    """A `keeper.Client`, blocking: the same methods, without `await`. A context manager;
    `close()` ends its loop and thread."""

    def __init__(self, client: Client, loop: _Loop) -> None:
        self.client = client
        self._loop = loop

    def __repr__(self) -> str:
        return f"Sync{self.client!r}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._loop.run(self.client.close())
        finally:
            self._loop.stop()

    def snapshot(self, *, block: int | None = None) -> Snapshot:
        return self._loop.run(self.client.snapshot(block=block))

    def positions(
        self, account: str | None = None, *, block: int | None = None
    ) -> list[PositionView]:
        return self._loop.run(self.client.positions(account, block=block))

    def markets(self, *, block: int | None = None) -> list[Market]:
        return self._loop.run(self.client.markets(block=block))

    def delegations(self) -> list[Delegation]:
        return self._loop.run(self.client.delegations())

    def prepare_top_up(self, position: Subject, amount: Decimal | int | str) -> Plan:
        return self._loop.run(self.client.prepare_top_up(position, amount))

    def prepare_withdraw(self, position: Subject, amount: Decimal | int | str) -> Plan:
        return self._loop.run(self.client.prepare_withdraw(position, amount))

    def prepare_reduce(self, position: Subject, size: Decimal | int | str) -> Plan:
        return self._loop.run(self.client.prepare_reduce(position, size))

    def prepare_close(self, position: Subject) -> Plan:
        return self._loop.run(self.client.prepare_close(position))

    def send(self, plan: Plan, *, wait: bool = True, timeout: float = 900.0) -> Outcome:
        return self._loop.run(self.client.send(plan, wait=wait, timeout=timeout))

    def protect(
        self,
        *,
        thresholds: Thresholds | None = None,
        budget: Budget | None = None,
        dry_run: bool = False,
        ticks: int | None = None,
    ) -> Iterator[TickReport]:
        """`Client.protect`, one report at a time; stop iterating to stop the keeper."""
        reports = self.client.protect(
            thresholds=thresholds, budget=budget, dry_run=dry_run, ticks=ticks
        )

        async def step() -> TickReport:
            return await anext(reports)

        try:
            while True:
                try:
                    yield self._loop.run(step())
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run(reports.aclose())


def connect(source: str | list[str], **options: Any) -> SyncClient:
    """`keeper.connect(source, **options)`, blocking (source: URLs or IPC paths)."""
    loop = _Loop()
    try:
        return SyncClient(loop.run(connect_async(source, **options)), loop)
    except BaseException:
        loop.stop()
        raise


def from_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> SyncClient:
    """`keeper.Client.from_config(path)`, blocking."""
    loop = _Loop()
    try:
        return SyncClient(loop.run(Client.from_config(path, environ=environ)), loop)
    except BaseException:
        loop.stop()
        raise
