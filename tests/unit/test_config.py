"""keeper.config: the example files load, and every problem is reported with its exact key."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.timeouts import CallKind, TimeoutPolicy
from keeper.config import ConfigError, describe, load, parse
from keeper.margin import Metric
from keeper.runtime import rpc_for, thresholds_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECRET = "s3cr3t-api-key-0123456789"
ARBITRUM_OBSERVER_ENV = {
    "KEEPER__SIGNER__SOURCE": "none",
    "KEEPER__KEEPER__MODE": "observer",
    "KEEPER_TELEGRAM_TOKEN": "123:abc",
}
"""What examples/arbitrum.toml needs from the environment to load without its secrets."""


def devnet_data() -> dict[str, Any]:
    return tomllib.loads((EXAMPLES / "devnet.toml").read_text())


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse(data, environ=environ or {}, base_dir=EXAMPLES)
    return {p.key: p.message for p in info.value.problems}


def test_devnet_example_loads() -> None:
    config = load(EXAMPLES / "devnet.toml", environ={})
    assert config.chain.chain_id == 31337
    assert config.chain.is_devnet
    assert config.chain.kind == "plain"
    assert config.chain.max_fee_per_gas == 50 * 10**9
    assert config.venue.kind == "reference"
    assert config.venue.addresses["exchange"] == "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
    assert len(config.accounts) == 2
    assert config.signer.source == "env"
    assert config.thresholds.default.top_up_below == Decimal("0.05")
    btc = config.thresholds.lookup("reference", "1")
    assert btc.top_up_to == Decimal("0.07")
    assert btc.cooldown_blocks == 2  # inherited from the defaults
    assert config.thresholds.lookup("reference", "0") == config.thresholds.default
    assert config.budget.token == "USDC"
    assert config.budget.reserve == Decimal(1000)
    assert config.budget.in_units(6).reserve.raw == 1000 * 10**6
    assert config.journal == EXAMPLES / "devnet-journal.sqlite"
    assert config.sends


def test_arbitrum_example_loads_with_its_secrets_from_the_environment(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore.json"
    keystore.write_text("{}")
    password = tmp_path / "password"
    password.write_text("x")
    env = {
        "KEEPER__SIGNER__KEYSTORE": str(keystore),
        "KEEPER__SIGNER__PASSWORD_FILE": str(password),
        "KEEPER__CHAIN__RPC": f'["https://arb.example/{SECRET}", "wss://backup.example/ws"]',
        "KEEPER_TELEGRAM_TOKEN": f"123456:{SECRET}",
    }
    config = load(EXAMPLES / "arbitrum.toml", environ=env)
    assert config.chain.kind == "arbitrum"
    assert config.chain.rpc == (f"https://arb.example/{SECRET}", "wss://backup.example/ws")
    assert config.venue.preset == "arbitrum"
    assert config.thresholds.default.projection_seconds == 3600
    assert config.alerts[0].chat_id == "-1001234567890"
    assert config.alerts[0].url == "https://api.telegram.org"
    assert config.alerts[0].token == f"123456:{SECRET}"
    assert config.signer.keystore == keystore
    # secrets stay out of reprs and summaries
    for text in (repr(config), str(config), "\n".join(describe(config))):
        assert SECRET not in text


def test_every_problem_is_reported_with_its_key() -> None:
    data = devnet_data()
    data["chain"]["rpc"] = ["http://127.0.0.1:8545", "ftp://nope"]
    data["chain"]["confirmations"] = -1
    data["chain"]["max_fee_gwei"] = 1.5
    data["venue"]["lens"] = "0x1234"
    data["accounts"]["watch"].append("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512".upper())
    data["thresholds"]["top_up_to"] = "0.04"
    data["thresholds"]["markets"]["reference:1"]["close_below"] = "lots"
    data["budget"]["reserve"] = "0.0000001"
    data["metrics"]["listen"] = "localhost"
    data["keeper"]["colour"] = "blue"
    found = problems(data)
    assert set(found) == {
        "chain.rpc[1]",
        "chain.confirmations",
        "chain.max_fee_gwei",
        "venue.lens",
        "thresholds.top_up_to",
        'thresholds.markets."reference:1".close_below',
        "budget.reserve",
        "metrics.listen",
        "keeper.colour",
    }
    assert "floats are not exact" in found["chain.max_fee_gwei"]
    assert "must be > top_up_below" in found["thresholds.top_up_to"]
    # an all-uppercase address has no checksum to check and is accepted
    assert "accounts.watch[2]" not in found


def test_missing_sections_name_what_is_expected() -> None:
    found = problems({"chain": {"chain_id": 31337}})
    assert "chain.rpc" in found
    assert "venue.kind" in found
    assert "accounts.watch" in found
    assert "signer.source" in found
    assert "thresholds.top_up_below" in found
    assert "budget.max_spend_per_day" in found


def test_a_mistyped_checksum_is_caught() -> None:
    data = devnet_data()
    data["venue"]["exchange"] = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0513"
    assert "wrong checksum" in problems(data)["venue.exchange"]


def test_raw_key_refused_off_devnet_unless_allowed() -> None:
    data = devnet_data()
    data["chain"]["chain_id"] = 42161
    assert "not a devnet" in problems(data)["signer.source"]
    data["signer"]["allow_raw_key"] = True
    config = parse(data, environ={}, base_dir=EXAMPLES)
    assert config.chain.kind == "arbitrum"


def test_observer_mode_needs_no_key() -> None:
    data = devnet_data()
    data["keeper"]["mode"] = "observer"
    del data["signer"]
    config = parse(data, environ={}, base_dir=EXAMPLES)
    assert config.signer.source == "none"
    assert not config.sends


def test_active_mode_without_a_key_is_refused() -> None:
    data = devnet_data()
    data["signer"] = {"source": "none"}
    assert "needs a key" in problems(data)["signer.source"]


def test_env_overrides_take_toml_values_and_plain_strings() -> None:
    env = {
        "KEEPER__CHAIN__CONFIRMATIONS": "3",
        "KEEPER__THRESHOLDS__METRIC": "distance",
        "KEEPER__KEEPER__DRY_RUN": "true",
        "KEEPER__thresholds__TOP_UP_TO": '"0.09"',
    }
    config = parse(devnet_data(), environ=env, base_dir=EXAMPLES)
    assert config.chain.confirmations == 3
    assert config.thresholds.default.metric is Metric.DISTANCE
    assert config.thresholds.default.top_up_to == Decimal("0.09")
    assert config.dry_run
    assert not config.sends


def test_env_override_errors_name_the_variable() -> None:
    found = problems(devnet_data(), {"KEEPER__CHAIN__RPC__X": "1"})
    assert "KEEPER__CHAIN__RPC__X" in found
    found = problems(devnet_data(), {"KEEPER__CHAIN__CONFIRMATIONS": "many"})
    assert "chain.confirmations" in found


def test_alert_sinks_need_urls_and_telegram_a_chat() -> None:
    data = devnet_data()
    data["alerts"] = [
        {"kind": "telegram", "token_env": "NOT_SET"},
        {"kind": "pager", "url": "https://x.example/hook"},
        {"kind": "slack", "url": "https://hooks.slack.example/T/B/" + SECRET},
    ]
    found = problems(data)
    assert set(found) == {"alerts[0].token_env", "alerts[0].chat_id", "alerts[1].kind"}


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[chain\n")
    with pytest.raises(ConfigError, match="syntax"):
        load(bad)


def test_threshold_override_keys_name_the_venue_kind() -> None:
    data = devnet_data()
    data["thresholds"]["markets"]["refex:0"] = {"top_up_to": "0.09"}
    data["thresholds"]["markets"]["gmx:0xabc"] = {"top_up_to": "0.09"}
    found = problems(data)
    assert set(found) == {'thresholds.markets."refex:0"', 'thresholds.markets."gmx:0xabc"'}
    assert "reference:MARKET_ID" in found['thresholds.markets."refex:0"']


def test_override_keys_are_renamed_to_the_adapters_name() -> None:
    config = load(EXAMPLES / "devnet.toml", environ={})
    renamed = thresholds_for(config, "refex")
    assert renamed.lookup("refex", "1").top_up_to == Decimal("0.07")
    assert renamed.lookup("refex", "0") == renamed.default


def test_the_budget_token_and_its_decimals() -> None:
    data = devnet_data()
    del data["budget"]["token_decimals"]
    config = parse(data, environ={}, base_dir=EXAMPLES)
    assert (config.budget.token, config.budget.token_decimals) == ("USDC", None)
    # without decimals the amounts are checked when the token's are known
    assert config.budget.in_units(18).max_spend_per_day.raw == 20_000 * 10**18
    data["budget"]["reserve"] = "0.0000001"
    config = parse(data, environ={}, base_dir=EXAMPLES)
    with pytest.raises(ConfigError) as info:
        config.budget.in_units(6, source="k.toml")
    [problem] = info.value.problems
    assert problem.key == "budget.reserve"
    assert "at most 6 decimals" in problem.message
    data["budget"]["token"] = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    assert parse(data, environ={}, base_dir=EXAMPLES).budget.token == data["budget"]["token"]
    data["budget"]["token"] = "not a token!"
    assert "expected a token symbol" in problems(data)["budget.token"]
    data["budget"]["token"] = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB49"
    assert "wrong checksum" in problems(data)["budget.token"]


def test_gmx_needs_the_budget_token_named(tmp_path: Path) -> None:
    data = tomllib.loads((EXAMPLES / "arbitrum.toml").read_text())
    env = dict(ARBITRUM_OBSERVER_ENV)
    assert parse(data, environ=env, base_dir=tmp_path).budget.token == "USDC"
    del data["budget"]["token"]
    found = problems(data, env)
    assert "GMX positions hold any of their market's tokens" in found["budget.token"]


def test_endpoints_may_be_websockets_or_ipc_paths_and_http_picks_a_transport() -> None:
    data = devnet_data()
    data["chain"]["rpc"] = ["http://127.0.0.1:8545", "ws://127.0.0.1:8545", "node/geth.ipc"]
    data["chain"]["transport"] = "web3"
    config = parse(data, environ={}, base_dir=EXAMPLES)
    assert config.chain.rpc[2] == str(EXAMPLES / "node" / "geth.ipc")
    assert config.chain.rpc_labels == (
        "http://127.0.0.1:8545",
        "ws://127.0.0.1:8545",
        "ipc://geth.ipc",
    )
    assert config.chain.transport == "web3"
    data["chain"]["transport"] = "curl"
    assert "transport" in next(iter(problems(data)))
    assert parse(devnet_data(), environ={}, base_dir=EXAMPLES).chain.transport == "aiohttp"


def test_delegated_accounts_their_checks_and_the_subaccount_router(tmp_path: Path) -> None:
    data = tomllib.loads((EXAMPLES / "arbitrum.toml").read_text())
    env = dict(ARBITRUM_OBSERVER_ENV)
    config = parse(data, environ=env, base_dir=tmp_path)
    assert not config.delegated
    assert "subaccount_router" not in config.venue.addresses  # the preset's, unless given
    data["accounts"]["delegated"] = True
    data["venue"]["subaccount_router"] = "0xdD00F639725E19a209880A44962Bc93b51B1B161"
    config = parse(data, environ=env, base_dir=tmp_path)
    assert config.delegated
    assert config.venue.addresses["subaccount_router"] == data["venue"]["subaccount_router"]
    data["accounts"]["delegated"] = "yes"
    assert "accounts.delegated" in problems(data, env)
    data["accounts"]["delegated"] = True
    data["venue"]["subaccount_router"] = "0x12"
    assert "venue.subaccount_router" in problems(data, env)
    # the reference exchange's operators are delegates too; the grants are checked again
    # every delegation_check_blocks blocks
    devnet = devnet_data()
    devnet["accounts"]["delegated"] = True
    config = parse(devnet, environ={}, base_dir=tmp_path)
    assert config.delegated
    assert config.delegation_check_blocks == 100
    devnet["accounts"]["delegation_check_blocks"] = 20
    assert parse(devnet, environ={}, base_dir=tmp_path).delegation_check_blocks == 20
    for bad in (0, -1, "often"):
        devnet["accounts"]["delegation_check_blocks"] = bad
        assert "accounts.delegation_check_blocks" in problems(devnet)


def test_rpc_timeouts_hedging_and_broadcast_default_and_per_kind() -> None:
    default = parse(devnet_data(), environ={}, base_dir=EXAMPLES)
    assert set(default.rpc.timeouts) == {"head", "read", "call", "logs", "send"}
    assert default.rpc.timeouts["call"].cap_s == Decimal(10)
    assert (default.rpc.hedge, default.rpc.broadcast) == (True, True)
    assert "reads hedged" in "\n".join(describe(default))
    data = devnet_data()
    data["rpc"] = {
        "timeout_floor_s": "0.1",
        "timeout_multiple": 3,
        "hedge_floor_s": "0.02",
        "broadcast": False,
        "logs": {"timeout_cap_s": "30"},
        "send": {"timeout_initial_s": "2"},
    }
    config = parse(data, environ={"KEEPER__RPC__CALL__TIMEOUT_CAP_S": '"20"'}, base_dir=EXAMPLES)
    t = config.rpc.timeouts
    assert (t["head"].floor_s, t["head"].multiple, t["head"].cap_s) == (
        Decimal("0.1"),
        Decimal(3),
        Decimal(10),
    )
    assert (t["logs"].floor_s, t["logs"].cap_s) == (Decimal("0.1"), Decimal(30))
    assert t["call"].cap_s == Decimal(20)
    assert t["send"].initial_s == Decimal(2)
    rpc = rpc_for(config)
    assert rpc.policies[CallKind.LOGS] == TimeoutPolicy(floor=0.1, cap=30.0, multiple=3.0)
    assert rpc.policies[CallKind.SEND].initial == 2.0
    assert (rpc.hedge, rpc.hedge_floor, rpc.broadcast) == (True, 0.02, False)
    assert "sends to one endpoint" in "\n".join(describe(config))


@pytest.mark.parametrize(
    ("rpc", "key", "text"),
    [
        ({"timeout_floor_s": "2", "timeout_cap_s": "1"}, "rpc.timeout_cap_s", ">= timeout_floor"),
        ({"call": {"timeout_cap_s": "0.1"}}, "rpc.call.timeout_cap_s", "(0.25)"),
        ({"timeout_cap_s": 1.5}, "rpc.timeout_cap_s", "floats are not exact"),
        ({"timeout_floor_s": "0"}, "rpc.timeout_floor_s", "seconds > 0"),
        ({"timeout_cap_s": "9999"}, "rpc.timeout_cap_s", "<= 600"),
        ({"timeout_multiple": "0.5"}, "rpc.timeout_multiple", "from 1 to 100"),
        ({"timeout_initial_s": "20"}, "rpc.timeout_initial_s", "to timeout_cap_s (10)"),
        ({"hedge_floor_s": "-1"}, "rpc.hedge_floor_s", "seconds >= 0"),
        ({"hedge": "yes"}, "rpc.hedge", "true or false"),
        ({"timeouts": {}}, "rpc.timeouts", "unknown key"),
        ({"call": {"hedge": True}}, "rpc.call.hedge", "unknown key"),
    ],
)
def test_rpc_problems_name_the_key(rpc: dict[str, Any], key: str, text: str) -> None:
    data = devnet_data()
    data["rpc"] = rpc
    found = problems(data)
    assert key in found, found
    assert text in found[key]
