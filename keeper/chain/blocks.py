"""The block stream: new heads, one at a time, always the newest.

`BlockStream(rpc)` is an async iterator of `NewHead`s. It polls eth_getBlockByNumber("latest")
(one request per poll) every `poll_interval` seconds; with `heads` (an endpoint that pushes new
heads, such as a `Web3Rpc` over a WebSocket or IPC provider: `FailoverRpc.head_source()`) it
also takes the heads the node pushes and polls only as a safety net (when the subscription is
down, or silent for `ws_silence` seconds).

It never queues: when the consumer is slow, or blocks came faster than the polls, the next
head is the newest one, and `NewHead.skipped` says how many blocks were jumped over
(`skipped_total` sums them). A head that does not build on the previous one (parent hash
mismatch, same height with another hash, or a shorter chain) comes with `reorg=True` and the
head it replaces. When a jump hides the link, the block at the previous head's height is
fetched to check it is still the same.

Given a `FailoverRpc`, every `refresh_heads_every`-th poll also asks all endpoints for their
heads (`refresh_heads()`), so that a lagging preferred endpoint is noticed and passed over
from the next poll on. The refresh runs beside the poll, not before it: an endpoint that hangs
holds up the refresh (until its timeout), never the head.

An endpoint that answers with an older head than one already seen (a lagging node behind a
failover client) is not a reorg: the previous head is looked up, and if it is still there the
answer is ignored.

Poll errors do not end the stream: they are counted (`errors`, `last_error`) and retried after
`poll_interval`; with `stall_timeout`, no new head for that long raises `BlockStreamStalledError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, Self

from keeper.chain.jsonrpc import JsonRpc, RpcBlockUnavailableError, RpcError
from keeper.chain.rpc import BlockHeader, ChainReads, Reads

__all__ = ["BlockStream", "BlockStreamStalledError", "HeadSource", "NewHead", "next_head"]

log = logging.getLogger(__name__)


class HeadSource(Protocol):
    """An endpoint that pushes the chain's new heads (eth_subscribe newHeads)."""

    label: str

    def new_heads(self) -> AsyncIterator[BlockHeader]:
        """The heads as they come; ends, or raises an RpcError, when the subscription fails."""
        ...


class BlockStreamStalledError(RpcError):
    """No new head arrived within the stream's `stall_timeout`."""


@dataclass(frozen=True, slots=True)
class NewHead:
    """A new head of the chain, as the stream yields it."""

    header: BlockHeader
    skipped: int = 0  # blocks between the previous yielded head and this one, not yielded
    reorg: bool = False  # this head does not extend the previous yielded head
    replaced: BlockHeader | None = None  # the previous head, when it is no longer canonical

    @property
    def number(self) -> int:
        return self.header.number

    @property
    def hash(self) -> str:
        return self.header.hash


def next_head(
    previous: BlockHeader | None, latest: BlockHeader, *, ancestor_hash: str | None = None
) -> NewHead | None:
    """What `latest` means after `previous`: a NewHead, or None when it is nothing new.

    `ancestor_hash` is the hash, as the node now sees it, of the block at `previous.number`
    (needed only when `latest` is more than one block ahead; without it a jump is trusted).
    A `latest` below `previous` is reported as a reorg: callers check first that it is not a
    lagging endpoint's stale answer.
    """
    if previous is None:
        return NewHead(latest)
    if latest.hash == previous.hash:
        return None
    if latest.number == previous.number + 1:
        reorg = latest.parent_hash != previous.hash
        return NewHead(latest, reorg=reorg, replaced=previous if reorg else None)
    if latest.number > previous.number + 1:
        skipped = latest.number - previous.number - 1
        reorg = ancestor_hash is not None and ancestor_hash != previous.hash
        return NewHead(latest, skipped=skipped, reorg=reorg, replaced=previous if reorg else None)
    return NewHead(latest, reorg=True, replaced=previous)


class BlockStream:
    """Async iterator of new heads; see the module's docstring."""

    def __init__(
        self,
        rpc: JsonRpc,
        *,
        poll_interval: float = 1.0,
        heads: HeadSource | None = None,
        ws_silence: float = 10.0,
        check_jumps: bool = True,
        refresh_heads_every: int = 10,
        stall_timeout: float | None = None,
    ) -> None:
        self.reads: ChainReads = rpc if isinstance(rpc, ChainReads) else Reads(rpc)
        self.rpc = rpc
        self.poll_interval = poll_interval
        self.heads = heads
        self.ws_silence = ws_silence
        self.check_jumps = check_jumps
        self.refresh_heads_every = refresh_heads_every
        self.stall_timeout = stall_timeout
        self.head: BlockHeader | None = None  # the last head yielded
        self.skipped_total = 0
        self.reorgs = 0
        self.polls = 0
        self.errors = 0
        self.last_error: Exception | None = None
        self.ws_connected = False
        self.ws_reconnects = 0
        self._last_poll = -float("inf")
        self._last_new = time.monotonic()
        self._pushed: BlockHeader | None = None  # newest header the socket delivered
        self._pushed_event = asyncio.Event()
        self._ws_task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Future[object] | None = None

    def __aiter__(self) -> AsyncIterator[NewHead]:
        return self

    async def __anext__(self) -> NewHead:
        return await self.next()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        task, self._ws_task = self._ws_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        refresh, self._refresh = self._refresh, None
        if refresh is not None and not refresh.done():
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh

    async def next(self) -> NewHead:
        """The next new head: waits for one; skips to the newest when behind."""
        if self.heads is not None and self._ws_task is None:
            self._ws_task = asyncio.create_task(self._ws_reader(self.heads))
        while True:
            header = await self._candidate()
            if header is not None:
                event = await self._judge(header)
                if event is not None:
                    self._accept(event)
                    return event
            if self.stall_timeout is not None:
                stalled_for = time.monotonic() - self._last_new
                if stalled_for > self.stall_timeout:
                    raise BlockStreamStalledError(
                        "newHeads",
                        f"no new block for {stalled_for:.1f}s (last error: {self.last_error})",
                    )

    async def poll_once(self) -> NewHead | None:
        """Poll now, without waiting: the new head, or None (nothing new, or the poll failed)."""
        header = await self._poll()
        if header is None:
            return None
        event = await self._judge(header)
        if event is not None:
            self._accept(event)
        return event

    def _accept(self, event: NewHead) -> None:
        self.head = event.header
        self.skipped_total += event.skipped
        self.reorgs += int(event.reorg)
        self._last_new = time.monotonic()
        if event.reorg:
            log.warning(
                "reorg: head %d %s replaced by %d %s",
                event.replaced.number if event.replaced else -1,
                event.replaced.hash if event.replaced else "?",
                event.number,
                event.hash,
            )

    async def _candidate(self) -> BlockHeader | None:
        """A header that may be new: pushed by the socket, or polled when it is time."""
        if self._pushed is not None:
            header, self._pushed = self._pushed, None
            self._pushed_event.clear()
            return header
        wait = self._last_poll + self._poll_period() - time.monotonic()
        if wait > 0:
            self._pushed_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pushed_event.wait(), timeout=wait)
            if self._pushed is not None:
                return await self._candidate()
        return await self._poll()

    def _poll_period(self) -> float:
        if self.ws_connected:
            return max(self.ws_silence, self.poll_interval)
        return self.poll_interval

    async def _poll(self) -> BlockHeader | None:
        self._last_poll = time.monotonic()
        self.polls += 1
        try:
            refresh = getattr(self.rpc, "refresh_heads", None)
            if (
                refresh is not None
                and self.refresh_heads_every
                and (self.polls % self.refresh_heads_every == 1 or self.refresh_heads_every == 1)
                and (self._refresh is None or self._refresh.done())
            ):
                self._refresh = asyncio.ensure_future(refresh())
                self._refresh.add_done_callback(_refreshed)
            return await self.reads.get_block("latest")
        except RpcError as exc:
            self.errors += 1
            self.last_error = exc
            log.warning("block poll failed: %s", exc)
            return None

    async def _judge(self, header: BlockHeader) -> NewHead | None:
        previous = self.head
        if previous is None or header.hash == previous.hash:
            return next_head(previous, header)
        try:
            if header.number <= previous.number:
                # Older or same height, other hash: a reorg, or a lagging endpoint's answer.
                try:
                    now_there = await self.reads.get_block(previous.number)
                except RpcBlockUnavailableError:
                    return next_head(previous, header)  # the chain got shorter
                if now_there.hash == previous.hash and header.number < previous.number:
                    return None  # a stale answer: our head is still canonical
                return next_head(previous, header)
            if header.number > previous.number + 1 and self.check_jumps:
                ancestor = await self.reads.get_block(previous.number)
                return next_head(previous, header, ancestor_hash=ancestor.hash)
        except RpcError as exc:
            self.errors += 1
            self.last_error = exc
            log.warning("block check failed: %s", exc)
            return None
        return next_head(previous, header)

    # -- WebSocket newHeads --

    async def _ws_reader(self, source: HeadSource) -> None:
        backoff = self.poll_interval
        while True:
            try:
                async for header in source.new_heads():
                    self.ws_connected = True
                    backoff = self.poll_interval
                    newest = self._pushed
                    if newest is None or header.number >= newest.number:
                        self._pushed = header
                        self._pushed_event.set()
                raise RpcError("eth_subscribe", "the subscription ended", endpoint=source.label)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the subscription failed: poll meanwhile, then again
                self.errors += 1
                self.last_error = exc
                log.warning("newHeads subscription at %s failed: %s", source.label, exc)
            self.ws_connected = False
            self.ws_reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def _refreshed(task: asyncio.Future[object]) -> None:
    """A head refresh ended: its failure, if any, is logged (it answers None per endpoint that
    failed, so this is only for the unexpected)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("head refresh failed: %s", task.exception())
