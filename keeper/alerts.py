"""Alerts to humans: webhook sinks over aiohttp, deduplicated, rate-limited, never in the way.

`Alerter(sinks, settings)` takes `AlertEvent`s (`submit`, `alert`, or `alert_action` for the
policy's `Alert` actions) from the keeper's loop and returns at once: each event is logged,
deduplicated (the same code, venue, key and severity within `dedup_window_s` goes out once;
the next one that goes out carries the count of repeats held back), then put on each sink's
bounded queue. A background task per sink sends its queue in order, under the sink's rate
limit (a token bucket: one message per `min_interval_s`, bursts of `burst`), with a timeout
per request. A sink that is down or slow only delays or drops its own messages; drops and
failures are counted (`stats()`) and logged. `close()` flushes what is queued, ignoring rate
limits, until a deadline, then drops the rest.

Sink kinds: a generic JSON webhook (the event's fields), Slack and Discord incoming webhooks
(`{"text": ...}`, `{"content": ...}`) and Telegram's bot API (`sendMessage` to `chat_id`).
Webhook URLs and the bot token are secrets: reprs show only scheme and host, and error text
is scrubbed of them before it is logged or kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote, urlsplit

import aiohttp

from keeper.model import Alert, Severity

__all__ = [
    "SEVERITY_RANK",
    "TELEGRAM_API",
    "AlertCode",
    "AlertEvent",
    "Alerter",
    "AlerterSettings",
    "HttpTransport",
    "SinkKind",
    "SinkSettings",
    "SinkStats",
    "Transport",
]

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
SEVERITY_RANK: Mapping[Severity, int] = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.CRITICAL: 2,
}
_LOG_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}
_TEXT_LIMIT = {"slack": 3000, "discord": 2000, "telegram": 4096}
_PRUNE_AT = 1024

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Observer = Callable[[str, str], None]


class AlertCode(StrEnum):
    """The keeper's own alert codes. Policy alerts keep their reason's code."""

    ACTION_SENT = "action_sent"
    ACTION_FAILED = "action_failed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    WALLET_LOW = "wallet_low"
    FEE_CAP_HIT = "fee_cap_hit"
    RPC_STALLED = "rpc_stalled"
    SEQUENCER_DOWN = "sequencer_down"
    HALTED = "halted"
    FATAL = "fatal"
    DELEGATION_LOST = "delegation_lost"
    DELEGATION_LOW = "delegation_low"
    LEADER_ACQUIRED = "leader_acquired"
    LEADERSHIP_LOST = "leadership_lost"
    JOURNAL_UNAVAILABLE = "journal_unavailable"


def _severity(value: object, what: str) -> Severity:
    if isinstance(value, Severity):
        return value
    try:
        return Severity(str(value))
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise ValueError(f"{what} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something to tell a human. `repeats` and `at` are set by the `Alerter`."""

    code: str
    severity: Severity
    message: str
    key: str = ""
    venue: str = ""
    figures: tuple[tuple[str, str], ...] = ()
    repeats: int = 0  # like events held back by deduplication before this one
    at: float = 0.0  # Unix seconds when submitted

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code:
            raise ValueError("alert code must be a non-empty string")
        object.__setattr__(self, "severity", _severity(self.severity, "alert severity"))
        if not isinstance(self.message, str):
            raise TypeError("alert message must be a string")

    @classmethod
    def from_action(cls, action: Alert) -> AlertEvent:
        """The policy's `Alert` action as an event (its reason's code, message and figures)."""
        return cls(
            code=action.reason.code,
            severity=action.severity,
            message=action.reason.message,
            key=action.key,
            venue=action.venue,
            figures=action.reason.figures,
        )

    @property
    def dedup_key(self) -> tuple[str, str, str, str]:
        return (self.code, self.venue, self.key, self.severity.value)

    def text(self, source: str = "") -> str:
        """One human-readable message."""
        subject = "/".join(p for p in (self.venue, self.key) if p)
        head = f"[{self.severity.value.upper()}] {self.code}" + (f" {subject}" if subject else "")
        if source:
            head = f"{source} {head}"
        lines = [f"{head}: {self.message}"]
        if self.figures:
            lines.append(", ".join(f"{k}={v}" for k, v in self.figures))
        if self.repeats:
            lines.append(f"({self.repeats} similar alert(s) suppressed since the last one)")
        return "\n".join(lines)

    def to_json(self, source: str = "") -> dict[str, object]:
        return {
            "source": source,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "venue": self.venue,
            "key": self.key,
            "figures": dict(self.figures),
            "repeats": self.repeats,
            "time": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "text": self.text(source),
        }


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    TELEGRAM = "telegram"


def safe_url(url: str) -> str:
    """`url` reduced to scheme and host (and port): safe to log."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _finite(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else '>= 0'}, got {value}")
    return float(value)


@dataclass(frozen=True, slots=True, repr=False)
class SinkSettings:
    """One alert destination.

    `url`: the webhook URL (webhook, slack, discord), or the bot API base for telegram
    (default `TELEGRAM_API`). `token` and `chat_id`: telegram only. `name` labels the sink in
    logs, stats and metrics (default: the kind). At most one message per `min_interval_s`
    (0: no limit) after a burst of `burst`; events below `min_severity` are not sent here.
    """

    kind: SinkKind
    url: str = ""
    token: str = ""
    chat_id: str = ""
    name: str = ""
    min_severity: Severity = Severity.INFO
    min_interval_s: float = 0.0
    burst: int = 1

    def __post_init__(self) -> None:
        try:
            kind = SinkKind(self.kind)
        except ValueError:
            choices = ", ".join(k.value for k in SinkKind)
            raise ValueError(f"alert sink kind must be one of {choices}") from None
        object.__setattr__(self, "kind", kind)
        name = self.name or kind.value
        object.__setattr__(self, "name", name)
        what = f"alert sink {name!r}"
        object.__setattr__(
            self, "min_severity", _severity(self.min_severity, f"{what}: min_severity")
        )
        _finite(f"{what}: min_interval_s", self.min_interval_s, positive=False)
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"{what}: burst must be an int >= 1")
        if kind is SinkKind.TELEGRAM:
            if not self.url:
                object.__setattr__(self, "url", TELEGRAM_API)
            if not self.token or any(c.isspace() or c in "/?#" for c in self.token):
                raise ValueError(f"{what}: token must be a Telegram bot token")
            if not str(self.chat_id).strip():
                raise ValueError(f"{what}: chat_id is required")
        elif self.token:
            raise ValueError(f"{what}: token is for telegram sinks only (put it in url)")
        if not isinstance(self.url, str) or not self.url:
            raise ValueError(f"{what}: url is required")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # The URL is a secret: say what is wrong without repeating it.
            raise ValueError(f"{what}: url must be an http(s) URL with a host")

    def __repr__(self) -> str:
        return (
            f"SinkSettings(kind={self.kind.value!r}, name={self.name!r}, "
            f"url={safe_url(self.url)!r}, min_severity={self.min_severity.value!r}, "
            f"min_interval_s={self.min_interval_s!r}, burst={self.burst!r})"
        )

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be logged: the URL, its path and query, the token."""
        out: set[str] = set()
        if self.kind is not SinkKind.TELEGRAM:
            parts = urlsplit(self.url)
            out.add(self.url)
            if parts.path.strip("/"):
                out.add(parts.path)
                out.add(parts.path.strip("/"))
            if parts.query:
                out.add(parts.query)
        if self.token:
            out.add(self.token)
        out |= {quote(s, safe="") for s in list(out)} | {quote(s) for s in list(out)}
        return tuple(sorted((s for s in out if len(s) >= 4), key=len, reverse=True))

    def request(self, event: AlertEvent, source: str = "") -> tuple[str, dict[str, object]]:
        """Where to POST `event` and the JSON body, in this sink's format."""
        if self.kind is SinkKind.WEBHOOK:
            return self.url, event.to_json(source)
        text = event.text(source)
        limit = _TEXT_LIMIT[self.kind.value]
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        if self.kind is SinkKind.SLACK:
            return self.url, {"text": text}
        if self.kind is SinkKind.DISCORD:
            return self.url, {"content": text}
        url = f"{self.url.rstrip('/')}/bot{self.token}/sendMessage"
        return url, {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}


@dataclass(frozen=True, slots=True)
class AlerterSettings:
    """How alerts are deduplicated, queued (per sink), timed out and flushed on close."""

    dedup_window_s: float = 300.0
    queue_size: int = 100
    timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    source: str = "perp-keeper"  # names this keeper in every message

    def __post_init__(self) -> None:
        _finite("alerts dedup_window_s", self.dedup_window_s, positive=False)
        _finite("alerts timeout_s", self.timeout_s, positive=True)
        _finite("alerts close_timeout_s", self.close_timeout_s, positive=False)
        q = self.queue_size
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise ValueError(f"alerts queue_size must be an int >= 1, got {q!r}")


@dataclass(frozen=True, slots=True)
class SinkStats:
    name: str
    queued: int
    sent: int
    failed: int
    dropped: int
    last_error: str | None


class Transport(Protocol):
    """Sends one JSON POST and answers the HTTP status; raises on transport errors."""

    async def post(self, url: str, body: Mapping[str, object], timeout: float) -> int: ...

    async def close(self) -> None: ...


class HttpTransport:
    """The aiohttp transport: one client session, no redirects followed."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return "HttpTransport()"

    async def post(self, url: str, body: Mapping[str, object], timeout: float) -> int:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            await resp.read()
            return resp.status

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _Bucket:
    """A token bucket with reservations: `reserve(now)` says how long to wait for a token."""

    def __init__(self, interval: float, burst: int, now: float) -> None:
        self.rate = 0.0 if interval == 0 else 1.0 / interval
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def reserve(self, now: float) -> float:
        if self.rate == 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class _Seen:
    sent_at: float
    suppressed: int = 0


@dataclass(slots=True)
class _Sink:
    settings: SinkSettings
    queue: asyncio.Queue[AlertEvent]
    bucket: _Bucket
    secrets: tuple[str, ...]
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Alerter:
    """Takes alert events without waiting and delivers them to sinks in the background."""

    def __init__(
        self,
        sinks: Sequence[SinkSettings] = (),
        settings: AlerterSettings | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings or AlerterSettings()
        names = [s.name for s in sinks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert sink names must differ (set `name`): {', '.join(dupes)}")
        self._transport: Transport = transport or HttpTransport()
        self._clock = clock
        self._sleep = sleep
        self._observer = observer
        now = clock()
        self._sinks = [
            _Sink(
                settings=s,
                queue=asyncio.Queue(self.settings.queue_size),
                bucket=_Bucket(s.min_interval_s, s.burst, now),
                secrets=s.secrets(),
            )
            for s in sinks
        ]
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}
        self._closing = asyncio.Event()
        self._started = False
        self._closed = False
        self.submitted = 0
        self.suppressed = 0

    def __repr__(self) -> str:
        return f"Alerter({[s.settings for s in self._sinks]!r})"

    # --- the keeper's side: never waits ----------------------------------------------------

    def submit(self, event: AlertEvent) -> bool:
        """Log, deduplicate and queue `event`; False when it was held back or the alerter closed."""
        now = self._clock()
        self.submitted += 1
        if self._closed:
            log.warning("alert after close, not sent: %s", event.text().replace("\n", " | "))
            return False
        seen = self._seen.get(event.dedup_key)
        window = self.settings.dedup_window_s
        if seen is not None and now - seen.sent_at < window:
            seen.suppressed += 1
            self.suppressed += 1
            log.debug("alert %s suppressed as a repeat (%d)", event.code, seen.suppressed)
            return False
        repeats = seen.suppressed if seen is not None else 0
        self._seen[event.dedup_key] = _Seen(now)
        if len(self._seen) > _PRUNE_AT:
            self._prune(now)
        event = dataclasses.replace(event, repeats=repeats, at=now)
        log.log(
            _LOG_LEVEL.get(event.severity, logging.ERROR),
            "alert %s",
            event.text().replace("\n", " | "),
        )
        self._ensure_started()
        for sink in self._sinks:
            if SEVERITY_RANK[event.severity] < SEVERITY_RANK[sink.settings.min_severity]:
                continue
            try:
                sink.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._dropped(sink, 1, "queue full")
        return True

    def alert(
        self,
        code: str,
        severity: Severity,
        message: str,
        *,
        key: str = "",
        venue: str = "",
        figures: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Submit an event built from its fields (the loop's `Events.alert`)."""
        self.submit(AlertEvent(code, severity, message, key, venue, figures))

    def alert_action(self, action: Alert) -> bool:
        """Submit the policy's `Alert` action."""
        return self.submit(AlertEvent.from_action(action))

    def stats(self) -> dict[str, SinkStats]:
        return {
            s.settings.name: SinkStats(
                s.settings.name, s.queue.qsize(), s.sent, s.failed, s.dropped, s.last_error
            )
            for s in self._sinks
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        self._ensure_started()
        return self

    async def close(self, timeout: float | None = None) -> None:
        """Flush the queues (rate limits off) for up to `timeout` seconds, then drop the rest."""
        if self._closed:
            return
        self._ensure_started()
        self._closed = True
        self._closing.set()
        deadline = self.settings.close_timeout_s if timeout is None else timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(s.queue.join() for s in self._sinks))
        tasks = [s.task for s in self._sinks if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sink in self._sinks:
            left = sink.queue.qsize()
            while not sink.queue.empty():
                sink.queue.get_nowait()
                sink.queue.task_done()
            if left:
                self._dropped(sink, left, f"not delivered within the {deadline:g}s close deadline")
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the background side -----------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # queued; the workers start with the first call inside the event loop
        self._started = True
        for sink in self._sinks:
            sink.task = asyncio.create_task(self._run(sink), name=f"alerts:{sink.settings.name}")

    async def _run(self, sink: _Sink) -> None:
        while True:
            event = await sink.queue.get()
            try:
                if not self._closing.is_set():
                    wait = sink.bucket.reserve(self._clock())
                    if wait > 0:
                        await self._wait(wait)
                await self._deliver(sink, event)
            except asyncio.CancelledError:
                self._dropped(sink, 1, "cancelled while being sent")
                raise
            finally:
                sink.queue.task_done()

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the alerter starts closing."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({sleeper, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            closing.cancel()

    async def _deliver(self, sink: _Sink, event: AlertEvent) -> None:
        name = sink.settings.name
        timeout = self.settings.timeout_s
        url, body = sink.settings.request(event, self.settings.source)
        try:
            async with asyncio.timeout(timeout):
                status = await self._transport.post(url, body, timeout)
        except TimeoutError:
            error = f"timed out after {timeout:g}s"
        except Exception as exc:  # any failure of one sink stays with that sink
            error = scrub(f"{type(exc).__name__}: {exc}", sink.secrets)
        else:
            if 200 <= status < 300:
                sink.sent += 1
                self._observe(name, "sent")
                return
            error = f"HTTP {status}"
        sink.failed += 1
        sink.last_error = error
        self._observe(name, "failed")
        log.warning(
            "alert sink %s (%s): %s not delivered: %s",
            name, safe_url(sink.settings.url), event.code, error,
        )  # fmt: skip

    def _dropped(self, sink: _Sink, count: int, why: str) -> None:
        sink.dropped += count
        for _ in range(count):
            self._observe(sink.settings.name, "dropped")
        log.warning(
            "alert sink %s: %d alert(s) dropped (%s); %d dropped so far",
            sink.settings.name, count, why, sink.dropped,
        )  # fmt: skip

    def _observe(self, sink: str, result: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer(sink, result)
        except Exception:
            log.exception("alert observer failed")

    def _prune(self, now: float) -> None:
        window = self.settings.dedup_window_s
        for k in [
            k for k, v in self._seen.items() if not v.suppressed and now - v.sent_at >= window
        ]:
            del self._seen[k]
