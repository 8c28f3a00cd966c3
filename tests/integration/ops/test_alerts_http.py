"""Alert sinks over real HTTP: a local aiohttp receiver, a dead port, a slow server."""

from __future__ import annotations

import itertools
import logging
import time

import pytest

from keeper.alerts import AlertCode, Alerter, AlerterSettings, AlertEvent, SinkKind, SinkSettings
from keeper.model import Severity
from tests.integration.ops.conftest import Receiver

TOKEN = "987654321:AAFsecretBotTokenValue-xyz"
SECRET = "T0001/B0002/verysecretwebhookpath"


def wallet_low(key: str = "", severity: Severity = Severity.WARNING) -> AlertEvent:
    return AlertEvent(
        AlertCode.WALLET_LOW,
        severity,
        "wallet below reserve",
        key=key,
        venue="refex",
        figures=(("balance", "12.5"),),
    )


async def test_each_sink_format_reaches_the_receiver(receiver: Receiver) -> None:
    base = receiver.url
    alerter = Alerter(
        [
            SinkSettings(SinkKind.WEBHOOK, url=f"{base}/hook/{SECRET}"),
            SinkSettings(SinkKind.SLACK, url=f"{base}/slack/{SECRET}"),
            SinkSettings(SinkKind.DISCORD, url=f"{base}/discord/{SECRET}"),
            SinkSettings(SinkKind.TELEGRAM, url=base, token=TOKEN, chat_id="-1001"),
        ],
        AlerterSettings(source="k1"),
    )
    alerter.submit(wallet_low("0xpos"))
    await alerter.close()
    text = "k1 [WARNING] wallet_low refex/0xpos: wallet below reserve\nbalance=12.5"
    assert receiver.bodies("/slack/") == [{"text": text}]
    assert receiver.bodies("/discord/") == [{"content": text}]
    assert receiver.bodies(f"/bot{TOKEN}/sendMessage") == [
        {"chat_id": "-1001", "text": text, "disable_web_page_preview": True}
    ]
    (hook,) = receiver.bodies("/hook/")
    assert (hook["source"], hook["code"], hook["severity"], hook["key"], hook["venue"]) == (
        "k1",
        "wallet_low",
        "warning",
        "0xpos",
        "refex",
    )
    assert hook["figures"] == {"balance": "12.5"}
    assert hook["repeats"] == 0
    assert hook["text"] == text
    assert {s.sent for s in alerter.stats().values()} == {1}


async def test_dead_and_slow_sinks_do_not_stall_the_keeper(
    receiver: Receiver, dead_url: str
) -> None:
    alerter = Alerter(
        [
            SinkSettings(SinkKind.SLACK, url=f"{dead_url}/dead/{SECRET}", name="dead"),
            SinkSettings(SinkKind.SLACK, url=f"{receiver.url}/slow/{SECRET}", name="slow"),
            SinkSettings(SinkKind.SLACK, url=f"{receiver.url}/good/{SECRET}", name="good"),
        ],
        AlerterSettings(timeout_s=0.3),
    )
    await alerter.start()
    worst = 0.0
    for i in range(3):
        started = time.perf_counter()
        alerter.submit(wallet_low(str(i)))
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.05  # the keeper-side call only queues (it takes microseconds)
    assert len(await receiver.wait_for("/good/", 3)) == 3
    started = time.perf_counter()
    await alerter.close(timeout=5)
    assert time.perf_counter() - started < 2  # three timeouts of 0.3 s, one after another
    stats = alerter.stats()
    assert (stats["good"].sent, stats["good"].failed) == (3, 0)
    assert (stats["dead"].sent, stats["dead"].failed) == (0, 3)
    assert stats["dead"].last_error is not None
    assert stats["dead"].last_error.startswith("ClientConnectorError")
    assert (stats["slow"].sent, stats["slow"].failed) == (0, 3)
    assert stats["slow"].last_error == "timed out after 0.3s"


async def test_close_deadline_drops_what_is_left(receiver: Receiver) -> None:
    alerter = Alerter(
        [SinkSettings(SinkKind.WEBHOOK, url=f"{receiver.url}/slow/x", name="slow")],
        AlerterSettings(timeout_s=10),
    )
    for i in range(3):
        alerter.submit(wallet_low(str(i)))
    await alerter.start()
    started = time.perf_counter()
    await alerter.close(timeout=0.3)
    assert time.perf_counter() - started < 1
    slow = alerter.stats()["slow"]
    assert (slow.sent, slow.failed, slow.dropped, slow.queued) == (0, 0, 3, 0)


async def test_dedup_and_rate_limit_over_http(receiver: Receiver) -> None:
    alerter = Alerter(
        [SinkSettings(SinkKind.SLACK, url=f"{receiver.url}/slack/x", min_interval_s=0.2)],
        AlerterSettings(dedup_window_s=0.5),
    )
    started = time.monotonic()
    for _ in range(3):
        alerter.submit(wallet_low("same"))
    for key in ("a", "b"):
        alerter.submit(wallet_low(key))
    got = await receiver.wait_for("/slack/", 3)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert len(got) == 3
    assert all(gap >= 0.15 for gap in gaps), gaps
    while time.monotonic() - started < 0.55:
        await receiver.wait_for("/never/", 1, timeout=0.05)
    alerter.submit(wallet_low("same"))
    got = await receiver.wait_for("/slack/", 4)
    await alerter.close()
    texts = [str(b["text"]) for b in receiver.bodies("/slack/")]
    assert len(texts) == 4
    assert "suppressed" not in texts[0]
    assert texts[3].endswith("(2 similar alert(s) suppressed since the last one)")


async def test_no_secret_in_logs_reprs_or_errors(
    receiver: Receiver, dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sinks = [
        SinkSettings(SinkKind.SLACK, url=f"{dead_url}/dead/{SECRET}", name="dead"),
        SinkSettings(SinkKind.DISCORD, url=f"{receiver.url}/drop/{SECRET}", name="drop"),
        SinkSettings(SinkKind.WEBHOOK, url=f"{receiver.url}/fail/{SECRET}?k={SECRET}", name="500"),
        SinkSettings(SinkKind.TELEGRAM, url=f"{receiver.url}/drop", token=TOKEN, chat_id="1"),
        SinkSettings(SinkKind.TELEGRAM, url=dead_url, token=TOKEN, chat_id="1", name="tg-dead"),
    ]
    alerter = Alerter(sinks, AlerterSettings(timeout_s=2))
    alerter.submit(wallet_low("p", Severity.CRITICAL))
    alerter.alert(AlertCode.HALTED, Severity.CRITICAL, "halted by signal")
    await alerter.close()
    stats = alerter.stats()
    assert all(s.sent == 0 and s.failed == 2 for s in stats.values()), stats
    texts = {
        "logs": caplog.text,
        "alerter repr": repr(alerter) + str(alerter),
        "sink reprs": "".join(repr(s) + str(s) + f"{s}" for s in sinks),
        "stats and errors": repr(stats) + "".join(str(s.last_error) for s in stats.values()),
    }
    for where, text in texts.items():
        for secret in (SECRET, "verysecretwebhookpath", TOKEN, TOKEN.split(":")[1]):
            assert secret not in text, f"secret in {where}"
    assert "HTTP 500" in texts["stats and errors"]
    assert "ClientConnectorError" in texts["stats and errors"]
    assert "ServerDisconnectedError" in texts["stats and errors"]
