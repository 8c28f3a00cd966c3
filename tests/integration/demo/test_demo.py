"""`keeper demo` end to end, in-process: its summary with and without the keeper, and its chart."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.cli import main

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["demo", "--json", *args]) == 0
    out = capsys.readouterr().out
    data: dict[str, Any] = json.loads(out)
    return data


def test_the_keeper_avoids_the_liquidations_of_the_same_path_without_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = run_json(capsys, "--no-chart")
    assert data["chart"] is None
    assert data["with_keeper"]["liquidations"] == 0, data["with_keeper"]["liquidated"]
    assert data["without_keeper"]["liquidations"] > 0
    assert data["liquidations_avoided"] == data["without_keeper"]["liquidations"]
    assert data["top_ups"] > 0
    assert data["failed_actions"] == 0
    done = [a for a in data["actions"] if a["status"] == "done"]
    assert len(done) == data["top_ups"] + data["reductions"] + data["closes"]
    blocks = [a["blocks_to_inclusion"] for a in done]
    assert all(1 <= b <= 3 for b in blocks), blocks
    assert data["blocks_to_inclusion"]["max"] == max(blocks)
    # exact money: the spend is the sum of the top-ups, to the last of USDC's 6 decimals
    spent = sum(Decimal(a["spend_usdc"]) for a in done)
    assert Decimal(data["collateral_spent_usdc"]) == spent > 0
    assert data["collateral_spent_usdc"].split(".")[1].__len__() == 6
    assert data["gas_used"] == sum(a["gas_used"] for a in data["actions"]) > 0
    w, wo = data["with_keeper"], data["without_keeper"]
    assert w["start_value_usdc"] == wo["start_value_usdc"]  # the same start, replayed
    assert data["seconds"] < 60


def test_the_chart_is_written_as_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--out", str(tmp_path / "out"), "--seed", "3")
    chart = Path(data["chart"])
    assert chart.parent == tmp_path / "out"
    assert chart.read_bytes()[:8] == PNG_MAGIC
    assert chart.stat().st_size > 10_000


def test_the_table_and_summary_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "with the keeper:" in out
    assert "without the keeper" in out
    assert "liquidations avoided" in out
    assert "LIQUIDATED" in out
    assert "top-up" in out
