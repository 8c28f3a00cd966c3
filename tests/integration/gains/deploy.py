"""Our Gains-compatible test deployment (contracts/src/gains/) on Anvil: the diamond, its
oracle, USDC as collateral 1, ETH/USD and BTC/USD as pairs 0 and 1 with Chainlink-like feeds,
Multicall3 at its usual address; and the moves tests make on it: a trader's market opens sent
with web3, a venue's plans sent from any key, the oracle answering pending orders at prices the
test sets, feeds moved, and the diamond's own figures read back."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD
from web3.types import TxReceipt

from keeper.abis import abi
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.testing.devnet import DevChain, dev_account
from keeper.venues.base import LogEntry, MinedTx, TxPlan, TxRequest
from keeper.venues.gains import GainsDeployment, RawTrade

PRICE = 10**10  # Gains' price precision
USDC = 10**6
FEED_DECIMALS = 8
GAS = 3_000_000
ETH, BTC = 0, 1
COLLATERAL = 1
FEE_P = 6 * 10**8  # 0.06% of the position size
SPREAD_P = 4 * 10**8  # 0.04%
LIQ_PARAMS = (5 * 10**8, 90 * 10**10, 80 * 10**10, 25_000, 100_000)
"""maxLiqSpreadP 0.05%, 90% at 25x down to 80% at 100x."""


def diamond_abi() -> list[dict[str, Any]]:
    """The test diamond's ABI with its trading facet's functions (each item once)."""
    own = abi("GainsTestDiamond")
    seen = {(e["type"], e.get("name")) for e in own}
    extra = [
        e
        for e in abi("GainsTradingFacet")
        if e["type"] != "constructor" and (e["type"], e.get("name")) not in seen
    ]
    return own + extra


def mined(receipt: TxReceipt) -> MinedTx:
    """A receipt as the venue protocol's MinedTx, logs included."""
    logs = tuple(
        LogEntry(str(log["address"]), tuple(bytes(t) for t in log["topics"]), bytes(log["data"]))
        for log in receipt["logs"]
    )
    return MinedTx(
        receipt["transactionHash"].hex(), receipt["blockNumber"], receipt["status"] == 1, logs
    )


@dataclass
class GainsDevnet:
    """The deployed contracts and the accounts acting on them: the deployer (owner of the
    diamond and of its oracle), the trader, and the keeper's key (the trader's delegate in
    the delegated tests)."""

    chain: DevChain
    deployment: GainsDeployment
    addresses: dict[str, str]
    deployer: LocalAccount
    trader: LocalAccount
    keeper: LocalAccount

    def contract(self, name: str) -> Any:
        return self.chain.contract(name, self.addresses[name])

    @property
    def diamond(self) -> Any:
        """The diamond with its own ABI and its trading facet's (one address, as on Gains)."""
        w3 = self.chain.w3
        return w3.eth.contract(
            address=w3.to_checksum_address(self.addresses["GainsTestDiamond"]),
            abi=diamond_abi(),
            decode_tuples=True,
        )

    @property
    def usdc(self) -> str:
        return self.addresses["TestUSDC"]

    @property
    def url(self) -> str:
        return self.chain.url

    def send(self, account: LocalAccount, to: str, data: bytes, *, what: str = "tx") -> TxReceipt:
        """Signs and sends with a fixed gas limit; AssertionError when it reverts."""
        w3 = self.chain.w3
        base = self.chain.next_base_fee()
        tx: dict[str, Any] = {
            "to": w3.to_checksum_address(to),
            "data": data,
            "value": 0,
            "gas": GAS,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "type": 2,
            "maxFeePerGas": 2 * base + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30
        )
        if receipt["status"] != 1:
            raise AssertionError(f"{what} reverted in block {receipt['blockNumber']}")
        return receipt

    def call(self, account: LocalAccount, fn: Any) -> TxReceipt:
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return self.send(account, fn.address, data, what=fn.fn_name)

    def send_request(self, account: LocalAccount, request: TxRequest) -> MinedTx:
        return mined(self.send(account, request.to, request.data, what=request.description))

    def send_plan(self, account: LocalAccount, plan: TxPlan) -> list[MinedTx]:
        """Sends a venue's plan step by step from `account`."""
        return [self.send_request(account, step) for step in plan.steps]

    # -- prices, trades, the oracle ---------------------------------------------------------------

    def set_price(self, pair: int, usd: int | str) -> None:
        """Moves pair `pair`'s feed to `usd` (whole dollars or a decimal string)."""
        answer = int(Decimal(str(usd)) * 10**FEED_DECIMALS)
        feed = self.chain.contract("PriceFeed", self.addresses[f"Feed{pair}"])
        self.call(self.deployer, feed.functions.setAnswer(answer))

    def open(self, pair: int, long: bool, collateral: int, leverage: int, price: int) -> int:
        """Opens a market trade of the trader (collateral in USDC units, leverage 1e3, price
        in whole dollars) answered at once by the oracle; the trade's index."""
        trade = (
            self.trader.address, 0, pair, leverage, long, False, COLLATERAL, 0, collateral,
            price * PRICE, 0, 0, False, 0, 0,
        )  # fmt: skip
        receipt = self.call(
            self.trader, self.diamond.functions.openTrade(trade, 1000, self.trader.address)
        )
        order = self.diamond.events.MarketOrderInitiated().process_receipt(receipt, errors=DISCARD)[
            0
        ]["args"]
        self.fulfill(self.trader.address, order["orderId"]["index"], price * PRICE)
        trades = self.trades(self.trader.address)
        return trades[-1].index

    def fulfill(self, user: str, order_index: int, price: int) -> TxReceipt:
        """The oracle answers pending order `order_index` of `user` at `price` (1e10)."""
        oracle = self.contract("GainsTestOracle")
        return self.call(self.deployer, oracle.functions.fulfill(user, order_index, price))

    def liquidate(self, trader: str, index: int, price: int) -> TxReceipt:
        oracle = self.contract("GainsTestOracle")
        return self.call(self.deployer, oracle.functions.liquidate(trader, index, price))

    def pending_orders(self, user: str) -> list[Any]:
        return list(self.diamond.functions.getPendingOrders(user).call())

    def trades(self, user: str) -> list[RawTrade]:
        return [RawTrade.decode(t) for t in self.diamond.functions.getTrades(user).call()]

    def trade(self, user: str, index: int) -> RawTrade:
        return RawTrade.decode(self.diamond.functions.getTrade(user, index).call())

    def balance(self, account: str) -> int:
        return int(self.contract("TestUSDC").functions.balanceOf(account).call())

    def liquidation_price(self, user: str, index: int, price: int) -> int:
        """The diamond's getTradeLiquidationPrice of the trade at `price` (1e10)."""
        d = self.diamond.functions
        t = d.getTrade(user, index).call()
        params = d.getTradeLiquidationParams(user, index).call()
        value = (
            t[6], user, t[2], index, t[9], t[4], t[8], t[3], 0, params, price, t[12], 10**18,
            False,
        )  # fmt: skip
        return int(d.getTradeLiquidationPrice(value).call())

    def set_holding_rates(self, pair: int, borrowing: int, funding: int, price: int) -> None:
        self.call(
            self.deployer,
            self.diamond.functions.setHoldingRates(COLLATERAL, pair, borrowing, funding, price),
        )


def deploy(url: str) -> GainsDevnet:
    """Deploys the Gains test deployment on the node at `url` (see the module's docstring)."""
    chain = DevChain(url)
    deployer, trader, keeper = dev_account(0), dev_account(1), dev_account(2)
    a: dict[str, str] = {}
    multicall = chain.deploy_contract(deployer, "Multicall3")
    code = chain.w3.eth.get_code(chain.w3.to_checksum_address(multicall))
    chain.rpc("anvil_setCode", MULTICALL3_ADDRESS, "0x" + bytes(code).hex())
    a["TestUSDC"] = chain.deploy_contract(deployer, "TestUSDC")
    a["Feed0"] = chain.deploy_contract(deployer, "PriceFeed", "ETH / USD", deployer.address)
    a["Feed1"] = chain.deploy_contract(deployer, "PriceFeed", "BTC / USD", deployer.address)
    a["GainsTestOracle"] = chain.deploy_contract(deployer, "GainsTestOracle")
    a["GainsTradingFacet"] = chain.deploy_contract(deployer, "GainsTradingFacet")
    a["GainsTestDiamond"] = chain.deploy_contract(
        deployer, "GainsTestDiamond", a["GainsTestOracle"], a["GainsTradingFacet"]
    )
    deployment = GainsDeployment(chain_id=int(chain.w3.eth.chain_id), diamond=a["GainsTestDiamond"])
    net = GainsDevnet(chain, deployment, a, deployer, trader, keeper)
    d = net.diamond.functions
    net.call(deployer, net.contract("GainsTestOracle").functions.setDiamond(a["GainsTestDiamond"]))
    net.call(deployer, d.listCollateral(a["TestUSDC"], 6, 10**8))
    for pair, (base, feed, price) in enumerate((("ETH", "Feed0", 2000), ("BTC", "Feed1", 60_000))):
        pair_struct = (base, "USD", (a[feed], "0x" + "00" * 20, 0, 0), SPREAD_P, 0, 0)
        net.call(
            deployer, d.listPair(pair_struct, (FEE_P, 0, 0, 1500, 0), LIQ_PARAMS, 2_000, 150_000)
        )
        net.set_price(pair, price)
    usdc = net.contract("TestUSDC").functions
    net.call(deployer, usdc.mint(trader.address, 100_000 * USDC))
    net.call(deployer, usdc.mint(a["GainsTestDiamond"], 1_000_000 * USDC))
    net.call(trader, usdc.approve(a["GainsTestDiamond"], 2**256 - 1))
    return net
