"""examples/base-gains.toml, the model config for Gains on Base, passes `keeper config check`
as a user runs it (a subprocess), its secrets given from the environment, and says what the
comments say. tests/integration/gains/test_gains_cli.py runs the same file, made for the Gains
test deployment, through `keeper delegate` and `keeper run`."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from keeper.config import load
from keeper.margin import Metric
from keeper.venues.gains import BASE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "base-gains.toml"
KEEPER = str(Path(sys.executable).with_name("keeper"))


def secrets(tmp_path: Path) -> dict[str, str]:
    """What the example leaves to the environment: the keystore and its password file (here
    placeholders in `tmp_path`), the Telegram bot token."""
    keystore = tmp_path / "keystore.json"
    keystore.write_text("{}")
    password = tmp_path / "password"
    password.write_text("x")
    return {
        "KEEPER__SIGNER__KEYSTORE": str(keystore),
        "KEEPER__SIGNER__PASSWORD_FILE": str(password),
        "KEEPER_TELEGRAM_TOKEN": "123456:abc",
    }


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`keeper config check examples/base-gains.toml` with `env` as the secrets."""
    base = {k: v for k, v in os.environ.items() if k not in secrets_keys()}
    return subprocess.run(
        [KEEPER, "config", "check", str(EXAMPLE)],
        capture_output=True, text=True, check=False, timeout=60, env={**base, **env},
    )  # fmt: skip


def secrets_keys() -> tuple[str, ...]:
    return ("KEEPER__SIGNER__KEYSTORE", "KEEPER__SIGNER__PASSWORD_FILE", "KEEPER_TELEGRAM_TOKEN")


def test_keeper_config_check_passes_the_base_gains_example(tmp_path: Path) -> None:
    done = check(secrets(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain: base (id 8453, op)" in done.stdout
    assert "preset base" in done.stdout
    assert "budget: in USDC" in done.stdout
    # without them, each missing secret is named by its key
    done = check({})
    assert done.returncode == 1
    for key in ("signer.keystore", "signer.password_file", "alerts[0].token_env"):
        assert key in done.stderr, done.stderr


def test_the_example_is_delegated_gains_on_base_with_usdc(tmp_path: Path) -> None:
    config = load(EXAMPLE, environ=secrets(tmp_path))
    assert config.chain.chain_id == BASE.chain_id
    assert config.chain.kind == "op"
    assert config.chain.sequencer_uptime_feed == "0xBCF85224fc0756B9Fa45aA7892530B47e10b6433"
    assert config.venue.kind == "gains"
    assert config.venue.preset == "base"
    assert config.venue.addresses == {}  # the preset's diamond
    assert config.delegated  # the recommended setup: the keeper's key is a trading delegate
    assert config.delegation_check_blocks == 300
    assert config.signer.source == "keystore"
    assert config.budget.token == "USDC"
    assert config.budget.token_decimals == 6
    assert config.budget.in_units(6).reserve.raw == 200 * 10**6
    default = config.thresholds.default
    assert default.metric is Metric.DISTANCE
    assert (default.top_up_below, default.top_up_to) == (Decimal("0.03"), Decimal("0.06"))
    assert default.close_below < default.reduce_below < default.top_up_below
    assert default.projection_seconds == 0
    btc = config.thresholds.lookup("gains", "0")
    assert btc.close_below == Decimal("0.006")
    assert btc.cooldown_blocks == default.cooldown_blocks  # inherited
