"""`keeper calc`: the worked case, JSON keys, cross accounts, and bad input exiting 2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keeper.cli import main

ONE = ["--side", "long", "--size", "1", "--entry", "1"]
NO_RATE = "(no --maintenance rate given: liquidation at zero equity)"
WORKED = ["calc", "--side", "long", "--size", "1000", "--entry", "2.5", "--collateral", "250"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main([*argv, "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_worked_case_at_3(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, *WORKED, "--price", "3")
    assert data["notional"] == "3000"
    assert data["initial_margin"] == "250"
    assert data["pnl"] == "500"
    assert data["return_on_margin"] == "2"  # 200% on margin
    assert data["liquidation_price"] == "2.25"
    assert data["distance_to_liquidation"] == "0.25"
    assert data["margin_ratio"] == "0.25"
    assert data["leverage"] == "4"
    assert data["liquidatable"] is False


def test_worked_case_with_leverage_at_2_20(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "--side", "long", "--size", "1000", "--entry", "2.5", "--leverage", "10"]
    data = run_json(capsys, *argv, "--price", "2.2")
    assert data["collateral"] == "250"
    assert data["liquidatable"] is True
    assert data["leverage"] is None
    assert data["pnl"] == "-300"
    assert data["return_on_margin"] == "-1.2"


def test_short_with_maintenance_close_fee_and_entry_basis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["calc", "--side", "short", "--size", "1000", "--entry", "2.5", "--collateral", "250"]
    data = run_json(capsys, *argv, "--maintenance", "0.01", "--close-fee", "0.001")
    assert data["liquidation_price"] == "2.720079129574678536"
    assert data["maintenance_margin"] == "25"
    assert data["equity"] == "247.5"
    data = run_json(capsys, *argv, "--maintenance", "0.01", "--basis", "entry", "--fees", "10")
    assert data["liquidation_price"] == "2.715"  # (qE(1 - m) + C - F0) / q = 2715 / 1000


def test_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*WORKED, "--price", "3"]) == 0
    out = capsys.readouterr().out
    assert "liquidation price        2.25" in out
    assert "return on margin         2" in out
    assert "liquidatable             no" in out


def test_cross(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "cross", "--balance", "500", "--maintenance", "0.01"]
    argv += ["--position", "long:1000:2.5:2.4", "--position", "short:10:100"]
    data = run_json(capsys, *argv)
    assert data["equity"] == "400"
    assert data["total_notional"] == "3400"
    assert data["maintenance_margin"] == "34"
    assert data["margin_ratio"] == "0.117647058823529411"
    long_, short = data["positions"]
    assert long_["liquidation_price"] == "2.030303030303030304"  # 2010 / 990, up
    assert short["liquidation_price"] == "136.237623762376237623"  # 1376 / 10.1, down
    assert main(argv) == 0
    assert "position 1: short 10 at 100" in capsys.readouterr().out


def test_help_documents_the_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calc", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("return_on_margin", "distance_to_liquidation", "total_notional", "initial_margin"):
        assert key in out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--side", "long", "--size", "0", "--entry", "2", "--leverage", "2"], "--size"),
        (["--side", "long", "--size", "-1", "--entry", "2", "--leverage", "2"], "--size"),
        (["--side", "long", "--size", "abc", "--entry", "2", "--leverage", "2"], "--size"),
        (["--side", "long", "--size", "NaN", "--entry", "2", "--leverage", "2"], "--size"),
        (["--side", "long", "--size", "1", "--entry", "0", "--leverage", "2"], "--entry"),
        ([*ONE, "--price", "-2", "--leverage", "2"], "--price"),
        (["--side", "long", "--size", "1", "--entry", "1", "--leverage", "1001"], "--leverage"),
        (["--side", "long", "--size", "1", "--entry", "1", "--leverage", "0"], "--leverage"),
        ([*ONE, "--leverage", "2", "--maintenance", "1"], "--maintenance"),
        ([*ONE, "--leverage", "2", "--maintenance", "-0.1"], "--maintenance"),
        (ONE, "--collateral"),
        ([*ONE, "--leverage", "2", "--close-fee", "1.5"], "--close-fee"),
        ([*ONE, "--leverage", "2", "--size", "1.0000000000000000001"], "--size"),
        ([*ONE, "--leverage", "2", "--collateral", "1"], "--collateral"),
        (["--side", "sideways", "--size", "1", "--entry", "1", "--leverage", "2"], "--side"),
        (["--size", "1", "--entry", "1", "--leverage", "2"], "--side"),
        (["cross", "--balance", "10", "--position", "long:1:0"], "--position"),
        (["cross", "--balance", "-10", "--position", "long:1:1"], "--balance"),
        (["cross", "--balance", "10", "--position", "up:1:1"], "--position"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    assert main(["calc", *argv]) == 2
    assert flag in capsys.readouterr().err


def test_the_text_says_when_no_maintenance_rate_was_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*WORKED, "--price", "3"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "maintenance margin" in x)
    assert line.split() == ["maintenance", "margin", "0", *NO_RATE.split()]
    assert main([*WORKED, "--price", "3", "--maintenance", "0.01"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "maintenance margin" in x)
    assert line.split() == ["maintenance", "margin", "30"]
    assert main(["calc", "cross", "--balance", "100", "--position", "long:1:10"]) == 0
    assert NO_RATE in capsys.readouterr().out
