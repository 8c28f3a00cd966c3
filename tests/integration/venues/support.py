"""Moves on the devnet for the venue tests: raw calls sent with a fixed, generous gas limit,
and a book of isolated and cross positions opened through the devnet's own helpers."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from keeper.testing.devnet import Devnet

GAS = 3_000_000


def send_raw(
    devnet: Devnet, account: LocalAccount, to: str, data: bytes, *, what: str = "tx"
) -> TxReceipt:
    """Sign `data` to `to` with `account` and send it; DevnetError if it reverts."""
    return devnet.chain.send(account, to=to, data=data, gas=GAS, what=what)


def send(devnet: Devnet, account: LocalAccount, call: ContractFunction) -> TxReceipt:
    data = bytes.fromhex(call._encode_transaction_data()[2:])
    return send_raw(devnet, account, call.address, data, what=call.fn_name)


def open_book(devnet: Devnet) -> dict[str, bytes]:
    """Isolated positions of the trader and a cross account of the cross trader."""
    trader, cross = devnet.account("trader"), devnet.account("cross_trader")
    keys = {
        "eth_long": devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10),
        "btc_short": devnet.open_isolated(trader, "BTC", long=False, collateral=3_000, size="0.5"),
        "eth_short": devnet.open_isolated(trader, "ETH", long=False, collateral=500, size=2),
    }
    devnet.deposit_cross(cross, 5_000)
    keys["x_eth_long"] = devnet.open_cross(cross, "ETH", long=True, size=8)
    keys["x_btc_short"] = devnet.open_cross(cross, "BTC", long=False, size="0.3")
    return keys
