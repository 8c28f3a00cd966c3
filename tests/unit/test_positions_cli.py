"""`keeper positions` input checks (no node needed): bad input exits 2 naming the flag; an
endpoint that does not answer exits 1 with a clear error."""

from __future__ import annotations

import pytest

from keeper.cli import main
from keeper.testing.anvil import free_port

ADDR = "0x" + "12" * 20


def args(**over: str) -> list[str]:
    base = {
        "--rpc": "http://127.0.0.1:8545",
        "--exchange": ADDR,
        "--lens": ADDR,
        "--account": ADDR,
    }
    base.update(over)
    out = ["positions"]
    for flag, value in base.items():
        out += [flag, value]
    return out


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"--exchange": "0x1234"}, "--exchange: not an address"),
        ({"--lens": "lens"}, "--lens: not an address"),
        ({"--account": "0x" + "zz" * 20}, "--account: not an address"),
        ({"--multicall": "0x"}, "--multicall: not an address"),
        ({"--rpc": "localhost:8545"}, "--rpc: not an http(s) URL"),
        ({"--rpc": "ftp://example.com"}, "--rpc: not an http(s) URL"),
        ({"--block": "-1"}, "--block: not a block number"),
        ({"--block": "latest"}, "--block: not a block number"),
        ({"--timeout": "0"}, "--timeout: must be greater than zero"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(
    over: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args(**over)) == 2
    err = capsys.readouterr().err
    assert message in err


def test_missing_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["positions", "--rpc", "http://127.0.0.1:1"]) == 2
    assert "--exchange" in capsys.readouterr().err


def test_an_account_given_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*args(), "--account", ADDR.upper().replace("0X", "0x")]
    assert main(argv) == 2
    assert "--account: an account is given twice" in capsys.readouterr().err


def test_unreachable_endpoint_exits_1_with_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main([*args(**{"--rpc": url}), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("keeper positions: error: ")
    assert "cannot connect" in err


def test_calc_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "--side", "long", "--size", "1000", "--entry", "2.5", "--collateral", "250"]
    assert main(argv) == 0
    assert "2.25" in capsys.readouterr().out


def test_the_table_prints_prices_at_the_markets_precision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from keeper.cli import _price_text, _print_positions  # noqa: PLC0415 (private helpers)

    assert _price_text("1834.563829118734598120", "2000", "long") == "1834.57"
    assert _price_text("1834.563829118734598120", "2000", "short") == "1834.56"
    assert _price_text("61234.5678", "60000.1", "long") == "61234.57"
    assert _price_text("0.000123456789", "0.0001301", "long") == "0.000123457"
    assert _price_text(None, "1", "long") == "none"
    row = {
        "account": "0xA", "key": "k", "market_id": "0", "market": "ETH", "side": "long",
        "mode": "isolated", "size": "10", "entry_price": "2000", "mark_price": "1900",
        "collateral": "2000.123456789", "funding_fee": "0", "notional": "19000",
        "pnl": "-1000.009", "equity": "1000", "margin_ratio": "0.0526315789",
        "maintenance_margin": "190", "liquidation_price": "1818.181818181818181818",
        "distance_to_liquidation": "0.0430622009", "liquidatable": False,
    }  # fmt: skip
    _print_positions(
        {"block": 1, "block_time": 2, "positions": [row], "cross_accounts": [], "issues": []}
    )
    out = capsys.readouterr().out
    assert "1818.19" in out
    assert "1818.181" not in out
    assert "2000.12" in out
    assert "-1000.01" in out
