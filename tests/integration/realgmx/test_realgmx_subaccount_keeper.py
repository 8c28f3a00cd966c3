"""`keeper run` in subaccount mode on GMX's own contracts: the keeper signs with a subaccount key
the trader added through SubaccountRouter (accounts.delegated), tops up from the trader's wallet
and closes for the trader; it refuses to start for an account that never added it; and `keeper
gmx subaccount` prints the setup. The bodies are shared with our deployment's tests
(tests/integration/gmx/subaccount_cases.py); `RealGmxKeeperChain` runs them on test_realgmx_
keeper.py's Scene and Guarded."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from keeper.testing.devnet import KEY_ENV
from keeper.venues.gmx import GmxDeployment, RawPosition
from tests.integration.gmx import subaccount_cases as cases
from tests.integration.realgmx.test_realgmx_keeper import (
    Guarded,
    Scene,
    gmx_settings,
    guard,
    receiver,
    scene,
    write_config,
)

__all__ = ["guard", "receiver", "scene"]  # the fixtures this module shares

pytestmark = pytest.mark.integration


@dataclass
class RealGmxKeeperChain:
    """GMX's own deployment, with the trader's long of `scene`, as the cases' KeeperChain."""

    scene: Scene
    start: Callable[[Path], Guarded]

    @property
    def url(self) -> str:
        return self.scene.gmx.url

    @property
    def deployment(self) -> GmxDeployment:
        return self.scene.gmx.deployment

    @property
    def trader(self) -> LocalAccount:
        return self.scene.gmx.trader

    @property
    def usdc(self) -> str:
        return self.scene.gmx.usdc

    @property
    def key(self) -> str:
        return self.scene.key

    @property
    def journal(self) -> Path:
        return self.scene.journal

    def block_time(self) -> int:
        return self.scene.gmx.block_time()

    def send(
        self, account: LocalAccount, to: str, data: bytes, *, value: int = 0, what: str = "tx"
    ) -> TxReceipt:
        return self.scene.gmx.send(account, to, data, value=value, what=what)

    def balance(self, token: str, account: str) -> int:
        return self.scene.gmx.balance(token, account)

    def native_balance(self, account: str) -> int:
        w3 = self.scene.gmx.chain.w3
        return int(w3.eth.get_balance(w3.to_checksum_address(account)))

    def position(self, key: str) -> RawPosition:
        return self.scene.gmx.position(key)

    def sign_with(self, account: LocalAccount) -> None:
        self.scene.env[KEY_ENV] = "0x" + bytes(account.key).hex()

    def delegated_config(self, **thresholds: str) -> Path:
        s = self.scene
        settings = gmx_settings(s.gmx, s.tmp, s.receiver.url, thresholds=thresholds)
        settings["accounts"]["delegated"] = True
        return write_config(s.tmp / "delegated.toml", settings)

    def guard(self, config: Path) -> Guarded:
        return self.start(config)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.scene.cli(*args, timeout=timeout)


@pytest.fixture
def real_keeper_chain(scene: Scene, guard: Callable[[Path], Guarded]) -> RealGmxKeeperChain:
    """The scene's position is the cases' (10 ETH long at 5,000 with 12,500 USDC)."""
    position = scene.gmx.position(scene.key)
    assert position.size_in_usd == cases.SIZE_USD * cases.USD
    assert position.collateral_amount == cases.COLLATERAL * 10**6
    return RealGmxKeeperChain(scene, guard)


def test_keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(
    real_keeper_chain: RealGmxKeeperChain,
) -> None:
    cases.keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(real_keeper_chain)


def test_keeper_run_refuses_to_start_for_an_account_that_never_added_it(
    real_keeper_chain: RealGmxKeeperChain,
) -> None:
    cases.keeper_run_refuses_to_start_for_an_account_that_never_added_it(real_keeper_chain)


def test_gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(
    real_keeper_chain: RealGmxKeeperChain,
) -> None:
    cases.gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(real_keeper_chain)


def test_gmx_subaccount_refuses_bad_arguments(real_keeper_chain: RealGmxKeeperChain) -> None:
    cases.gmx_subaccount_refuses_bad_arguments(real_keeper_chain)
