"""The plugin's keeper fixtures: a config file for the devnet that keeper.config.load accepts,
and `keeper run` as a real child process with its health, metrics, journal and signals."""

from __future__ import annotations

import signal
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.config import load
from keeper.testing.devnet import KEY_ENV, Devnet, to_toml
from keeper.testing.helpers import Chain
from keeper.testing.plugin import KeeperProcessFactory
from keeper.testing.process import KeeperProcessError

pytestmark = pytest.mark.integration


def test_the_keeper_config_is_accepted_by_config_load(
    devnet: Devnet, keeper_config: Path, tmp_path: Path
) -> None:
    d = devnet.deployment
    config = load(keeper_config, environ=devnet.keeper_env())
    assert keeper_config == tmp_path / "keeper.toml"
    assert config.chain.chain_id == d.chain_id
    assert config.chain.rpc == (devnet.url,)
    assert config.chain.multicall == d.multicall
    assert dict(config.venue.addresses) == {"exchange": d.exchange, "lens": d.lens}
    assert config.accounts == (d.trader, d.cross_trader)
    assert (config.signer.source, config.signer.key_env) == ("env", KEY_ENV)
    assert config.journal == tmp_path / "keeper-journal.sqlite"
    assert config.halt_file == tmp_path / "HALT"
    assert config.metrics is not None
    assert config.metrics.host == "127.0.0.1"
    assert config.metrics.port > 0
    assert config.sends
    btc = f"reference:{devnet.market_id('BTC')}"
    assert config.thresholds.overrides[btc].close_below == Decimal("0.025")
    assert devnet.keeper_env()[KEY_ENV] == "0x" + bytes(devnet.account("trader").key).hex()


def test_overrides_change_keys_and_drop_sections(devnet: Devnet, tmp_path: Path) -> None:
    watched = "0x000000000000000000000000000000000000bEEF"
    path = devnet.keeper_config(
        tmp_path / "sub" / "observer.toml",
        keeper={"mode": "observer", "dry_run": True},
        accounts={"watch": [watched]},
        signer={"source": "none", "key_env": None},
        metrics=None,
        thresholds={"markets": {}},
    )
    config = load(path, environ={})
    assert (config.mode, config.dry_run, config.sends) == ("observer", True, False)
    assert config.accounts == (watched,)
    assert config.metrics is None
    assert config.journal == tmp_path / "sub" / "keeper-journal.sqlite"
    assert tomllib.loads(path.read_text())["thresholds"]["top_up_to"] == "0.08"


def test_to_toml_refuses_floats_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"thresholds\.top_up_to: cannot write float"):
        to_toml({"thresholds": {"top_up_to": 0.08}})
    text = to_toml({"a": {"b.c": {"x": [1, "y", True]}}, "alerts": [{"kind": "webhook"}]})
    assert tomllib.loads(text) == {
        "a": {"b.c": {"x": [1, "y", True]}},
        "alerts": [{"kind": "webhook"}],
    }


def test_keeper_run_answers_health_and_stops_cleanly_on_sigterm(
    devnet: Devnet, chain: Chain, keeper_process: KeeperProcessFactory, tmp_path: Path
) -> None:
    keeper = keeper_process()
    assert keeper.running
    assert keeper.health_url.endswith("/healthz")
    keeper.wait_for(lambda: (keeper.last_block() or -1) >= chain.block_number(), what="the head")
    chain.mine()
    keeper.wait_for(lambda: (keeper.last_block() or -1) >= chain.block_number(), what="a block")
    assert (keeper.metric("keeper_blocks_processed_total") or 0) >= 1
    assert keeper.metric("keeper_last_block_number") == chain.block_number()
    assert keeper.journal_path == tmp_path / "keeper-journal.sqlite"
    assert keeper.journal_path.exists()
    assert keeper.stop(signal.SIGTERM) == 0
    assert not keeper.running
    assert "stopped cleanly" in keeper.output()


def test_keeper_run_killed_by_sigkill_reports_the_signal(
    keeper_process: KeeperProcessFactory,
) -> None:
    keeper = keeper_process()
    keeper.wait_for(lambda: keeper.last_block() is not None, what="a first block")
    assert keeper.stop(signal.SIGKILL) == -signal.SIGKILL


def test_wait_for_fails_with_the_output_when_the_keeper_exits(
    chain: Chain, keeper_process: KeeperProcessFactory
) -> None:
    keeper = keeper_process(args=["--ticks", "2"])
    keeper.wait_for(lambda: keeper.last_block() is not None, what="a first block")
    chain.mine()
    with pytest.raises(KeeperProcessError, match="exited with code 0 while waiting for never"):
        keeper.wait_for(lambda: False, timeout=30, what="never")
    assert keeper.stop() == 0


def test_a_config_without_metrics_has_no_metrics_url(devnet: Devnet, tmp_path: Path) -> None:
    from keeper.testing.process import KeeperProcess  # noqa: PLC0415 (what the fixture builds)

    path = devnet.keeper_config(tmp_path / "keeper.toml", metrics=None)
    process = KeeperProcess(path, devnet.keeper_env())
    with pytest.raises(KeeperProcessError, match="has no \\[metrics\\] section"):
        _ = process.metrics_url
