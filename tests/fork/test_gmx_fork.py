"""GMX v2 on a fork of Arbitrum: the adapter against the real contracts.

Needs ARBITRUM_RPC_URL (an archive-capable Arbitrum One endpoint); ARBITRUM_FORK_BLOCK pins
another block than the default. The test reads a real account's positions (the first WETH-
collateral position in the DataStore's POSITION_LIST), cross-checks the model against
Reader.isPositionLiquidatable, then, as that account (impersonated), creates a top-up order
through the adapter, executes it as a real ORDER_KEEPER with the token's oracle provider
replaced by GmxMockOracleProvider (anvil_setCode) at the Chainlink prices, and closes.
GMX_EXCHANGE_ROUTER / GMX_READER override the preset addresses if GMX redeployed them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper import margin
from keeper.abis import abi, bytecode
from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.model import Close, Reason, Scope, TopUp
from keeper.testing.anvil import Anvil
from keeper.venues.base import ActionState, LogEntry, MinedTx, Watch
from keeper.venues.gmx import ARBITRUM, GmxFn, GmxVenue, RawPosition
from keeper.venues.gmx_math import data_key, name_key

pytestmark = pytest.mark.fork

URL = os.environ.get("ARBITRUM_RPC_URL")
BLOCK = int(os.environ.get("ARBITRUM_FORK_BLOCK", "400000000"))
WHY = Reason("fork", "fork test")
_GET_VALUES = GmxFn.of("DataStore", "getBytes32ValuesAt")
_GET_ADDRESS = GmxFn.of("DataStore", "getAddress")
_GET_POSITION = GmxFn.of("Reader", "getPosition")
_GET_MARKET = GmxFn.of("Reader", "getMarket")
_LIQUIDATABLE = GmxFn.of("Reader", "isPositionLiquidatable")
_EXECUTE = "executeOrder(bytes32,(address[],address[],bytes[]))"

if not URL:
    pytest.skip(
        "ARBITRUM_RPC_URL is not set: the GMX fork tests need an Arbitrum One RPC endpoint",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def fork() -> Iterator[Anvil]:
    node = Anvil(chain_id=42161, fork_url=URL, fork_block=BLOCK)
    node.start()
    try:
        node.stand_in_arbsys()  # GMX reads the L2 block from ArbSys, absent on Anvil 1.7.1 forks
        yield node
    finally:
        node.stop()


@pytest.fixture
async def venue(fork: Anvil) -> AsyncIterator[GmxVenue]:
    rpc = HttpJsonRpc(fork.url, timeout=60)
    overrides = {
        k: v
        for k, v in (
            ("exchange_router", os.environ.get("GMX_EXCHANGE_ROUTER")),
            ("reader", os.environ.get("GMX_READER")),
        )
        if v
    }
    try:
        yield await GmxVenue.connect(rpc, ARBITRUM, overrides=overrides)
    finally:
        await rpc.close()


def call(fork: Anvil, to: str, data: bytes) -> bytes:
    answer = fork.rpc("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")
    return bytes.fromhex(str(answer)[2:])


def send_as(fork: Anvil, sender: str, to: str, data: bytes, value: int = 0) -> MinedTx:
    """A transaction from an impersonated account, mined; as a MinedTx with its logs."""
    fork.rpc("anvil_impersonateAccount", sender)
    fork.rpc("anvil_setBalance", sender, hex(10**20))
    tx_hash = fork.rpc(
        "eth_sendTransaction",
        {
            "from": sender,
            "to": to,
            "data": "0x" + data.hex(),
            "value": hex(value),
            "gas": hex(8_000_000),
        },
    )
    fork.rpc("anvil_mine", "0x1")
    receipt: dict[str, Any] = fork.rpc("eth_getTransactionReceipt", tx_hash)
    logs = tuple(
        LogEntry(
            entry["address"],
            tuple(bytes.fromhex(t[2:]) for t in entry["topics"]),
            bytes.fromhex(entry["data"][2:]),
        )
        for entry in receipt["logs"]
    )
    return MinedTx(str(tx_hash), int(receipt["blockNumber"], 16), receipt["status"] == "0x1", logs)


def weth_position(fork: Anvil, venue: GmxVenue) -> RawPosition:
    d = venue.deployment
    (keys,) = _GET_VALUES.decode(
        call(fork, d.data_store, _GET_VALUES.encode(name_key("POSITION_LIST"), 0, 300))
    )
    for key in keys:
        (props,) = _GET_POSITION.decode(
            call(fork, d.reader, _GET_POSITION.encode(d.data_store, bytes(key)))
        )
        raw = RawPosition.decode(props)
        if raw.collateral_token == venue.wnt and raw.size_in_usd > 0:
            return raw
    pytest.skip(f"no WETH-collateral position among the first {len(keys)} at block {BLOCK}")


def order_handler_and_keeper(fork: Anvil, venue: GmxVenue) -> tuple[str, str]:
    """A CONTROLLER whose code has executeOrder (the OrderHandler) and an ORDER_KEEPER."""
    role_store = venue.deployment.role_store
    selector = keccak(_EXECUTE.encode())[:4]

    def members(role: str) -> list[str]:
        data = keccak(b"getRoleMembers(bytes32,uint256,uint256)")[:4] + abi_encode(
            ["bytes32", "uint256", "uint256"], [name_key(role), 0, 100]
        )
        (found,) = abi_decode(["address[]"], call(fork, role_store, data))
        return [to_checksum_address(a) for a in found]

    handler = next(
        (
            c
            for c in members("CONTROLLER")
            if selector in bytes.fromhex(str(fork.rpc("eth_getCode", c, "latest"))[2:])
        ),
        None,
    )
    keepers = members("ORDER_KEEPER")
    if handler is None or not keepers:
        pytest.fail("no OrderHandler among the RoleStore's controllers, or no ORDER_KEEPER")
    return handler, keepers[0]


def mock_providers(fork: Anvil, venue: GmxVenue, tokens: Sequence[str]) -> list[str]:
    """The oracle provider GMX uses for each token, its code replaced by our mock."""
    mock_code = fork.rpc("eth_getCode", deploy_mock(fork), "latest")
    d = venue.deployment
    providers = []
    for token in tokens:
        found = "0x" + "00" * 20
        for key in (
            data_key("ORACLE_PROVIDER_FOR_TOKEN", ("address", token)),
            keccak(
                abi_encode(
                    ["bytes32", "address", "address"],
                    [name_key("ORACLE_PROVIDER_FOR_TOKEN"), oracle_address(fork, venue), token],
                )
            ),
        ):
            (address,) = _GET_ADDRESS.decode(call(fork, d.data_store, _GET_ADDRESS.encode(key)))
            if int(address, 16):
                found = to_checksum_address(address)
                break
        if not int(found, 16):
            pytest.fail(f"no oracle provider configured for {token}")
        fork.rpc("anvil_setCode", found, mock_code)
        providers.append(found)
    return providers


def oracle_address(fork: Anvil, venue: GmxVenue) -> str:
    handler, _ = order_handler_and_keeper(fork, venue)
    (address,) = abi_decode(["address"], call(fork, handler, keccak(b"oracle()")[:4]))
    return to_checksum_address(address)


def deploy_mock(fork: Anvil) -> str:
    deployer = "0x00000000000000000000000000000000000D3b10"
    fork.rpc("anvil_impersonateAccount", deployer)
    fork.rpc("anvil_setBalance", deployer, hex(10**20))
    tx_hash = fork.rpc(
        "eth_sendTransaction",
        {"from": deployer, "data": bytecode("GmxMockOracleProvider"), "gas": hex(2_000_000)},
    )
    fork.rpc("anvil_mine", "0x1")
    receipt: dict[str, Any] = fork.rpc("eth_getTransactionReceipt", tx_hash)
    assert abi("GmxMockOracleProvider")
    return str(receipt["contractAddress"])


async def execute(fork: Anvil, venue: GmxVenue, key: bytes, market: str, block: int) -> None:
    handler, keeper = order_handler_and_keeper(fork, venue)
    props = _GET_MARKET.decode(
        call(fork, venue.deployment.reader, _GET_MARKET.encode(venue.deployment.data_store, market))
    )[0]
    tokens = list(dict.fromkeys(to_checksum_address(t) for t in props[1:4]))
    prices = await venue.prices.prices(tokens, block=block)
    providers = mock_providers(fork, venue, tokens)
    data = [abi_encode(["uint256", "uint256"], [prices[t].min, prices[t].max]) for t in tokens]
    params = abi_encode(
        ["bytes32", "(address[],address[],bytes[])"], [key, (tokens, providers, data)]
    )
    send_as(fork, keeper, handler, keccak(_EXECUTE.encode())[:4] + params)


async def test_read_top_up_execute_and_close_on_an_arbitrum_fork(
    fork: Anvil, venue: GmxVenue
) -> None:
    assert venue.send_blocked is None, venue.send_blocked
    raw = weth_position(fork, venue)
    read = await venue.read(Watch((raw.account,)))
    position = read.snapshot.position("gmx", raw.key)
    market = read.snapshot.market_of(position)
    assert position.size.raw == raw.size_in_tokens

    d = venue.deployment
    (props,) = _GET_MARKET.decode(
        call(fork, d.reader, _GET_MARKET.encode(d.data_store, raw.market))
    )
    tokens = [to_checksum_address(t) for t in props[1:4]]
    prices = await venue.prices.prices(tokens, block=read.snapshot.block_number)
    market_prices = tuple((prices[t].min, prices[t].max) for t in tokens)
    flag, _reason, info = _LIQUIDATABLE.decode(
        call(
            fork,
            d.reader,
            _LIQUIDATABLE.encode(
                d.data_store,
                d.referral_storage,
                bytes.fromhex(raw.key[2:]),
                tuple(props),
                market_prices,
                True,
                True,
            ),
        )
    )
    equity = margin.equity(position, market)
    # GMX's own figure, up to the funding and impact details the model folds into fees
    assert abs(equity.raw - int(info[0])) <= abs(int(info[0])) // 100 + 10**30
    assert margin.is_liquidatable(position, market) == bool(flag) or abs(int(info[0])) < 10**31

    token = position.collateral_token
    top_up = TopUp("gmx", Scope.POSITION, raw.key, raw.account, token, token.amount(10**16), WHY)
    plan = await venue.build(top_up, read.snapshot, sender=raw.account)
    assert plan.approvals == 0  # WETH collateral goes as native value
    (step,) = plan.steps
    done = [send_as(fork, raw.account, step.to, step.data, step.value)]
    assert done[0].success
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    key = venue.order_key(done)
    assert key is not None
    await execute(fork, venue, key, raw.market, done[0].block_number)
    assert await venue.action_state(plan, done) is ActionState.DONE

    after = await venue.read(Watch((raw.account,)))
    grown = after.snapshot.position("gmx", raw.key)
    assert grown.collateral.raw >= position.collateral.raw + 10**16 * 9 // 10

    plan = await venue.build(
        Close("gmx", raw.key, raw.account, raw.market, WHY), after.snapshot, sender=raw.account
    )
    (step,) = plan.steps
    done = [send_as(fork, raw.account, step.to, step.data, step.value)]
    key = venue.order_key(done)
    assert key is not None
    await execute(fork, venue, key, raw.market, done[0].block_number)
    assert await venue.action_state(plan, done) is ActionState.DONE
    final = await venue.read(Watch((raw.account,)))
    assert all(p.key != raw.key for p in final.snapshot.positions)
