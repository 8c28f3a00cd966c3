"""Subaccount mode against GMX's own SubaccountRouter: the trader's main key sends the setup
the adapter builds, the keeper's subaccount key then tops up and closes the trader's position
(collateral from the trader's wallet, proceeds to the trader), and GMX refuses every order of
the subaccount that would pay the subaccount. The bodies are shared with our deployment's tests
(tests/integration/gmx/subaccount_cases.py); `RealGmxChain` is GMX's chain for them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from keeper.venues.base import MinedTx, TxPlan
from keeper.venues.gmx import GmxDeployment, GmxVenue, RawPosition
from tests.integration.gmx import subaccount_cases as cases
from tests.integration.realgmx.harness import GmxCallError, OrderOutcome, RealGmx

pytestmark = pytest.mark.integration


@dataclass
class RealGmxChain:
    """GMX's own deployment as the subaccount cases' SubaccountChain."""

    gmx: RealGmx

    @property
    def url(self) -> str:
        return self.gmx.url

    @property
    def deployment(self) -> GmxDeployment:
        return self.gmx.deployment

    @property
    def trader(self) -> LocalAccount:
        return self.gmx.trader

    @property
    def usdc(self) -> str:
        return self.gmx.usdc

    @property
    def market_token(self) -> str:
        return self.gmx.market.market_token

    def block_time(self) -> int:
        return self.gmx.block_time()

    def advance_time(self, seconds: int) -> None:
        self.gmx.advance_time(seconds)

    def send(
        self, account: LocalAccount, to: str, data: bytes, *, value: int = 0, what: str = "tx"
    ) -> TxReceipt:
        return self.gmx.send(account, to, data, value=value, what=what)

    def send_plan(self, account: LocalAccount, plan: TxPlan) -> list[MinedTx]:
        return self.gmx.send_plan(account, plan)

    def usdc_units(self, whole: int) -> int:
        return self.gmx.units(self.gmx.usdc, whole)

    def mint_usdc(self, to: str, whole: int) -> None:
        self.gmx.mint_usdc(to, whole)

    def balance(self, token: str, account: str) -> int:
        return self.gmx.balance(token, account)

    def native_balance(self, account: str) -> int:
        return int(
            self.gmx.chain.w3.eth.get_balance(self.gmx.chain.w3.to_checksum_address(account))
        )

    def open_long(self) -> str:
        gmx = self.gmx
        gmx.mint_usdc(gmx.trader.address, cases.MINTED)
        return gmx.open_position(
            gmx.trader,
            collateral_amount=self.usdc_units(cases.COLLATERAL),
            size_usd=cases.SIZE_USD,
            is_long=True,
            prices=gmx.prices(cases.ENTRY),
        )

    def position(self, key: str) -> RawPosition:
        return self.gmx.position(key)

    def pending_orders(self, account: str) -> list[bytes]:
        return [order.key for order in self.gmx.pending_orders(account)]

    def execute_at(self, key: bytes, eth: Decimal) -> OrderOutcome:
        return self.gmx.execute_order(key, self.gmx.prices(eth))

    def revert_name(self, to: str, data: bytes, *, sender: str, value: int = 0) -> str:
        try:
            self.gmx.eth_call(to, data, sender=sender, value=value)
        except GmxCallError as exc:
            return exc.reason.name
        raise AssertionError(f"eth_call to {to} did not revert")


@pytest.fixture
def real_chain(realgmx: RealGmx) -> RealGmxChain:
    return RealGmxChain(realgmx)


async def test_setup_makes_an_active_subaccount_with_limits(
    real_chain: RealGmxChain, venue: GmxVenue
) -> None:
    await cases.setup_makes_an_active_subaccount_with_limits(real_chain, venue)


async def test_the_subaccount_tops_up_and_closes_for_the_trader(
    real_chain: RealGmxChain, venue: GmxVenue
) -> None:
    await cases.the_subaccount_tops_up_and_closes_for_the_trader(real_chain, venue)


@pytest.mark.parametrize("field", ["receiver", "cancellation_receiver"])
async def test_gmx_refuses_a_subaccount_order_that_pays_the_subaccount(
    real_chain: RealGmxChain, venue: GmxVenue, field: str
) -> None:
    await cases.gmx_refuses_a_subaccount_order_that_pays_the_subaccount(real_chain, venue, field)


async def test_a_key_the_trader_never_added_cannot_act(
    real_chain: RealGmxChain, venue: GmxVenue
) -> None:
    await cases.a_key_the_trader_never_added_cannot_act(real_chain, venue)
