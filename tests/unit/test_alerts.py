"""Alerter and sinks without a network: a recording transport, an injected clock and sleep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest

from keeper.alerts import (
    TELEGRAM_API,
    AlertCode,
    Alerter,
    AlerterSettings,
    AlertEvent,
    SinkKind,
    SinkSettings,
    safe_url,
)
from keeper.model import Alert, Reason, Scope, Severity

HOOK = "https://hooks.example.com/services/T000/B000/SECRETPATHXYZ"
TOKEN = "123456789:AAHsecretTokenValue_xyz"


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


class Recorder:
    """A transport that records (clock time, url, body); `fail`/`hang` per URL prefix."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.posts: list[tuple[float, str, Mapping[str, object]]] = []
        self.fail: dict[str, BaseException | int] = {}
        self.hang: set[str] = set()
        self.closed = False

    async def post(self, url: str, body: Mapping[str, object], timeout: float) -> int:
        for prefix in self.hang:
            if url.startswith(prefix):
                await asyncio.Event().wait()
        for prefix, what in self.fail.items():
            if url.startswith(prefix):
                if isinstance(what, int):
                    return what
                raise what
        self.posts.append((self.clock.t, url, body))
        return 200

    async def close(self) -> None:
        self.closed = True

    def bodies(self, prefix: str = "") -> list[Mapping[str, object]]:
        return [b for _, u, b in self.posts if u.startswith(prefix)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder(clock: FakeClock) -> Recorder:
    return Recorder(clock)


def make(
    recorder: Recorder,
    clock: FakeClock,
    *sinks: SinkSettings,
    observed: list[tuple[str, str]] | None = None,
    **settings: object,
) -> Alerter:
    return Alerter(
        sinks or (SinkSettings(SinkKind.WEBHOOK, url="http://a.test/hook"),),
        AlerterSettings(**settings),  # type: ignore[arg-type]
        transport=recorder,
        clock=clock,
        sleep=clock.sleep,
        observer=None if observed is None else lambda s, r: observed.append((s, r)),
    )


def event(code: str = AlertCode.WALLET_LOW, key: str = "", **kw: object) -> AlertEvent:
    severity = kw.pop("severity", Severity.WARNING)
    return AlertEvent(code, severity, kw.pop("message", "wallet is low"), key, **kw)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# --- formats -------------------------------------------------------------------------------


def test_formats_per_sink_kind() -> None:
    e = AlertEvent(
        "top_up_short",
        Severity.CRITICAL,
        "cannot restore margin",
        key="0xpos",
        venue="refex",
        figures=(("ratio", "0.041"), ("needed", "120.5")),
        repeats=2,
        at=0.0,
    )
    text = (
        "k1 [CRITICAL] top_up_short refex/0xpos: cannot restore margin\n"
        "ratio=0.041, needed=120.5\n(2 similar alert(s) suppressed since the last one)"
    )
    assert SinkSettings(SinkKind.SLACK, url=HOOK).request(e, "k1") == (HOOK, {"text": text})
    assert SinkSettings(SinkKind.DISCORD, url=HOOK).request(e, "k1") == (HOOK, {"content": text})
    url, body = SinkSettings(SinkKind.TELEGRAM, token=TOKEN, chat_id="-100").request(e, "k1")
    assert url == f"{TELEGRAM_API}/bot{TOKEN}/sendMessage"
    assert body == {"chat_id": "-100", "text": text, "disable_web_page_preview": True}
    url, body = SinkSettings(SinkKind.WEBHOOK, url=HOOK).request(e, "k1")
    assert body == {
        "source": "k1",
        "code": "top_up_short",
        "severity": "critical",
        "message": "cannot restore margin",
        "venue": "refex",
        "key": "0xpos",
        "figures": {"ratio": "0.041", "needed": "120.5"},
        "repeats": 2,
        "time": "1970-01-01T00:00:00+00:00",
        "text": text,
    }


def test_long_text_is_cut_to_the_sink_limit() -> None:
    e = AlertEvent("x", Severity.INFO, "m" * 5000)
    _, body = SinkSettings(SinkKind.DISCORD, url=HOOK).request(e)
    content = body["content"]
    assert isinstance(content, str)
    assert len(content) == 2000
    assert content.endswith("…")


def test_policy_alert_maps_in() -> None:
    action = Alert(
        venue="refex",
        scope=Scope.POSITION,
        key="0xabc",
        account="0xacc",
        severity=Severity.CRITICAL,
        reason=Reason("budget_exhausted", "daily cap reached", (("spent", "500"),)),
    )
    e = AlertEvent.from_action(action)
    assert (e.code, e.severity, e.message, e.key, e.venue, e.figures) == (
        "budget_exhausted",
        Severity.CRITICAL,
        "daily cap reached",
        "0xabc",
        "refex",
        (("spent", "500"),),
    )


def test_event_validation() -> None:
    with pytest.raises(ValueError, match="alert code must be a non-empty string"):
        AlertEvent("", Severity.INFO, "m")
    with pytest.raises(ValueError, match="alert severity must be one of info, warning, critical"):
        AlertEvent("x", "loud", "m")  # type: ignore[arg-type]
    assert AlertEvent("x", "warning", "m").severity is Severity.WARNING  # type: ignore[arg-type]


# --- settings and secrets ------------------------------------------------------------------


def test_repr_shows_only_scheme_and_host() -> None:
    for s in (
        SinkSettings(SinkKind.SLACK, url=HOOK),
        SinkSettings(SinkKind.TELEGRAM, token=TOKEN, chat_id="42"),
        SinkSettings(SinkKind.WEBHOOK, url="https://user:pw@h.test:8443/x?k=SECRETQ"),
    ):
        text = repr(s) + str(s) + repr(Alerter([s]))
        for secret in ("SECRETPATHXYZ", "B000", TOKEN, "AAHsecret", "SECRETQ", "pw"):
            assert secret not in text
    assert "https://hooks.example.com" in repr(SinkSettings(SinkKind.SLACK, url=HOOK))
    assert safe_url("https://user:pw@h.test:8443/x?k=1") == "https://h.test:8443"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "pager"}, "alert sink kind must be one of webhook, slack, discord, telegram"),
        ({"kind": SinkKind.SLACK}, "alert sink 'slack': url is required"),
        ({"kind": SinkKind.SLACK, "url": "ftp://x/SECRETPATHXYZ"}, "url must be an http"),
        ({"kind": SinkKind.TELEGRAM, "chat_id": "1"}, "'telegram': token must be"),
        ({"kind": SinkKind.TELEGRAM, "token": "a/b", "chat_id": "1"}, "token must be"),
        ({"kind": SinkKind.TELEGRAM, "token": TOKEN}, "chat_id is required"),
        ({"kind": SinkKind.DISCORD, "url": HOOK, "token": TOKEN}, "token is for telegram"),
        ({"kind": "webhook", "url": HOOK, "min_severity": "loud"}, "min_severity must be one of"),
        ({"kind": "webhook", "url": HOOK, "min_interval_s": -1}, "min_interval_s must be >= 0"),
        ({"kind": "webhook", "url": HOOK, "burst": 0, "name": "ops"}, "'ops': burst must be"),
    ],
)
def test_sink_settings_errors_name_the_field(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        SinkSettings(**kwargs)  # type: ignore[arg-type]
    assert "SECRETPATHXYZ" not in str(info.value)
    assert TOKEN not in str(info.value)


def test_alerter_settings_errors() -> None:
    with pytest.raises(ValueError, match="alerts queue_size must be an int >= 1"):
        AlerterSettings(queue_size=0)
    with pytest.raises(ValueError, match="alerts timeout_s must be positive"):
        AlerterSettings(timeout_s=0)
    with pytest.raises(ValueError, match="alert sink names must differ"):
        Alerter([SinkSettings("slack", url=HOOK), SinkSettings("slack", url=HOOK)])  # type: ignore[arg-type]


async def test_errors_are_scrubbed(
    recorder: Recorder, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder.fail = {
        "https://hooks": OSError(f"cannot reach {HOOK}"),
        TELEGRAM_API: RuntimeError(f"bad url {TELEGRAM_API}/bot{TOKEN}/sendMessage"),
    }
    alerter = make(
        recorder,
        clock,
        SinkSettings(SinkKind.SLACK, url=HOOK),
        SinkSettings(SinkKind.TELEGRAM, token=TOKEN, chat_id="1"),
    )
    alerter.submit(event())
    await alerter.close()
    stats = alerter.stats()
    assert stats["slack"].failed == stats["telegram"].failed == 1
    assert stats["slack"].last_error == "OSError: cannot reach ***"
    assert (
        stats["telegram"].last_error == f"RuntimeError: bad url {TELEGRAM_API}/bot***/sendMessage"
    )
    for secret in ("SECRETPATHXYZ", TOKEN):
        assert secret not in caplog.text
        assert secret not in repr(stats)


# --- dedup, severity, rate limits, queues --------------------------------------------------


async def test_dedup_window_and_repeat_count(recorder: Recorder, clock: FakeClock) -> None:
    alerter = make(recorder, clock, dedup_window_s=60)
    assert alerter.submit(event(key="a"))
    assert not alerter.submit(event(key="a"))
    clock.t += 30
    assert not alerter.submit(event(key="a", message="wallet is lower"))
    assert alerter.submit(event(key="b"))  # another key
    assert alerter.submit(event(key="a", severity=Severity.CRITICAL))  # escalation
    clock.t += 30  # the window counts from the last one sent
    assert alerter.submit(event(key="a"))
    assert not alerter.submit(event(key="a"))
    await alerter.close()
    bodies = recorder.bodies()
    assert [(b["key"], b["severity"], b["repeats"]) for b in bodies] == [
        ("a", "warning", 0),
        ("b", "warning", 0),
        ("a", "critical", 0),
        ("a", "warning", 2),
    ]
    assert alerter.suppressed == 3
    assert alerter.submitted == 7


async def test_min_severity_per_sink(recorder: Recorder, clock: FakeClock) -> None:
    alerter = make(
        recorder,
        clock,
        SinkSettings(SinkKind.WEBHOOK, url="http://all.test/", name="all"),
        SinkSettings(SinkKind.WEBHOOK, url="http://crit.test/", min_severity=Severity.CRITICAL),
    )
    alerter.alert(AlertCode.ACTION_SENT, Severity.INFO, "sent 0x1", key="p")
    alerter.alert(AlertCode.HALTED, Severity.CRITICAL, "halted")
    await alerter.close()
    assert [b["code"] for b in recorder.bodies("http://all")] == ["action_sent", "halted"]
    assert [b["code"] for b in recorder.bodies("http://crit")] == ["halted"]


async def test_rate_limit_spaces_sends(recorder: Recorder, clock: FakeClock) -> None:
    t0 = clock.t
    sink = SinkSettings(SinkKind.SLACK, url=HOOK, min_interval_s=10, burst=2)
    alerter = make(recorder, clock, sink)
    for i in range(5):
        alerter.submit(event(key=str(i)))
    await settle()
    assert [t - t0 for t, _, _ in recorder.posts] == [0, 0, 10, 20, 30]
    await alerter.close()


async def test_close_flushes_without_rate_limit(recorder: Recorder, clock: FakeClock) -> None:
    never = FakeClock()

    async def frozen_sleep(seconds: float) -> None:
        await asyncio.Event().wait()  # a rate-limit wait that would never end

    alerter = Alerter(
        [SinkSettings(SinkKind.SLACK, url=HOOK, min_interval_s=3600)],
        transport=recorder,
        clock=never,
        sleep=frozen_sleep,
    )
    for i in range(3):
        alerter.submit(event(key=str(i)))
    await settle()
    assert len(recorder.posts) == 1
    await alerter.close(timeout=1)
    assert len(recorder.posts) == 3
    assert alerter.stats()["slack"].dropped == 0
    assert recorder.closed


async def test_full_queue_drops_and_counts(recorder: Recorder, clock: FakeClock) -> None:
    observed: list[tuple[str, str]] = []
    recorder.hang.add("http://slow.test")
    alerter = make(
        recorder,
        clock,
        SinkSettings(SinkKind.WEBHOOK, url="http://slow.test/", name="slow"),
        SinkSettings(SinkKind.WEBHOOK, url="http://fine.test/", name="fine"),
        observed=observed,
        queue_size=2,
    )
    for i in range(5):
        assert alerter.submit(event(key=str(i)))
        await settle()
    # slow: one hanging in flight, two queued, two dropped; fine: all five sent
    assert alerter.stats()["slow"].dropped == 2
    assert alerter.stats()["slow"].queued == 2
    assert len(recorder.bodies("http://fine")) == 5
    await alerter.close(timeout=0.05)
    slow = alerter.stats()["slow"]
    assert (slow.sent, slow.failed, slow.dropped, slow.queued) == (0, 0, 5, 0)
    assert observed.count(("slow", "dropped")) == 5
    assert observed.count(("fine", "sent")) == 5


async def test_failures_are_counted_per_sink(recorder: Recorder, clock: FakeClock) -> None:
    recorder.fail = {"http://down.test": ConnectionRefusedError("refused"), "http://500.test": 500}
    alerter = make(
        recorder,
        clock,
        SinkSettings(SinkKind.WEBHOOK, url="http://down.test/", name="down"),
        SinkSettings(SinkKind.WEBHOOK, url="http://500.test/", name="err"),
        SinkSettings(SinkKind.WEBHOOK, url="http://ok.test/", name="ok"),
    )
    alerter.submit(event())
    await alerter.close()
    stats = alerter.stats()
    assert (stats["down"].failed, stats["down"].last_error) == (
        1,
        "ConnectionRefusedError: refused",
    )
    assert (stats["err"].failed, stats["err"].last_error) == (1, "HTTP 500")
    assert (stats["ok"].sent, stats["ok"].failed) == (1, 0)


async def test_submit_after_close_is_refused(recorder: Recorder, clock: FakeClock) -> None:
    alerter = make(recorder, clock)
    await alerter.close()
    assert not alerter.submit(event())
    assert recorder.posts == []


def test_submit_outside_a_loop_queues_until_started(recorder: Recorder, clock: FakeClock) -> None:
    alerter = make(recorder, clock)
    assert alerter.submit(event())

    async def later() -> None:
        async with alerter:
            pass

    asyncio.run(later())
    assert len(recorder.posts) == 1
