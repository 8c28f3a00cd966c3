"""Forking, tested offline: a first Anvil holds our deployment and stands in for a remote chain;
a second Anvil forks it. The deployment is there in the fork, the helpers work on the fork, and
the plugin's --fork-url / --fork-block options (and KEEPER_FORK_URL / KEEPER_FORK_BLOCK) start
the `anvil` fixture as such a fork in a pytest run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from keeper.testing import helpers
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import DevChain, Devnet, deploy

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Origin:
    """The chain being forked: an Anvil with our deployment, a few blocks past it."""

    node: Anvil
    devnet: Devnet
    fork_block: int  # the last block with the deployment, before `late_holder` was funded
    late_holder: str


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with Anvil() as node:
        devnet = deploy(node.url)
        fork_block = devnet.chain.block_number()
        late = str(Account.create().address)
        devnet.fund(late, 777)  # after the fork block: a fork pinned there must not see it
        devnet.chain.mine(3)
        yield Origin(node, devnet, fork_block, late)


@pytest.fixture(scope="module")
def fork(origin: Origin) -> Iterator[Devnet]:
    """A second Anvil forking the origin at its fork block, with the origin's addresses."""
    with Anvil(fork_url=origin.node.url, fork_block=origin.fork_block) as node:
        yield Devnet(DevChain(node.url), origin.devnet.deployment, origin.devnet.markets)


@pytest.fixture
def forked(fork: Devnet) -> Iterator[Devnet]:
    """The fork, reverted after the test."""
    snap = fork.chain.snapshot()
    try:
        yield fork
    finally:
        fork.chain.revert(snap)


def test_the_deployment_is_there_in_the_fork(origin: Origin, forked: Devnet) -> None:
    d = forked.deployment
    assert forked.chain.block_number() == origin.fork_block
    for address in (d.exchange, d.lens, d.usdc, d.multicall, *d.feeds.values()):
        assert helpers.get_code(forked, address) == helpers.get_code(origin.node, address)
        assert len(helpers.get_code(forked, address)) > 2
    assert forked.exchange.functions.marketCount().call() == len(forked.markets)
    assert forked.usdc_balance(d.trader) == origin.devnet.usdc_balance(d.trader) > 0
    assert forked.price("ETH") == Decimal("2000")
    # pinned: what the origin did after the fork block is not in the fork
    assert origin.devnet.usdc_balance(origin.late_holder) == 777 * 10**6
    assert forked.usdc_balance(origin.late_holder) == 0


def test_the_fork_trades_without_touching_the_origin(origin: Origin, forked: Devnet) -> None:
    trader = forked.account("trader")
    key = forked.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    assert forked.exchange.functions.positions(key).call().size == 10 * 10**18
    assert origin.devnet.exchange.functions.positions(key).call().size == 0


def test_token_slots_are_found_on_the_fork(origin: Origin, forked: Devnet) -> None:
    usdc = forked.deployment.usdc
    holder = str(Account.create().address)
    found = helpers.set_token_balance(forked, usdc, holder, 5_000 * 10**6)
    assert (found.layout, found.mapping_slot) == ("mapping", 1)
    assert forked.usdc_balance(holder) == 5_000 * 10**6
    assert origin.devnet.usdc_balance(holder) == 0
    # without the tracer too (a remote node may not trace)
    assert helpers.find_balance_slot(forked, usdc, holder, trace=False).key == found.key


def test_a_feed_on_the_fork_is_replaced_and_the_exchange_reads_it(
    origin: Origin, forked: Devnet
) -> None:
    trader = forked.account("trader")
    key = forked.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    feed = forked.deployment.feeds["ETH"]
    assert not forked.is_liquidatable(key)
    assert helpers.set_feed_price(forked, feed, "1805", method="replace") == "replace"
    assert forked.price("ETH") == Decimal("1805")
    assert helpers.feed_round(forked, feed).updated_at == helpers.latest_timestamp(forked)
    assert forked.is_liquidatable(key)
    assert origin.devnet.price("ETH") == Decimal("2000")
    assert helpers.get_code(origin.node, feed) != helpers.FIXED_FEED_CODE


def test_impersonation_and_eth_balances_work_on_the_fork(forked: Devnet) -> None:
    d = forked.deployment
    helpers.set_balance(forked, d.trader, 3 * 10**18)
    assert helpers.eth_balance(forked, d.trader) == 3 * 10**18
    data = helpers._calldata("transfer(address,uint256)", ["address", "uint256"], [d.lp, 1])
    before = forked.usdc_balance(d.lp)
    helpers.send_as(forked, d.trader, d.usdc, data, what="transfer")  # no key used
    assert forked.usdc_balance(d.lp) == before + 1


# -- the plugin's fork options, in a pytest run of their own --------------------------------------

INNER_TEST = """
import os

from keeper.testing import helpers


def test_the_anvil_fixture_forks_the_origin(anvil):
    assert anvil.fork_url == os.environ["ORIGIN_URL"]
    assert helpers.block_number(anvil) == int(os.environ["FORK_BLOCK"])
    assert len(helpers.get_code(anvil, os.environ["EXCHANGE"])) > 2


def test_the_chain_fixture_works_on_the_fork(chain):
    usdc = os.environ["USDC"]
    holder = "0x000000000000000000000000000000000000bEEF"
    chain.set_token_balance(usdc, holder, 42)
    assert chain.token_balance(usdc, holder) == 42
    assert chain.set_feed_answer(os.environ["FEED"], 123, method="replace") == "replace"
    assert chain.feed_round(os.environ["FEED"]).answer == 123


def test_devnet_deploys_again_on_the_fork(devnet):
    assert devnet.deployment.exchange != os.environ["EXCHANGE"]
    assert devnet.price("ETH") == 2000
"""


def run_pytest(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest on INNER_TEST in tmp_path; the keeper plugin loads through its entry point."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_FORK_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        check=False,
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def origin_env(origin: Origin) -> dict[str, str]:
    d = origin.devnet.deployment
    return {
        "ORIGIN_URL": origin.node.url,
        "FORK_BLOCK": str(origin.fork_block),
        "EXCHANGE": d.exchange,
        "USDC": d.usdc,
        "FEED": d.feeds["ETH"],
    }


def test_the_fork_options_start_the_anvil_fixture_as_a_fork(origin: Origin, tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        "--fork-url",
        origin.node.url,
        "--fork-block",
        str(origin.fork_block),
        env=origin_env(origin),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_fork_environment_variables_do_the_same(origin: Origin, tmp_path: Path) -> None:
    env = origin_env(origin) | {
        "KEEPER_FORK_URL": origin.node.url,
        "KEEPER_FORK_BLOCK": str(origin.fork_block),
    }
    done = run_pytest(tmp_path, "-k", "forks_the_origin", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
