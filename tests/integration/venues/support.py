"""Moves on the devnet for the venue tests, sent with a fixed, generous gas limit.

A fixed gas limit: a transaction mined a second after its estimate also accrues funding
(zero-to-nonzero stores on a market's first accrual), so estimates can fall short.
"""

from __future__ import annotations

from decimal import Decimal

from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from keeper.testing.devnet import SIZE_DECIMALS, USDC_DECIMALS, Devnet, scaled

GAS = 3_000_000


def send_raw(
    devnet: Devnet, account: LocalAccount, to: str, data: bytes, *, what: str = "tx"
) -> TxReceipt:
    """Sign `data` to `to` with `account` and send it; DevnetError if it reverts."""
    return devnet.chain.send(account, to=to, data=data, gas=GAS, what=what)


def send(devnet: Devnet, account: LocalAccount, call: ContractFunction) -> TxReceipt:
    data = bytes.fromhex(call._encode_transaction_data()[2:])
    return send_raw(devnet, account, call.address, data, what=call.fn_name)


def open_isolated(
    devnet: Devnet,
    account: LocalAccount,
    symbol: str,
    *,
    long: bool,
    collateral: Decimal | int | str,
    size: Decimal | int | str,
) -> bytes:
    market_id = devnet.market_id(symbol)
    send(
        devnet,
        account,
        devnet.exchange.functions.openPosition(
            market_id,
            long,
            scaled(collateral, USDC_DECIMALS, "collateral"),
            scaled(size, SIZE_DECIMALS, "size"),
        ),
    )
    key: bytes = devnet.exchange.functions.positionKey(account.address, market_id, long).call()
    return key


def deposit_cross(devnet: Devnet, account: LocalAccount, amount: Decimal | int | str) -> None:
    send(
        devnet,
        account,
        devnet.exchange.functions.depositCross(scaled(amount, USDC_DECIMALS, "amount")),
    )


def open_cross(
    devnet: Devnet, account: LocalAccount, symbol: str, *, long: bool, size: Decimal | int | str
) -> bytes:
    market_id = devnet.market_id(symbol)
    send(
        devnet,
        account,
        devnet.exchange.functions.openCross(market_id, long, scaled(size, SIZE_DECIMALS, "size")),
    )
    key: bytes = devnet.exchange.functions.crossPositionKey(account.address, market_id, long).call()
    return key


def open_book(devnet: Devnet) -> dict[str, bytes]:
    """Isolated positions of the trader and a cross account of the cross trader."""
    trader, cross = devnet.account("trader"), devnet.account("cross_trader")
    keys = {
        "eth_long": open_isolated(devnet, trader, "ETH", long=True, collateral=2_000, size=10),
        "btc_short": open_isolated(devnet, trader, "BTC", long=False, collateral=3_000, size="0.5"),
        "eth_short": open_isolated(devnet, trader, "ETH", long=False, collateral=500, size=2),
    }
    deposit_cross(devnet, cross, 5_000)
    keys["x_eth_long"] = open_cross(devnet, cross, "ETH", long=True, size=8)
    keys["x_btc_short"] = open_cross(devnet, cross, "BTC", long=False, size="0.3")
    return keys
