"""The reference exchange deployed on a chain, and the moves tests and demos make on it.

`deploy(url)` deploys from abis (no forge needed): TestUSDC, one PriceFeed per market,
PerpExchange with its markets, PerpLens and Multicall3; an LP seeds the pool and the traders
get USDC and an exchange allowance. Every transaction is signed locally with one of Anvil's
public dev keys and sent raw. `DevChain` then opens positions, moves prices, mines blocks and
moves time, so a test reads as what happens on the exchange.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.types import TxParams, TxReceipt

from keeper.abis import abi, bytecode
from keeper.testing.anvil import DEV_MNEMONIC, free_port
from keeper.testing.helpers import feed_round

USDC_DECIMALS = 6
SIZE_DECIMALS = 18
PRICE_DECIMALS = 18
FEED_DECIMALS = 8
WAD = 10**18

Account.enable_unaudited_hdwallet_features()


class DevnetError(RuntimeError):
    """A deployment or a devnet transaction failed; the message names the call."""


def dev_account(index: int) -> LocalAccount:
    """Account `index` of Anvil's default mnemonic (public test keys: devnets only)."""
    acct: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return acct


def scaled(value: Decimal | int | str, decimals: int, what: str) -> int:
    """`value` in units of 10**-decimals; raises when it is not a whole number of units."""
    amount = Decimal(value) * (Decimal(10) ** decimals)
    if amount != amount.to_integral_value():
        raise ValueError(f"{what}={value} has more than {decimals} decimals")
    return int(amount)


def wad(value: Decimal | str) -> int:
    return scaled(value, 18, "rate")


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market of the reference exchange, in human units (rates as fractions)."""

    symbol: str
    price: Decimal
    initial_margin_rate: Decimal = Decimal("0.05")
    maintenance_margin_rate: Decimal = Decimal("0.025")
    open_fee_rate: Decimal = Decimal("0.001")
    close_fee_rate: Decimal = Decimal("0.001")
    liquidation_fee_rate: Decimal = Decimal("0.005")
    funding_factor_per_second: Decimal = Decimal("0.0000001")
    max_funding_rate_per_second: Decimal = Decimal("0.0000002")
    reserve_factor: Decimal = Decimal("1")
    impact_factor: Decimal = Decimal("0")
    max_impact_rate: Decimal = Decimal("0.02")
    max_long_oi: Decimal = Decimal("1000000")
    max_short_oi: Decimal = Decimal("1000000")
    max_staleness: int = 86_400

    def params(self, feed: str) -> tuple[Any, ...]:
        """The MarketParams tuple for `addMarket`."""
        return (
            feed,
            self.max_staleness,
            wad(self.initial_margin_rate),
            wad(self.maintenance_margin_rate),
            wad(self.open_fee_rate),
            wad(self.close_fee_rate),
            wad(self.liquidation_fee_rate),
            wad(self.funding_factor_per_second),
            wad(self.max_funding_rate_per_second),
            wad(self.reserve_factor),
            wad(self.impact_factor),
            wad(self.max_impact_rate),
            scaled(self.max_long_oi, SIZE_DECIMALS, "max_long_oi"),
            scaled(self.max_short_oi, SIZE_DECIMALS, "max_short_oi"),
        )


DEFAULT_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec(symbol="ETH", price=Decimal("2000"), impact_factor=Decimal("0.00005")),
    MarketSpec(
        symbol="BTC",
        price=Decimal("60000"),
        initial_margin_rate=Decimal("0.04"),
        maintenance_margin_rate=Decimal("0.02"),
        impact_factor=Decimal("0.001"),
    ),
)

# The environment variable a devnet keeper config reads its (public, dev-only) key from.
KEY_ENV = "KEEPER_PRIVATE_KEY"

# Roles by index of Anvil's default mnemonic.
OWNER_INDEX = 0  # deploys, owns the exchange, is every feed's oracle
LP_INDEX = 1
TRADER_INDEX = 2
CROSS_TRADER_INDEX = 3
LIQUIDATOR_INDEX = 4
OPERATOR_INDEX = 5  # the keeper's key: an operator the traders approve, never a trader


@dataclass(frozen=True, slots=True)
class Deployment:
    """Addresses of one deployment of the reference exchange (JSON-friendly)."""

    chain_id: int
    usdc: str
    exchange: str
    lens: str
    multicall: str
    feeds: Mapping[str, str]
    market_ids: Mapping[str, int]
    owner: str
    lp: str
    trader: str
    cross_trader: str
    liquidator: str
    block_number: int = 0
    operator: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["feeds"] = dict(self.feeds)
        data["market_ids"] = dict(self.market_ids)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        data = json.loads(text)
        return cls(**data)


@dataclass
class DevChain:
    """A Web3 connection plus the helpers that act on a deployment of the reference exchange."""

    url: str
    w3: Web3 = field(init=False)

    def __post_init__(self) -> None:
        self.w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 30}))

    # -- transport ---------------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise DevnetError(f"{method} failed: {response['error']}")
        return response.get("result")

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=abi(name), decode_tuples=True
        )

    def send(
        self,
        account: LocalAccount,
        call: ContractFunction | None = None,
        *,
        to: str | None = None,
        data: bytes = b"",
        value: int = 0,
        gas: int | None = None,
        what: str = "",
    ) -> TxReceipt:
        """Simulates, signs and sends one transaction from `account`; returns its receipt.

        `gas` fixes the gas limit; by default it is the estimate with generous headroom.

        Raises DevnetError naming the call when the simulation or the mined transaction
        reverts.
        """
        label = what or (call.fn_name if call is not None else "transfer")
        tx: dict[str, Any] = {"from": account.address, "value": value}
        if call is not None:
            try:
                call.call(cast(TxParams, {"from": account.address, "value": value}))
            except (ContractCustomError, ContractLogicError) as exc:
                raise DevnetError(f"{label} would revert: {exc}") from None
            params = {"from": account.address, "value": value, "chainId": self.w3.eth.chain_id}
            tx = dict(call.build_transaction(cast(TxParams, params)))
        else:
            if to is None:
                raise DevnetError(f"{label}: neither a call nor a recipient given")
            tx.update({"to": Web3.to_checksum_address(to), "data": data})
            tx["chainId"] = self.w3.eth.chain_id
        if gas is not None:
            tx["gas"] = gas
        else:
            if "gas" not in tx:
                tx["gas"] = self.w3.eth.estimate_gas(cast(TxParams, tx))
            # headroom: a block later, accrued funding may turn zero slots non-zero (20k each)
            tx["gas"] = int(tx["gas"]) * 3 // 2 + 100_000
        base_fee = self.next_base_fee()
        tx.pop("gasPrice", None)
        tx["maxPriorityFeePerGas"] = 10**9
        tx["maxFeePerGas"] = 2 * base_fee + 10**9
        tx["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
        tx["type"] = 2
        signed = account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise DevnetError(f"{label} reverted in block {receipt['blockNumber']}")
        return receipt

    def next_base_fee(self) -> int:
        """The base fee the next block will charge (Anvil may have been told to raise it)."""
        pending = self.w3.eth.get_block("pending").get("baseFeePerGas")
        latest = self.w3.eth.get_block("latest").get("baseFeePerGas")
        return max(int(pending or 0), int(latest or 0))

    def deploy_contract(self, account: LocalAccount, name: str, *args: Any) -> str:
        factory = self.w3.eth.contract(abi=abi(name), bytecode=bytecode(name))
        tx = factory.constructor(*args).build_transaction(
            {"from": account.address, "chainId": self.w3.eth.chain_id}
        )
        tx["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
        tx["gas"] = int(self.w3.eth.estimate_gas(tx)) * 12 // 10
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30
        )
        address = receipt["contractAddress"]
        if receipt["status"] != 1 or address is None:
            raise DevnetError(f"deploying {name} failed")
        return str(address)

    # -- chain control (Anvil) -----------------------------------------------------------------

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def advance_time(self, seconds: int) -> None:
        """Moves time forward and mines one block at the new time."""
        self.rpc("evm_increaseTime", hex(seconds))
        self.mine()

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        if not self.rpc("evm_revert", snapshot_id):
            raise DevnetError(f"evm_revert({snapshot_id}) failed")


@dataclass
class Devnet:
    """A deployment plus a connection: what tests, the devnet command and the demo drive."""

    chain: DevChain
    deployment: Deployment
    markets: tuple[MarketSpec, ...]

    @property
    def w3(self) -> Web3:
        return self.chain.w3

    @property
    def url(self) -> str:
        """The node's JSON-RPC URL."""
        return self.chain.url

    def account(self, role: str) -> LocalAccount:
        index = {
            "owner": OWNER_INDEX,
            "lp": LP_INDEX,
            "trader": TRADER_INDEX,
            "cross_trader": CROSS_TRADER_INDEX,
            "liquidator": LIQUIDATOR_INDEX,
            "operator": OPERATOR_INDEX,
        }.get(role)
        if index is None:
            raise KeyError(f"no devnet role {role!r}")
        return dev_account(index)

    @property
    def exchange(self) -> Contract:
        return self.chain.contract("PerpExchange", self.deployment.exchange)

    @property
    def lens(self) -> Contract:
        return self.chain.contract("PerpLens", self.deployment.lens)

    @property
    def usdc(self) -> Contract:
        return self.chain.contract("TestUSDC", self.deployment.usdc)

    def feed(self, symbol: str) -> Contract:
        return self.chain.contract("PriceFeed", self.deployment.feeds[symbol])

    def market_id(self, symbol: str) -> int:
        try:
            return self.deployment.market_ids[symbol]
        except KeyError:
            raise KeyError(
                f"no market {symbol!r}; markets: {sorted(self.deployment.market_ids)}"
            ) from None

    # -- keeper config -------------------------------------------------------------------------

    def keeper_settings(self, **overrides: Any) -> dict[str, Any]:
        """The keeper's settings for this deployment, as the TOML tree `keeper_config` writes.

        Like examples/devnet.toml: this node's RPC URL and addresses, the trader and the cross
        trader watched, the key from $KEEPER_PRIVATE_KEY (see `keeper_env`), thresholds per
        market from its maintenance margin, a budget in USDC, metrics on a free port.
        `overrides` are merged per section: `keeper={"dry_run": True}` changes one key, a
        non-table value replaces the section, None removes a key or section.
        """
        d = self.deployment
        settings: dict[str, Any] = {
            "keeper": {
                "mode": "active",
                "dry_run": False,
                "journal": "keeper-journal.sqlite",
                "halt_file": "HALT",
            },
            "chain": {
                "chain_id": d.chain_id,
                "rpc": [self.url],
                "confirmations": 0,
                "max_fee_gwei": "50",
                "max_priority_fee_gwei": "1",
                "poll_interval_s": "0.1",
                "multicall": d.multicall,
            },
            "venue": {"kind": "reference", "exchange": d.exchange, "lens": d.lens},
            "accounts": {"watch": [d.trader, d.cross_trader]},
            "signer": {"source": "env", "key_env": KEY_ENV},
            "thresholds": {
                "metric": "ratio",
                "top_up_below": "0.05",
                "top_up_to": "0.08",
                "reduce_below": "0.04",
                "close_below": "0.03",
                "cooldown_blocks": 2,
                "hysteresis": "0.005",
                "markets": self._market_thresholds(),
            },
            "budget": {
                "token": "USDC",
                "token_decimals": USDC_DECIMALS,
                "max_top_up_per_position": "5000",
                "max_spend_per_day": "20000",
                "reserve": "1000",
            },
            "metrics": {"listen": f"127.0.0.1:{free_port()}", "max_block_age_s": 86_400},
        }
        return _merge(settings, overrides)

    def _market_thresholds(self) -> dict[str, dict[str, str]]:
        """Thresholds for markets whose maintenance margin is not the default 2.5%."""
        out: dict[str, dict[str, str]] = {}
        for spec in self.markets:
            m = spec.maintenance_margin_rate
            if m == Decimal("0.025"):
                continue
            out[f"reference:{self.market_id(spec.symbol)}"] = {
                "top_up_below": str(m + Decimal("0.02")),
                "top_up_to": str(m + Decimal("0.05")),
                "reduce_below": str(m + Decimal("0.01")),
                "close_below": str(m + Decimal("0.005")),
            }
        return out

    def keeper_config(self, path: str | Path, **overrides: Any) -> Path:
        """Writes a keeper config file (TOML) for this deployment; returns its path.

        The journal and halt file are next to it. See `keeper_settings` for the contents and
        `overrides`; `keeper_env` for the environment `keeper run` needs with it.
        """
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(to_toml(self.keeper_settings(**overrides)))
        return file

    def keeper_env(self, role: str = "trader") -> dict[str, str]:
        """The environment the config's signer reads: $KEEPER_PRIVATE_KEY, `role`'s dev key."""
        return {KEY_ENV: "0x" + bytes(self.account(role).key).hex()}

    # -- moves ---------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> TxReceipt:
        """Pushes a new answer to the market's feed (as the oracle)."""
        answer = scaled(price, FEED_DECIMALS, f"{symbol} price")
        return self.chain.send(
            self.account("owner"), self.feed(symbol).functions.setAnswer(answer), what="setAnswer"
        )

    def price(self, symbol: str) -> Decimal:
        """The market's feed answer in USD (latestRoundData)."""
        answer = feed_round(self.url, self.deployment.feeds[symbol]).answer
        return Decimal(answer) / Decimal(10**FEED_DECIMALS)

    def fund(self, address: str, usdc: Decimal | int | str) -> None:
        """Mints USDC to `address`."""
        amount = scaled(usdc, USDC_DECIMALS, "usdc")
        self.chain.send(
            self.account("owner"),
            self.usdc.functions.mint(Web3.to_checksum_address(address), amount),
        )

    def usdc_balance(self, address: str) -> int:
        return int(self.usdc.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def approve(self, account: LocalAccount, amount: int = 2**256 - 1) -> None:
        self.chain.send(
            account,
            self.usdc.functions.approve(Web3.to_checksum_address(self.deployment.exchange), amount),
        )

    def approve_operator(
        self,
        account: LocalAccount,
        operator: str | None = None,
        *,
        top_up_limit: Decimal | int | str | None = None,
        actions: int = 1000,
        seconds: int = 90 * 86_400,
    ) -> TxReceipt:
        """`account` approves `operator` (default: the devnet's operator, the keeper's key) to
        act on its positions: top-ups from its wallet up to `top_up_limit` USDC (default:
        unlimited), `actions` calls, for `seconds` from the latest block's time."""
        who = Web3.to_checksum_address(operator or self.account("operator").address)
        limit = (
            2**128 - 1
            if top_up_limit is None
            else scaled(top_up_limit, USDC_DECIMALS, "top_up_limit")
        )
        expires = int(self.w3.eth.get_block("latest")["timestamp"]) + seconds
        return self.chain.send(
            account,
            self.exchange.functions.approveOperator(who, limit, actions, expires),
            what="approveOperator",
        )

    def open_isolated(
        self,
        account: LocalAccount,
        symbol: str,
        *,
        long: bool,
        collateral: Decimal | int | str,
        size: Decimal | int | str,
    ) -> bytes:
        """Opens (or increases) an isolated position; returns its key."""
        market_id = self.market_id(symbol)
        self.chain.send(
            account,
            self.exchange.functions.openPosition(
                market_id,
                long,
                scaled(collateral, USDC_DECIMALS, "collateral"),
                scaled(size, SIZE_DECIMALS, "size"),
            ),
        )
        key: bytes = self.exchange.functions.positionKey(account.address, market_id, long).call()
        return key

    def deposit_cross(self, account: LocalAccount, amount: Decimal | int | str) -> None:
        self.chain.send(
            account,
            self.exchange.functions.depositCross(scaled(amount, USDC_DECIMALS, "amount")),
        )

    def open_cross(
        self, account: LocalAccount, symbol: str, *, long: bool, size: Decimal | int | str
    ) -> bytes:
        market_id = self.market_id(symbol)
        self.chain.send(
            account,
            self.exchange.functions.openCross(market_id, long, scaled(size, SIZE_DECIMALS, "size")),
        )
        key: bytes = self.exchange.functions.crossPositionKey(
            account.address, market_id, long
        ).call()
        return key

    def is_liquidatable(self, key: bytes) -> bool:
        return bool(self.exchange.functions.isLiquidatable(key).call())

    def liquidate(self, account: str, symbol: str, *, long: bool) -> TxReceipt:
        return self.chain.send(
            self.account("liquidator"),
            self.exchange.functions.liquidate(
                Web3.to_checksum_address(account), self.market_id(symbol), long
            ),
        )

    def liquidate_cross(self, account: str) -> TxReceipt:
        return self.chain.send(
            self.account("liquidator"),
            self.exchange.functions.liquidateCross(Web3.to_checksum_address(account)),
        )


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Decimal | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TypeError(f"{where}: cannot write {type(value).__name__} {value!r} to the config")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """`data` as TOML: strings, whole numbers, booleans, lists, tables (no floats: the keeper's
    config wants decimals as strings)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in data.items():
        name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
        if isinstance(value, Mapping):
            tables.append((name, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((name, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, name)}")
    text = "".join(f"{line}\n" for line in lines)
    for name, table in tables:
        only_tables = table and all(isinstance(v, Mapping) for v in table.values())
        header = "" if only_tables else f"\n[{name}]\n"
        text += header + to_toml(table, name).lstrip("\n") if header else to_toml(table, name)
    for name, items in arrays:
        for item in items:
            text += f"\n[[{name}]]\n" + to_toml(item, name).lstrip("\n")
    return text if prefix else text.lstrip("\n")


def deploy(
    url: str,
    *,
    markets: Sequence[MarketSpec] = DEFAULT_MARKETS,
    pool_liquidity: Decimal = Decimal("10000000"),
    trader_usdc: Decimal = Decimal("1000000"),
) -> Devnet:
    """Deploys the reference exchange at `url` and seeds it; returns the live Devnet."""
    if not markets:
        raise ValueError("markets: at least one market is needed")
    symbols = [m.symbol for m in markets]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"markets: duplicate symbols in {symbols}")
    chain = DevChain(url)
    if not chain.w3.is_connected():
        raise DevnetError(f"no chain answers at {url}")
    owner = dev_account(OWNER_INDEX)
    usdc = chain.deploy_contract(owner, "TestUSDC")
    exchange_address = chain.deploy_contract(owner, "PerpExchange", usdc)
    exchange = chain.contract("PerpExchange", exchange_address)
    feeds: dict[str, str] = {}
    market_ids: dict[str, int] = {}
    for spec in markets:
        feed = chain.deploy_contract(owner, "PriceFeed", f"{spec.symbol} / USD", owner.address)
        chain.send(
            owner,
            chain.contract("PriceFeed", feed).functions.setAnswer(
                scaled(spec.price, FEED_DECIMALS, f"{spec.symbol} price")
            ),
        )
        market_ids[spec.symbol] = int(exchange.functions.marketCount().call())
        chain.send(
            owner, exchange.functions.addMarket(spec.params(feed)), what=f"addMarket {spec.symbol}"
        )
        feeds[spec.symbol] = feed
    lens = chain.deploy_contract(owner, "PerpLens", exchange_address)
    multicall = chain.deploy_contract(owner, "Multicall3")
    deployment = Deployment(
        chain_id=int(chain.w3.eth.chain_id),
        usdc=usdc,
        exchange=exchange_address,
        lens=lens,
        multicall=multicall,
        feeds=feeds,
        market_ids=market_ids,
        owner=owner.address,
        lp=dev_account(LP_INDEX).address,
        trader=dev_account(TRADER_INDEX).address,
        cross_trader=dev_account(CROSS_TRADER_INDEX).address,
        liquidator=dev_account(LIQUIDATOR_INDEX).address,
        operator=dev_account(OPERATOR_INDEX).address,
    )
    devnet = Devnet(chain=chain, deployment=deployment, markets=tuple(markets))
    lp = devnet.account("lp")
    devnet.fund(lp.address, pool_liquidity)
    devnet.approve(lp)
    chain.send(
        lp, exchange.functions.deposit(scaled(pool_liquidity, USDC_DECIMALS, "pool_liquidity"))
    )
    for role in ("trader", "cross_trader"):
        acct = devnet.account(role)
        devnet.fund(acct.address, trader_usdc)
        devnet.approve(acct)
    devnet.deployment = Deployment(**{**asdict(deployment), "block_number": chain.block_number()})
    return devnet
