"""Our GMX test deployment as the subaccount cases' chains (tests/integration/gmx/
subaccount_cases.py): `OurChain` for the adapter's scenarios, `OurKeeperChain` for `keeper run`
and the manual commands, with the test as GMX's order keeper.

The keeper's config is examples/arbitrum.toml with what this chain needs changed, as
tests/integration/realgmx/test_realgmx_keeper.py makes it for GMX's own deployment; the market
charges no position fee in these scenarios (GMX's own test market charges none either), so both
deployments reach the same numbers."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.testing.devnet import KEY_ENV, to_toml
from keeper.testing.plugin import KeeperProcessFactory
from keeper.testing.process import KeeperProcess
from keeper.venues.base import MinedTx, TxPlan
from keeper.venues.gmx import GmxDeployment, GmxFn, RawPosition
from keeper.venues.gmx_math import data_key
from tests.integration.gmx.deploy import MARKET, CallRevertedError, GmxDevnet, OrderOutcome
from tests.integration.gmx.keeper_run import (
    BLOCK_SECONDS,
    KEEPER,
    OPEN,
    caught_up,
    local_settings,
    settle,
    venue_section,
)
from tests.integration.gmx.subaccount_cases import (
    COLLATERAL,
    ENTRY,
    MINTED,
    SIZE_USD,
    intents,
)
from tests.integration.ops.test_running_keeper import Receiver

USDC = 10**6
_GET_MARKET = GmxFn.of("Reader", "getMarket")
_IS_LIQUIDATABLE = GmxFn.of("Reader", "isPositionLiquidatable")


def no_position_fee(net: GmxDevnet) -> None:
    """POSITION_FEE_FACTOR(market, false) to 0: a market without fees, like GMX's own test one."""
    ds = net.contract("GmxDataStore").functions
    key = data_key("POSITION_FEE_FACTOR", ("address", MARKET), ("bool", False))
    net.call(net.deployer, ds.setUint(key, 0))


def open_long(net: GmxDevnet) -> str:
    """The trader mints MINTED USDC and opens SIZE_USD long at ENTRY with COLLATERAL USDC, the
    price feed moved there first; the position key."""
    net.mint_usdc(net.trader.address, MINTED * USDC)
    eth = int(ENTRY)
    net.set_eth_price(eth)
    return net.open(is_long=True, size_usd=SIZE_USD, collateral_usdc=COLLATERAL * USDC, eth_usd=eth)


@dataclass
class OurChain:
    """Our deployment as a `SubaccountChain`."""

    net: GmxDevnet

    @property
    def url(self) -> str:
        return self.net.url

    @property
    def deployment(self) -> GmxDeployment:
        return self.net.deployment

    @property
    def trader(self) -> LocalAccount:
        return self.net.trader

    @property
    def usdc(self) -> str:
        return self.net.usdc

    @property
    def market_token(self) -> str:
        return MARKET

    def block_time(self) -> int:
        return self.net.block_time()

    def advance_time(self, seconds: int) -> None:
        self.net.advance_time(seconds)

    def send(
        self, account: LocalAccount, to: str, data: bytes, *, value: int = 0, what: str = "tx"
    ) -> TxReceipt:
        return self.net.send(account, to, data, value=value, what=what)

    def send_plan(self, account: LocalAccount, plan: TxPlan) -> list[MinedTx]:
        return self.net.send_plan(account, plan)

    def usdc_units(self, whole: int) -> int:
        return whole * USDC

    def mint_usdc(self, to: str, whole: int) -> None:
        self.net.mint_usdc(to, whole * USDC)

    def balance(self, token: str, account: str) -> int:
        return self.net.balance(token, account)

    def native_balance(self, account: str) -> int:
        return self.net.native_balance(account)

    def open_long(self) -> str:
        return open_long(self.net)

    def position(self, key: str) -> RawPosition:
        return self.net.position(key)

    def pending_orders(self, account: str) -> list[bytes]:
        return self.net.pending_orders(account)

    def execute_at(self, key: bytes, eth: Decimal) -> OrderOutcome:
        return self.net.execute_order(key, int(eth))

    def revert_name(self, to: str, data: bytes, *, sender: str, value: int = 0) -> str:
        try:
            self.net.eth_call(to, data, sender=sender, value=value)
        except CallRevertedError as exc:
            return exc.name
        raise AssertionError(f"eth_call to {to} did not revert")


@dataclass
class OurGuard:
    """`keeper run` protecting the trader's position: the test moves the ETH price feed and,
    as the order keeper, executes every order the keeper creates; after every move it asks the
    Reader whether the position is liquidatable."""

    net: GmxDevnet
    run: KeeperProcess
    key: str
    journal: Path

    def caught_up(self) -> int:
        """Waits until the keeper has processed the chain's head; that block."""
        return caught_up(self.run, self.net.chain.block_number())

    def open_statuses(self) -> set[str]:
        return {r.status for r in intents(self.journal) if r.status in OPEN}

    def move(self, eth: int) -> list[OrderOutcome]:
        self.net.set_eth_price(eth)
        self.check_safe(eth)
        return self.settle(eth)

    def settle(
        self, eth: int, *, quiet_blocks: int = 2, timeout: float = 60.0
    ) -> list[OrderOutcome]:
        """Executes every order the keeper creates at `eth` until the keeper has processed
        `quiet_blocks` blocks in a row with nothing in flight and no order pending."""
        net, trader = self.net, self.net.trader.address
        outcomes = settle(
            self.run, net.chain.block_number, self.open_statuses,
            lambda: [net.execute_order(key, eth) for key in net.pending_orders(trader)], eth,
            quiet_blocks=quiet_blocks, timeout=timeout,
        )  # fmt: skip
        self.check_safe(eth)
        return outcomes

    def check_safe(self, eth: int) -> None:
        """The Reader's isPositionLiquidatable at `eth`, as GMX's liquidation keeper asks it."""
        position = self.net.position(self.key)
        if position.size_in_usd == 0:
            return
        d = self.net.deployment
        (market,) = _GET_MARKET.decode(
            self.net.eth_call(d.reader, _GET_MARKET.encode(d.data_store, MARKET))
        )
        data = _IS_LIQUIDATABLE.encode(
            d.data_store,
            d.referral_storage,
            bytes.fromhex(self.key[2:]),
            tuple(market),
            self.net.prices(eth),
            True,
            True,
        )
        liquidatable, reason, _info = _IS_LIQUIDATABLE.decode(self.net.eth_call(d.reader, data))
        assert not liquidatable, f"GMX would liquidate the position at {eth}: {reason}"

    def stop(self) -> None:
        assert self.run.stop() == 0, self.run.output()[-4000:]
        assert "stopped cleanly" in self.run.output()


@dataclass
class OurKeeperChain(OurChain):
    """The trader's long on our deployment (`open_long`) and `keeper` commands on it."""

    key: str
    tmp: Path
    receiver: Receiver
    keeper_process: KeeperProcessFactory
    env: dict[str, str] = field(default_factory=dict)

    @property
    def journal(self) -> Path:
        return self.tmp / "journal.sqlite"

    def sign_with(self, account: LocalAccount) -> None:
        self.env[KEY_ENV] = "0x" + bytes(account.key).hex()

    def settings(self, **thresholds: str) -> dict[str, Any]:
        """examples/arbitrum.toml with only what this chain needs changed (as gmx_settings of
        tests/integration/realgmx/test_realgmx_keeper.py changes it for GMX's own chain)."""
        chain = {"chain_id": self.deployment.chain_id, "rpc": [self.url]}
        chain["multicall"] = MULTICALL3_ADDRESS
        return local_settings(
            chain, venue_section(self.deployment), self.trader.address, self.tmp,
            self.receiver.url, thresholds=thresholds,
        )  # fmt: skip

    def delegated_config(self, **thresholds: str) -> Path:
        settings = self.settings(**thresholds)
        settings["accounts"]["delegated"] = True
        path = self.tmp / "delegated.toml"
        path.write_text(to_toml(settings))
        return path

    def guard(self, config: Path) -> OurGuard:
        """`keeper run` on `config`, with Anvil mining a block a second (`mine_every_second`)."""
        self.mine_every_second()
        guarded = OurGuard(self.net, self.keeper_process(config, self.env), self.key, self.journal)
        guarded.caught_up()
        return guarded

    def mine_every_second(self) -> None:
        """Anvil mines a block a second from now on, its clock set to the wall clock first (the
        example's max_block_age_s); `mine_on_demand` puts back a block per transaction."""
        stamp = max(int(time.time()), self.block_time() + 1)
        self.net.chain.rpc("evm_setNextBlockTimestamp", stamp)
        self.net.chain.mine()
        self.net.chain.rpc("evm_setIntervalMining", BLOCK_SECONDS)

    def mine_on_demand(self) -> None:
        self.net.chain.rpc("evm_setIntervalMining", 0)
        self.net.chain.rpc("evm_setAutomine", True)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KEEPER, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={**os.environ, **self.env},
            cwd=self.tmp,
        )
