"""`keeper stress` without a node: path specs, sweeps, the snapshot file, and the simulation."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper import margin
from keeper.cli import main
from keeper.model import (
    Basis,
    CloseQuote,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Side,
    Snapshot,
    Token,
    Wallet,
)
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.stress import (
    ChainModel,
    Inclusion,
    PricePath,
    StressError,
    build_path,
    parse_sweep,
    simulate,
)
from keeper.stress_snapshot import SnapshotFormatError, snapshot_from_json, snapshot_to_json
from keeper.units import Price, TokenAmount, Usd

USDC = Token("0x" + "aa" * 20, "USDC", 6)
ETH = Token("ETH", "ETH", 18)
BTC = Token("BTC", "BTC", 18)
TRADER = "0x" + "11" * 20
KEEPER = "0x" + "22" * 20


def usdc(value: str | int) -> TokenAmount:
    return TokenAmount.from_value_exact(Decimal(value), 6)


def market(symbol: Token, mid: str, price: str, **kw: Any) -> Market:
    return Market(
        venue="refex",
        market_id=mid,
        index_token=symbol,
        usd_decimals=6,
        mark_price=Price.from_value_exact(price, 18),
        maintenance_rate=Decimal("0.025"),
        basis=Basis.MARK,
        close_fee_rate=Decimal("0.001"),
        liquidation_fee_rate=Decimal("0.005"),
        **kw,
    )


def position(  # noqa: PLR0917 (the figures of one position, in order)
    key: str, mid: str, side: Side, size: str, entry: str, collateral: str, **kw: Any
) -> Position:
    return Position(
        venue="refex",
        key=key,
        account=TRADER,
        market_id=mid,
        side=side,
        size=TokenAmount.from_value_exact(size, 18),
        entry_price=Price.from_value_exact(entry, 18),
        collateral_token=USDC,
        collateral=usdc(collateral),
        collateral_price=Price.from_value_exact(1, 18),
        collateral_usd=Usd.from_value_exact(collateral, 6),
        fees=Usd(0, 6),
        **kw,
    )


def book(*, wallet: str = "10000", native: int = 10**18, funding: str = "0") -> Snapshot:
    """An isolated ETH long at 10x, and a cross account with a BTC short."""
    eth = market(
        ETH,
        "0",
        "2000",
        funding_rate_long=Decimal(funding),
        funding_rate_short=-Decimal(funding),
        close_quote=CloseQuote(Decimal("0.001"), Decimal("0.0005")),
    )
    btc = market(BTC, "1", "60000")
    long_ = position("0xe1", "0", Side.LONG, "10", "2000", "2000")
    short = position(
        "0xb1", "1", Side.SHORT, "0.5", "60000", "0", mode=MarginMode.CROSS, cross_account=TRADER
    )
    account = CrossAccount(
        "refex", TRADER, TRADER, USDC, usdc(4000), Price.from_value_exact(1, 18),
        Usd.from_value_exact(4000, 6), ("0xb1",),
    )  # fmt: skip
    return Snapshot(
        block_number=100,
        block_time=1_700_000_000,
        wallet=Wallet(TRADER, USDC, usdc(wallet), TokenAmount(native, 18)),
        markets=(eth, btc),
        positions=(long_, short),
        accounts=(account,),
    )


THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.06"),
        top_up_to=Decimal("0.10"),
        reduce_below=Decimal("0.045"),
        close_below=Decimal("0.035"),
        cooldown_blocks=3,
    )
)
BUDGET = Budget(usdc(1500), usdc(5000), usdc(500))
CHAIN = ChainModel(Decimal(2), Inclusion.NEXT, 10**9, {"top_up:isolated": 150_000})
MARKS = {"ETH": Decimal(2000), "BTC": Decimal(60000)}


# --- paths -----------------------------------------------------------------------------------


def test_a_crash_falls_linearly_to_its_target_in_blocks_of_the_given_time() -> None:
    path = build_path(MARKS, block_seconds=Decimal(60), moves=("ETH=crash:-30%:1h",))
    assert len(path.steps) == 60
    assert path.steps[-1]["ETH"] == Decimal(1400)
    assert path.steps[29]["ETH"] == Decimal(1700)  # half way at 30 of 60 minutes
    assert "BTC" not in path.steps[0]  # untouched markets keep their price


def test_a_drift_compounds_per_hour_and_scenarios_of_a_market_run_in_turn() -> None:
    path = build_path(
        MARKS, block_seconds=Decimal(3600), moves=("drift:-2%/h:3h", "BTC=spike:+10%:1h")
    )
    assert len(path.steps) == 3
    eth = [s["ETH"] for s in path.steps]
    assert eth[0] == Decimal("1960")
    assert eth[2] == Decimal(2000) * Decimal("0.98") ** 3
    assert [s["BTC"] for s in path.steps] == [Decimal(66000)] * 3  # a market's own spec wins
    two = build_path(
        MARKS, block_seconds=Decimal(1800), moves=("ETH=crash:-10%:1h", "ETH=spike:+50%:1h")
    )
    assert two.steps[1]["ETH"] == Decimal(1800)
    assert two.steps[3]["ETH"] == Decimal(2700)  # the spike starts where the crash ended


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("crash:30%:1h", "a crash falls"),
        ("spike:-5%:1h", "a spike rises"),
        ("crash:-30:1h", "percentage"),
        ("crash:-30%:1y", "duration"),
        ("drift:-2%:1h", "rate per hour"),
        ("melt:-2%:1h", "expected crash"),
        ("DOGE=crash:-30%:1h", "no watched market DOGE"),
        ("crash:-100%:1h", "100%"),
    ],
)
def test_bad_path_specs_are_refused_naming_the_argument(spec: str, message: str) -> None:
    with pytest.raises(StressError, match="--path") as caught:
        build_path(MARKS, block_seconds=Decimal(2), moves=(spec,))
    assert message in str(caught.value)


def test_a_path_too_long_for_its_block_time_says_how_to_shorten_it() -> None:
    with pytest.raises(StressError, match="--block-time"):
        build_path(MARKS, block_seconds=Decimal("0.25"), moves=("drift:-2%/h:7d",))


def test_a_csv_path_is_interpolated_at_each_block(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("timestamp,ETH\n1000,2000\n1060,1900\n1120,1990\n")
    path = build_path(MARKS, block_seconds=Decimal(30), csv_path=f)
    assert [s["ETH"] for s in path.steps] == [Decimal(1950), Decimal(1900), 1945, 1990]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,ETH\n1,2000\n", "expected a header"),
        ("price,ETH\n1,2\n2,3\n", "first column must be timestamp"),
        ("timestamp,DOGE\n1,2\n2,3\n", "column DOGE"),
        ("timestamp,ETH\n1,2000\n1,1900\n", "line 3: timestamps must increase"),
        ("timestamp,ETH\n1,2000\n2,-5\n", "line 3: ETH: expected a price > 0"),
        ("timestamp,ETH\n1,2000\n2\n", "line 3: expected 2 columns"),
    ],
)
def test_bad_csv_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(StressError, match="--path-csv") as caught:
        build_path(MARKS, block_seconds=Decimal(2), csv_path=f)
    assert message in str(caught.value)


def test_noise_is_a_seeded_walk_bounded_per_block() -> None:
    def walk(seed: int) -> list[Decimal]:
        path = build_path(
            MARKS, block_seconds=Decimal(1), moves=("ETH=drift:0%/h:200s",),
            noise=Decimal("0.001"), seed=seed,
        )  # fmt: skip
        return [s["ETH"] for s in path.steps]

    a, b = walk(7), walk(8)
    assert a == walk(7)
    assert a != b
    prices = [Decimal(2000), *a]
    for before, after in itertools.pairwise(prices):
        assert abs(after / before - 1) <= Decimal("0.00100001")


# --- sweeps ----------------------------------------------------------------------------------


def test_a_sweep_lists_its_values_and_sets_thresholds_everywhere() -> None:
    sweep = parse_sweep("thresholds.top_up_below=0.05..0.08:0.01")
    assert sweep.values == (Decimal("0.05"), Decimal("0.06"), Decimal("0.07"), Decimal("0.08"))
    with_override = Thresholds(THRESHOLDS.default, {"refex:1": THRESHOLDS.default})
    set_ = sweep.thresholds(with_override, Decimal("0.07"))
    assert set_.default.top_up_below == Decimal("0.07")
    assert set_.overrides["refex:1"].top_up_below == Decimal("0.07")
    budget = parse_sweep("budget.reserve=0..1000:500").budget(BUDGET, Decimal(500))
    assert budget.reserve == usdc(500)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thresholds.colour=1..2:1", "KEY one of"),
        ("thresholds.top_up_below", "KEY one of"),
        ("thresholds.top_up_below=0.08..0.03:0.01", "A <= B"),
        ("thresholds.top_up_below=0.03..0.08", "A..B:STEP"),
        ("thresholds.cooldown_blocks=1..2:0.5", "whole number"),
        ("budget.reserve=0..1000000:1", "at most"),
    ],
)
def test_bad_sweeps_are_refused(text: str, message: str) -> None:
    with pytest.raises(StressError, match="--sweep") as caught:
        parse_sweep(text)
    assert message in str(caught.value)


def test_a_sweep_value_that_breaks_the_thresholds_names_the_rule() -> None:
    sweep = parse_sweep("thresholds.top_up_below=0.03..0.04:0.01")
    with pytest.raises(StressError, match=r"top_up_below=0\.03: reduce_below"):
        sweep.thresholds(THRESHOLDS, Decimal("0.03"))


# --- the snapshot file -----------------------------------------------------------------------


def test_a_snapshot_survives_json_unchanged() -> None:
    snap = replace(book(), funds={TRADER: usdc(123)})
    text = json.dumps(snapshot_to_json(snap))
    assert snapshot_from_json(json.loads(text)) == snap


def test_a_broken_snapshot_names_the_field() -> None:
    data = snapshot_to_json(book())
    data["positions"][1]["size"]["raw"] = 12.5
    with pytest.raises(SnapshotFormatError, match=r"snapshot\.positions\[1\]\.size\.raw"):
        snapshot_from_json(data)
    data = snapshot_to_json(book())
    data["markets"][0]["basis"] = "median"
    with pytest.raises(SnapshotFormatError, match=r"markets\[0\]\.basis: expected one of"):
        snapshot_from_json(data)


# --- the simulation --------------------------------------------------------------------------


def crash(percent: str, seconds: int = 600) -> PricePath:
    return build_path(MARKS, block_seconds=Decimal(2), moves=(f"ETH=crash:{percent}:{seconds}s",))


def test_without_the_keeper_a_position_is_liquidated_at_its_liquidation_price() -> None:
    snap = book()
    path = crash("-20%")
    run = simulate(snap, path, THRESHOLDS, BUDGET, CHAIN, keeper=False)
    long_ = snap.positions[0]
    liq = margin.liquidation_price(long_, snap.markets[0])
    assert liq is not None
    first = next(i for i, s in enumerate(path.steps, 1) if s["ETH"] <= liq.value)
    assert run.liquidated_at["0xe1"].step == first
    assert run.liquidated_at["0xe1"].block == snap.block_number + first
    assert "0xb1" not in run.liquidated_at
    assert TRADER not in run.liquidated_at
    assert run.actions == []
    assert run.worst["0xe1"][0] < Decimal("0.025")


def test_the_keeper_tops_up_within_the_budget_and_the_wallet_pays_for_it() -> None:
    snap = book()
    run = simulate(snap, crash("-12%"), THRESHOLDS, BUDGET, CHAIN)
    assert run.liquidated_at == {}
    top_ups = run.done("top_up")
    assert top_ups
    assert all(a.subject == "0xe1" for a in top_ups)
    for a in top_ups:  # next inclusion: in the block after the decision
        assert a.included_block == a.decided_block + 1
        assert usdc(a.amount) <= BUDGET.max_top_up_per_position
    spent = sum(a.spend for a in top_ups)
    assert spent == sum(usdc(a.amount).raw for a in top_ups) <= BUDGET.max_spend_per_day.raw
    assert run.paid_in_usd == Decimal(spent).scaleb(-6)
    blocks = [a.decided_block for a in top_ups]
    assert all(b - a >= 3 for a, b in itertools.pairwise(blocks))  # the cooldown
    gas = sum(a.fee_wei for a in top_ups)
    assert gas == len(top_ups) * 150_000 * 10**9


def test_what_the_budget_cannot_pay_is_cut_and_the_report_says_what_would_save_it() -> None:
    from keeper.stress import _Setup, report  # noqa: PLC0415

    budget = Budget(usdc(300), usdc(300), usdc(500))
    snap = book()
    setup = _Setup(snap, crash("-12%"), THRESHOLDS, budget, CHAIN, None)
    data = report(setup)
    data.pop("_runs")
    (eth,) = [r for r in data["subjects"] if r["key"] == "0xe1"]
    kinds = [a["kind"] for a in eth["with_keeper"]["actions"] if a["status"] == "done"]
    assert "top_up" in kinds
    assert "reduce" in kinds or "close" in kinds
    assert eth["with_keeper"]["spent"] == "300.000000"
    assert eth["not_saved"]
    save = eth["would_save"]
    assert save["by_top_ups"] is True
    assert Decimal(save["largest_top_up"]) > Decimal(300)
    assert Decimal(save["total"]) >= Decimal(save["largest_top_up"])
    assert data["summary"]["without_keeper"]["liquidations"] == 1
    json.dumps(data)  # JSON-ready


def test_a_gap_the_keeper_cannot_outrun_needs_collateral_from_the_start() -> None:
    from keeper.stress import _Setup, report  # noqa: PLC0415

    snap = book()
    gap = build_path(MARKS, block_seconds=Decimal(2), moves=("ETH=crash:-15%:2s",))
    data = report(_Setup(snap, gap, THRESHOLDS, BUDGET, CHAIN, None))
    (eth,) = [r for r in data["subjects"] if r["key"] == "0xe1"]
    assert eth["with_keeper"]["liquidated"]["step"] == 1  # before its first top-up lands
    need = Decimal(eth["would_save"]["collateral_from_start_usd"])
    # at 1700 the long's equity is 2000 - 3000 - fee; maintenance is 2.5% of 17000
    p, m = snap.positions[0], replace(snap.markets[0], mark_price=Price.from_value_exact(1700, 18))
    expected = margin.maintenance_margin(p, m).value - margin.equity(p, m).value
    assert need == expected > 0


def test_serial_inclusion_mines_one_action_per_block_at_the_same_prices() -> None:
    snap = book()
    serial = replace(CHAIN, inclusion=Inclusion.SERIAL)
    both = build_path(
        MARKS, block_seconds=Decimal(2), moves=("ETH=crash:-12%:600s", "BTC=spike:+8%:600s")
    )
    run = simulate(snap, both, THRESHOLDS, BUDGET, serial)
    by_block: dict[int, list[int]] = {}
    for a in run.done():
        assert a.included_block is not None
        by_block.setdefault(a.decided_block, []).append(a.included_block)
    assert by_block
    for decided, included in by_block.items():
        assert included == list(range(decided + 1, decided + 1 + len(included)))
    assert run.blocks > len(both.steps)  # the keeper's transactions took blocks of their own


def test_an_action_the_wallet_cannot_pay_gas_for_is_not_sent() -> None:
    snap = book(native=10**14)  # 0.0001 ETH: less than 150,000 gas at 1 gwei
    run = simulate(snap, crash("-12%"), THRESHOLDS, BUDGET, CHAIN)
    assert run.actions
    assert all(a.status == "not_sent" for a in run.actions)
    assert len({(a.key, a.kind) for a in run.actions}) == len(run.actions)  # each said once
    assert "for gas" in run.actions[0].detail
    assert run.liquidated_at.keys() == {"0xe1"}


def test_funding_accrues_block_by_block_at_the_rate_of_the_read() -> None:
    rate = "0.00001"  # per second, longs pay
    snap = book(funding=rate)
    flat = build_path(MARKS, block_seconds=Decimal(2), moves=("ETH=drift:0%/h:100s",))
    run = simulate(snap, flat, THRESHOLDS, BUDGET, CHAIN, keeper=False)
    p, m = snap.positions[0], snap.markets[0]
    owed = Decimal(rate) * 10 * 2000 * 100
    expected = margin.margin_ratio(replace(p, fees=Usd.from_value_exact(owed, 6)), m)
    assert run.result.rows[-1].seen["ETH long"] == expected


# --- the command -----------------------------------------------------------------------------


CONFIG = """
[chain]
chain_id = 31337
rpc = ["http://127.0.0.1:1"]
[venue]
kind = "reference"
exchange = "0x{a}"
lens = "0x{b}"
[accounts]
watch = ["{trader}"]
[signer]
source = "none"
[keeper]
mode = "observer"
[thresholds]
top_up_below = "0.06"
top_up_to = "0.10"
reduce_below = "0.045"
close_below = "0.035"
cooldown_blocks = 3
[budget]
token = "USDC"
max_top_up_per_position = "1500"
max_spend_per_day = "5000"
reserve = "500"
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "keeper.toml"
    config.write_text(CONFIG.format(a="a1" * 20, b="b2" * 20, trader=TRADER))
    snap = tmp_path / "positions.json"
    snap.write_text(json.dumps({"positions": [], "snapshot": snapshot_to_json(book())}))
    return config, snap


def stress(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["stress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_replays_a_saved_snapshot(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, snap = files
    args = ("--config", str(config), "--snapshot", str(snap), "--path", "ETH=crash:-12%:10m")
    code, out, _ = stress(capsys, *args, "--json", "--chart", str(tmp_path / "c.png"))
    assert code == 0
    data = json.loads(out)
    assert data["source"] == str(snap)
    assert data["inclusion"] == "serial"
    assert data["summary"]["liquidations_avoided"] == 1
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = stress(capsys, *args, "--sweep", "budget.max_spend_per_day=0..2000:1000")
    assert code == 0
    assert "sweep budget.max_spend_per_day" in out
    assert "liquidations avoided" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--path: give a scenario"),
        (("--path", "ETH=crash:+5%:1h"), "a crash falls"),
        (("--path", "crash:-5%:1h", "--block-time", "0"), "--block-time"),
        (("--path", "crash:-5%:1h", "--sweep", "budget.x=1..2:1"), "--sweep"),
        (("--path", "crash:-5%:1h", "--wallet-balance", "1.0000001"), "--wallet-balance"),
        (("--path", "crash:-5%:1h", "--seed", "3"), "--seed: goes with --noise"),
        (("--path", "crash:-5%:1h", "--chart", "x.svg"), "--chart"),
    ],
)
def test_bad_arguments_exit_2_naming_them(
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    config, snap = files
    code, _, err = stress(capsys, "--config", str(config), "--snapshot", str(snap), *extra)
    assert code == 2
    assert message in err


def test_a_bad_snapshot_file_exits_2_naming_the_field(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, _ = files
    data = snapshot_to_json(book())
    data["wallet"]["balance"]["decimals"] = 18
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"snapshot": data}))
    code, _, err = stress(capsys, "--config", str(config), "--snapshot", str(bad), "--path",
                          "crash:-5%:1h")  # fmt: skip
    assert code == 2
    assert "snapshot.wallet.balance.decimals: expected 6" in err
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"positions": []}))
    code, _, err = stress(capsys, "--config", str(config), "--snapshot", str(old), "--path",
                          "crash:-5%:1h")  # fmt: skip
    assert code == 2
    assert 'no "snapshot"' in err


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "keeper.toml"
    config.write_text("[chain]\nchain_id = 0.5\n")
    code, _, err = stress(capsys, "--config", str(config), "--path", "crash:-5%:1h")
    assert code == 2
    assert "chain.chain_id" in err
