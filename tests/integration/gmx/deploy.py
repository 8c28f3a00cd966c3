"""Our GMX-v2-compatible test deployment (contracts/src/gmx/) on Anvil, SubaccountRouter
included (CONTROLLER and ROUTER_PLUGIN like the ExchangeRouter), and the moves tests make on it:
a trader's own orders sent with web3, a venue's plans sent from any key, reads (positions,
pending orders, balances, the GMX error an eth_call reverts with), and the order keeper
executing or cancelling orders at prices the test sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.testing.devnet import DevChain, dev_account
from keeper.venues.base import LogEntry, MinedTx, TxPlan
from keeper.venues.gmx import (
    ZERO_ADDRESS,
    CreateOrder,
    GmxDeployment,
    GmxFn,
    RawPosition,
    decode_gmx_error,
    encode_create_order,
    order_key_of,
)
from keeper.venues.gmx_math import FLOAT_PRECISION, OrderType, data_key, name_key

USD = FLOAT_PRECISION
MARKET = "0x70d95587d40A2caf56bd97485aB3Eec10Bee6336"  # a market token address (no code here)
GAS = 3_000_000
FEED_DECIMALS = 8
_BALANCE_OF = GmxFn.of("ERC20", "balanceOf")
_GET_POSITION = GmxFn.of("Reader", "getPosition")
_ACCOUNT_ORDERS = GmxFn.of("Reader", "getAccountOrders")


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What the order keeper's executeOrder did with an order: executed, or cancelled with
    `reason` (the name of the GMX error the execution ended with)."""

    key: bytes
    executed: bool
    reason: str = ""


@dataclass
class GmxDevnet:
    """The deployed contracts and the accounts acting on them."""

    chain: DevChain
    deployment: GmxDeployment
    addresses: dict[str, str]
    deployer: LocalAccount
    trader: LocalAccount
    keeper: LocalAccount

    def contract(self, name: str) -> Any:
        return self.chain.contract(name, self.addresses[name])

    @property
    def usdc(self) -> str:
        return self.addresses["TestUSDC"]

    @property
    def wnt(self) -> str:
        return self.addresses["GmxWNT"]

    def send(
        self,
        account: LocalAccount,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        max_fee: int | None = None,
        what: str = "tx",
    ) -> TxReceipt:
        """Sign and send with a fixed gas limit; `max_fee` caps the gas price (it is also the
        priority fee's cap, so the effective gas price is at most `max_fee`)."""
        w3 = self.chain.w3
        base = self.chain.next_base_fee()
        fee = max_fee if max_fee is not None else 2 * base + 10**9
        tx: dict[str, Any] = {
            "to": w3.to_checksum_address(to),
            "data": data,
            "value": value,
            "gas": GAS,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "type": 2,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": max(fee - base, 0),
        }
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30
        )
        if receipt["status"] != 1:
            raise AssertionError(f"{what} reverted in block {receipt['blockNumber']}")
        return receipt

    def call(self, account: LocalAccount, fn: Any, *, value: int = 0) -> TxReceipt:
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return self.send(account, fn.address, data, value=value, what=fn.fn_name)

    def send_plan(self, account: LocalAccount, plan: TxPlan) -> list[MinedTx]:
        """Sends a venue's plan step by step from `account` at the node's gas price (what the
        venue prices execution fees at)."""
        price = int(self.chain.w3.eth.gas_price)
        return [
            mined(
                self.send(
                    account,
                    step.to,
                    step.data,
                    value=step.value,
                    max_fee=price,
                    what=step.description,
                )
            )
            for step in plan.steps
        ]

    def eth_call(self, to: str, data: bytes, *, sender: str | None = None, value: int = 0) -> bytes:
        """eth_call at the latest block; AssertionError naming the decoded GMX error when it
        reverts."""
        call: dict[str, Any] = {"to": to, "data": "0x" + data.hex(), "value": hex(value)}
        if sender is not None:
            call["from"] = sender
        response = self.chain.w3.provider.make_request(RPCEndpoint("eth_call"), [call, "latest"])
        error = response.get("error")
        if error is not None:
            raw = error.get("data") if isinstance(error, dict) else None
            reason = decode_gmx_error(raw if isinstance(raw, str) else None)
            raise CallRevertedError(f"eth_call to {to}: {reason.message}", reason.name)
        return bytes.fromhex(str(response["result"])[2:])

    # -- reads ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.chain.url

    def block_time(self) -> int:
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Moves the clock forward and mines a block at the new time."""
        self.chain.advance_time(seconds)

    def balance(self, token: str, account: str) -> int:
        (amount,) = _BALANCE_OF.decode(self.eth_call(token, _BALANCE_OF.encode(account)))
        return int(amount)

    def native_balance(self, account: str) -> int:
        return int(self.chain.w3.eth.get_balance(self.chain.w3.to_checksum_address(account)))

    def mint_usdc(self, to: str, amount: int) -> None:
        """Mints `amount` (smallest units) of the test USDC to `to`."""
        self.call(self.deployer, self.contract("TestUSDC").functions.mint(to, amount))

    def position(self, key: str) -> RawPosition:
        """Reader.getPosition (an empty position has size 0)."""
        d = self.deployment
        data = self.eth_call(d.reader, _GET_POSITION.encode(d.data_store, bytes.fromhex(key[2:])))
        (props,) = _GET_POSITION.decode(data)
        return RawPosition.decode(props)

    def pending_orders(self, account: str) -> list[bytes]:
        """The keys of the account's orders in the DataStore (Reader.getAccountOrders)."""
        d = self.deployment
        data = self.eth_call(d.reader, _ACCOUNT_ORDERS.encode(d.data_store, account, 0, 1000))
        (infos,) = _ACCOUNT_ORDERS.decode(data)
        return [bytes(key) for key, _order in infos]

    # -- prices and orders ----------------------------------------------------------------------

    def set_eth_price(self, usd: int) -> None:
        feed = self.contract("PriceFeed")
        self.call(self.deployer, feed.functions.setAnswer(usd * 10**FEED_DECIMALS))

    def prices(self, eth_usd: int) -> tuple[Any, ...]:
        """MarketPrices at `eth_usd` with no spread (what the Chainlink source reads)."""
        eth = (eth_usd * 10**12, eth_usd * 10**12)
        return (eth, eth, (10**24, 10**24))

    def execute(self, key: bytes, eth_usd: int) -> TxReceipt:
        handler = self.contract("GmxOrderHandler")
        return self.call(self.keeper, handler.functions.executeOrder(key, self.prices(eth_usd)))

    def execute_order(self, key: bytes, eth_usd: int) -> OrderOutcome:
        """`execute` at `eth_usd`, and what the order handler did with the order."""
        receipt = self.execute(key, eth_usd)
        emitter = self.contract("GmxEventEmitter")
        for event in emitter.events.EventLog2().process_receipt(receipt, errors=DISCARD):
            args = event["args"]
            if bytes(args["topic1"]) != key:
                continue
            if args["eventName"] == "OrderExecuted":
                return OrderOutcome(key, True)
            if args["eventName"] == "OrderCancelled":
                items = args["eventData"]["bytesItems"]["items"]
                data = next((bytes(v) for k, v in items if k == "reasonBytes"), b"")
                return OrderOutcome(key, False, decode_gmx_error(data).name)
        raise AssertionError(f"executeOrder 0x{key.hex()}: neither executed nor cancelled")

    def keeper_cancel(self, key: bytes, reason: str) -> TxReceipt:
        handler = self.contract("GmxOrderHandler")
        return self.call(self.keeper, handler.functions.cancelOrderByKeeper(key, reason))

    def open(self, *, is_long: bool, size_usd: int, collateral_usdc: int, eth_usd: int) -> str:
        """The trader opens a position with its own order, executed at `eth_usd`; its key."""
        usdc = self.contract("TestUSDC")
        self.call(self.trader, usdc.functions.approve(self.deployment.router, collateral_usdc))
        max_fee = 2 * self.chain.next_base_fee() + 10**9
        handler = self.contract("GmxOrderHandler")
        fee = handler.functions.estimateExecutionGasLimit(True).call() * max_fee
        order = CreateOrder(
            receiver=self.trader.address,
            cancellation_receiver=self.trader.address,
            market=MARKET,
            initial_collateral_token=self.usdc,
            order_type=OrderType.MARKET_INCREASE,
            is_long=is_long,
            size_delta_usd=size_usd * USD,
            acceptable_price=2**256 - 1 if is_long else 0,
            execution_fee=fee,
        )
        router = self.contract("GmxExchangeRouter")
        calls = [
            router.functions.sendWnt(self.deployment.order_vault, fee)._encode_transaction_data(),
            router.functions.sendTokens(
                self.usdc, self.deployment.order_vault, collateral_usdc
            )._encode_transaction_data(),
            "0x" + encode_create_order(order).hex(),
        ]
        multicall = router.functions.multicall([bytes.fromhex(c[2:]) for c in calls])
        data = bytes.fromhex(multicall._encode_transaction_data()[2:])
        receipt = self.send(
            self.trader, router.address, data, value=fee, max_fee=max_fee, what="open"
        )
        key = order_key_of(mined(receipt).logs, self.deployment.event_emitter)
        assert key is not None
        self.execute(key, eth_usd)
        position_key: bytes = handler.functions.positionKey(
            self.trader.address, MARKET, self.usdc, is_long
        ).call()
        return "0x" + position_key.hex()


class CallRevertedError(AssertionError):
    """An eth_call reverted; `name` is the GMX error's (empty when it did not decode)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def mined(receipt: TxReceipt) -> MinedTx:
    """A receipt as the venue protocol's MinedTx, logs included."""
    logs = tuple(
        LogEntry(
            str(log["address"]),
            tuple(bytes(t) for t in log["topics"]),
            bytes(log["data"]),
        )
        for log in receipt["logs"]
    )
    return MinedTx(
        receipt["transactionHash"].hex(), receipt["blockNumber"], receipt["status"] == 1, logs
    )


def deploy(url: str) -> GmxDevnet:
    """Deploys the test GMX on the node at `url` and configures it like a GMX market."""
    chain = DevChain(url)
    deployer, trader, keeper = dev_account(0), dev_account(1), dev_account(2)
    a: dict[str, str] = {}
    a["GmxRoleStore"] = chain.deploy_contract(deployer, "GmxRoleStore")
    for name in ("GmxDataStore", "GmxEventEmitter", "GmxOrderVault", "GmxRouter"):
        a[name] = chain.deploy_contract(deployer, name, a["GmxRoleStore"])
    a["GmxWNT"] = chain.deploy_contract(deployer, "GmxWNT")
    a["TestUSDC"] = chain.deploy_contract(deployer, "TestUSDC")
    a["GmxOrderHandler"] = chain.deploy_contract(
        deployer,
        "GmxOrderHandler",
        a["GmxRoleStore"],
        a["GmxDataStore"],
        a["GmxEventEmitter"],
        a["GmxOrderVault"],
    )
    a["GmxExchangeRouter"] = chain.deploy_contract(
        deployer, "GmxExchangeRouter", a["GmxDataStore"], a["GmxRouter"], a["GmxOrderHandler"]
    )
    a["GmxReader"] = chain.deploy_contract(deployer, "GmxReader", a["GmxOrderHandler"])
    a["GmxSubaccountRouter"] = chain.deploy_contract(
        deployer,
        "GmxSubaccountRouter",
        a["GmxDataStore"],
        a["GmxRouter"],
        a["GmxEventEmitter"],
        a["GmxOrderHandler"],
    )
    a["PriceFeed"] = chain.deploy_contract(deployer, "PriceFeed", "ETH / USD", deployer.address)
    a["UsdcFeed"] = chain.deploy_contract(deployer, "PriceFeed", "USDC / USD", deployer.address)
    deployment = GmxDeployment(
        chain_id=int(chain.w3.eth.chain_id),
        data_store=a["GmxDataStore"],
        reader=a["GmxReader"],
        exchange_router=a["GmxExchangeRouter"],
        router=a["GmxRouter"],
        order_vault=a["GmxOrderVault"],
        role_store=a["GmxRoleStore"],
        referral_storage=ZERO_ADDRESS,
        event_emitter=a["GmxEventEmitter"],
        multicall=MULTICALL3_ADDRESS,
        subaccount_router=a["GmxSubaccountRouter"],
    )
    net = GmxDevnet(chain, deployment, a, deployer, trader, keeper)
    roles = net.contract("GmxRoleStore").functions
    for who, role in (
        (deployer.address, "CONTROLLER"),
        (a["GmxOrderHandler"], "CONTROLLER"),
        (a["GmxExchangeRouter"], "CONTROLLER"),
        (a["GmxExchangeRouter"], "ROUTER_PLUGIN"),
        (a["GmxSubaccountRouter"], "CONTROLLER"),
        (a["GmxSubaccountRouter"], "ROUTER_PLUGIN"),
        (keeper.address, "ORDER_KEEPER"),
    ):
        net.call(deployer, roles.grantRole(who, name_key(role)))
    ds = net.contract("GmxDataStore").functions
    m = ("address", MARKET)
    settings: list[tuple[bytes, int]] = [
        (name_key("MIN_COLLATERAL_USD"), 1 * USD),
        (name_key("MIN_POSITION_SIZE_USD"), 1 * USD),
        (name_key("REQUEST_EXPIRATION_TIME"), 300),
        (name_key("NATIVE_TOKEN_TRANSFER_GAS_LIMIT"), 200_000),  # the auto top-up's native send
        (name_key("ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1"), 600_000),
        (name_key("ESTIMATED_GAS_FEE_PER_ORACLE_PRICE"), 250_000),
        (name_key("ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR"), USD),
        (name_key("INCREASE_ORDER_GAS_LIMIT"), 3_000_000),
        (name_key("DECREASE_ORDER_GAS_LIMIT"), 3_000_000),
        (data_key("MIN_COLLATERAL_FACTOR", m), USD // 100),
        (data_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", m), USD // 200),
        (data_key("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS", m), USD // 100),
        (data_key("POSITION_FEE_FACTOR", m, ("bool", False)), USD // 2000),
        # PRICE_FEED_MULTIPLIER = 10 ** (60 - feed decimals - token decimals)
        (data_key("PRICE_FEED_MULTIPLIER", ("address", a["GmxWNT"])), 10 ** (60 - 8 - 18)),
        (data_key("PRICE_FEED_MULTIPLIER", ("address", a["TestUSDC"])), 10 ** (60 - 8 - 6)),
    ]
    for key, value in settings:
        net.call(deployer, ds.setUint(key, value))
    net.call(deployer, ds.setAddress(name_key("WNT"), a["GmxWNT"]))
    for token, feed in ((a["GmxWNT"], a["PriceFeed"]), (a["TestUSDC"], a["UsdcFeed"])):
        net.call(deployer, ds.setAddress(data_key("PRICE_FEED", ("address", token)), feed))
    handler = net.contract("GmxOrderHandler").functions
    net.call(deployer, handler.addMarket(MARKET, a["GmxWNT"], a["GmxWNT"], a["TestUSDC"]))
    usdc = net.contract("TestUSDC").functions
    net.call(deployer, usdc.mint(trader.address, 100_000 * 10**6))
    net.call(deployer, usdc.mint(a["GmxOrderHandler"], 1_000_000 * 10**6))
    net.set_eth_price(2_000)
    usdc_feed = net.chain.contract("PriceFeed", a["UsdcFeed"])
    net.call(deployer, usdc_feed.functions.setAnswer(10**FEED_DECIMALS))
    return net
