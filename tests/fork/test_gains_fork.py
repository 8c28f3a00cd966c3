"""Gains Network gTrade on forks of Arbitrum One and Base: the adapter against the real diamond.

Each chain is opt-in and skipped on its own, saying why: ARBITRUM_RPC_URL (an archive-capable
Arbitrum One endpoint) and BASE_RPC_URL (Base). GAINS_ARBITRUM_FORK_BLOCK / GAINS_BASE_FORK_BLOCK
pin the fork (default: the endpoint's head; the diamond must run contracts v10 there, the
version of abis/gains/), GAINS_ARBITRUM_DIAMOND / GAINS_BASE_DIAMOND replace the preset's
diamond if Gains moved it. On each fork:

- the endpoint's chain id is the preset's; GainsVenue connects with the preset and reads every
  pair with a price (`markets`), the diamond's collaterals and their USD prices;
- real traders are taken from the diamond's latest MarketExecuted logs (the way the GMX fork
  test takes a real account from the DataStore); the adapter's positions of the first of them
  with open trades are the diamond's getTrades, and the adapter's liquidation price of each is
  the diamond's own getTradeLiquidationPrice at the same block and pair price;
- delegated top-up: a trader with a suitable trade (impersonated) names an Anvil dev key its
  trading delegate (setTradingDelegate) and approves the diamond, as `keeper delegate` would
  have it do; the adapter builds the top-up as that delegate (delegatedTradingAction wrapping
  updateLeverage) and the delegate sends it; the diamond then holds the trader's pending
  UPDATE_LEVERAGE order with the collateral taken from the trader's wallet. Nobody answers it
  on a fork (Gains' oracles do not see the fork), so after getMarketOrdersTimeoutBlocks the
  adapter's cancelOrderAfterTimeout, sent by the delegate, gives the collateral back: EXPIRED.

Arbitrum: Gains reads the L2 block number from the ArbSys precompile (0x64), which Anvil 1.7.1
does not provide on forks: the fixture puts a stand-in there (`Anvil.stand_in_arbsys`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from keeper.chain.jsonrpc import HttpJsonRpc, RpcResponseError, endpoint_label
from keeper.chain.rpc import Reads
from keeper.margin import liquidation_price
from keeper.model import Basis, Reason, Scope, Side, Strictness, TopUp
from keeper.testing import helpers
from keeper.testing.anvil import Anvil, AnvilError, check_fork, rpc_request
from keeper.testing.devnet import dev_account
from keeper.units import TokenAmount
from keeper.venues.base import ActionState, LogEntry, MinedTx, TxRequest, Watch
from keeper.venues.gains import (
    ARBITRUM,
    BASE,
    EVENT_MARKET_EXECUTED,
    GainsDeployment,
    GainsFn,
    GainsVenue,
    trade_key,
)
from keeper.venues.gains_math import LEVERAGE_PRECISION, PRICE_PRECISION, PendingOrderType

pytestmark = pytest.mark.fork

WHY = Reason("fork", "fork test")
LOG_WINDOW = 1_000  # blocks per eth_getLogs: many providers refuse much wider ranges
LOG_WINDOWS = 100
TRADERS = 20
RPC_TIMEOUT = 300.0  # a fork fetches every slot it touches from the endpoint
GAS = 8_000_000
LIQ_TOLERANCE_BP = 1
"""How far (basis points of the open price) the adapter's liquidation price may be from the
diamond's: the test deployment and tests/conformance hold it to the exact integer; on the real
diamond, per-part rounding of fees Gains splits (referral, gov, trigger, ...) may move it a
unit or so, while a fee or spread term left out moves it by several basis points."""

_GET_TRADES = GainsFn.of("GNSMultiCollatDiamond", "getTrades")
_GET_TRADE = GainsFn.of("GNSMultiCollatDiamond", "getTrade")
_LIQ_PRICE = GainsFn.of("GNSMultiCollatDiamond", "getTradeLiquidationPrice")
_GET_COLLATERALS = GainsFn.of("GNSMultiCollatDiamond", "getCollaterals")
_COLLATERAL_PRICE = GainsFn.of("GNSMultiCollatDiamond", "getCollateralPriceUsd")
_PAIRS_COUNT = GainsFn.of("GNSMultiCollatDiamond", "pairsCount")
_MIN_LEVERAGE = GainsFn.of("GNSMultiCollatDiamond", "pairMinLeverage")
_PENDING = GainsFn.of("GNSMultiCollatDiamond", "getPendingOrder")
_PENDING_ORDERS = GainsFn.of("GNSMultiCollatDiamond", "getPendingOrders")
_DELEGATE = GainsFn.of("GNSMultiCollatDiamond", "getTradingDelegate")
_DELEGATED = GainsFn.of("GNSMultiCollatDiamond", "delegatedTradingAction")
_UPDATE_LEVERAGE = GainsFn.of("GNSMultiCollatDiamond", "updateLeverage")
_TIMEOUT = GainsFn.of("GNSMultiCollatDiamond", "getMarketOrdersTimeoutBlocks")


@dataclass(frozen=True, slots=True)
class ForkChain:
    """A chain the Gains fork tests run on: its preset and the variables that configure it."""

    preset: str
    label: str
    deployment: GainsDeployment
    url_env: str
    block_env: str
    diamond_env: str
    arbitrum: bool

    def __str__(self) -> str:
        return self.preset


CHAINS = (
    ForkChain(
        "arbitrum",
        "Arbitrum One",
        ARBITRUM,
        "ARBITRUM_RPC_URL",
        "GAINS_ARBITRUM_FORK_BLOCK",
        "GAINS_ARBITRUM_DIAMOND",
        arbitrum=True,
    ),
    ForkChain(
        "base",
        "Base",
        BASE,
        "BASE_RPC_URL",
        "GAINS_BASE_FORK_BLOCK",
        "GAINS_BASE_DIAMOND",
        arbitrum=False,
    ),
)


@dataclass
class GainsFork:
    """An Anvil fork of one chain, the chain it forks, and the diamond on it."""

    chain: ForkChain
    node: Anvil
    diamond: str

    @property
    def url(self) -> str:
        return self.node.url

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_request(self.node.url, method, params, timeout=RPC_TIMEOUT)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=CHAINS, ids=str)
def fork(request: pytest.FixtureRequest) -> Iterator[GainsFork]:
    chain: ForkChain = request.param
    url = os.environ.get(chain.url_env)
    if not url:
        pytest.skip(
            f"{chain.url_env} is not set: the Gains fork tests on {chain.label} need an RPC "
            f"endpoint of {chain.label} (archive-capable)"
        )
    block = os.environ.get(chain.block_env)
    check_fork(url, int(block) if block else None, timeout=30)  # errors name no API key
    try:
        remote = int(rpc_request(url, "eth_chainId", timeout=30), 16)
    except AnvilError:  # its message holds the URL: failed outside the handler, without it
        remote = -1
    if remote < 0:
        pytest.fail(
            f"{chain.url_env} ({endpoint_label(url)}) does not answer eth_chainId", pytrace=False
        )
    if remote != chain.deployment.chain_id:
        pytest.fail(
            f"{chain.url_env} serves chain {remote}, not {chain.label} "
            f"({chain.deployment.chain_id}): the Gains preset {chain.preset!r} is for that chain",
            pytrace=False,
        )
    node = Anvil(
        chain_id=remote,
        fork_url=url,
        fork_block=int(block) if block else None,
        startup_timeout=120.0,
    )
    node.start()
    try:
        forked = GainsFork(
            chain, node, os.environ.get(chain.diamond_env) or chain.deployment.diamond
        )
        if chain.arbitrum:
            node.stand_in_arbsys()
        yield forked
    finally:
        node.stop()


@pytest.fixture
async def venue(fork: GainsFork) -> AsyncIterator[GainsVenue]:
    rpc = HttpJsonRpc(fork.url, timeout=RPC_TIMEOUT)
    try:
        yield await GainsVenue.connect(rpc, fork.chain.preset, overrides={"diamond": fork.diamond})
    finally:
        await rpc.close()


@pytest.fixture(scope="module")
def traders(fork: GainsFork) -> list[str]:
    """Up to TRADERS traders of the diamond's latest MarketExecuted logs, latest first."""
    head = int(fork.rpc("eth_blockNumber"), 16)
    found: list[str] = []
    topic = "0x" + EVENT_MARKET_EXECUTED.hex()
    to_block = head
    for _ in range(LOG_WINDOWS):
        if to_block < 0 or len(found) >= TRADERS:
            break
        from_block = max(0, to_block - LOG_WINDOW + 1)
        logs = fork.rpc(
            "eth_getLogs",
            {
                "address": fork.diamond,
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "topics": [topic],
            },
        )
        for entry in reversed(logs):
            trader = to_checksum_address("0x" + str(entry["topics"][1])[-40:])
            if trader not in found:
                found.append(trader)
        to_block = from_block - 1
    if not found:
        pytest.skip(
            f"no MarketExecuted log of the Gains diamond {fork.diamond} in the "
            f"{LOG_WINDOW * LOG_WINDOWS} blocks up to {head} on {fork.chain.label}"
        )
    return found[:TRADERS]


# -- helpers --------------------------------------------------------------------------------------


async def call(venue: GainsVenue, fn: GainsFn, *args: Any, block: int | str = "latest") -> Any:
    """One view of the diamond, decoded; its single return value."""
    d = venue.deployment.diamond
    (value,) = fn.decode(await Reads(venue.rpc).eth_call(d, fn.encode(*args), block))
    return value


async def send(fork: GainsFork, venue: GainsVenue, sender: str, tx: TxRequest) -> MinedTx:
    """`tx` from `sender` (impersonated, given ETH for gas), simulated first at the pending
    block as the keeper's transaction manager does: a revert fails the test with the diamond's
    error decoded; mined, as a MinedTx with its logs."""
    try:
        await Reads(venue.rpc).eth_call(tx.to, tx.data, "pending", sender=sender, value=tx.value)
    except RpcResponseError as exc:
        reason = venue.decode_rpc_error(exc)
        pytest.fail(f"{tx.description} from {sender} reverts: {reason.message if reason else exc}")
    helpers.set_balance(fork.node, sender, 10**20)
    with helpers.impersonating(fork.node, sender):
        tx_hash = str(
            fork.rpc(
                "eth_sendTransaction",
                {
                    "from": sender,
                    "to": tx.to,
                    "data": "0x" + tx.data.hex(),
                    "value": hex(tx.value),
                    "gas": hex(GAS),
                },
            )
        )
    receipt = helpers.wait_for_receipt(fork.node, tx_hash, timeout=RPC_TIMEOUT)
    logs = tuple(
        LogEntry(
            entry["address"],
            tuple(bytes.fromhex(t[2:]) for t in entry["topics"]),
            bytes.fromhex(entry["data"][2:]),
        )
        for entry in receipt["logs"]
    )
    return MinedTx(tx_hash, int(receipt["blockNumber"], 16), receipt["status"] == "0x1", logs)


def liq_input(trade: Sequence[Any], params: Sequence[Any], price: int) -> tuple[Any, ...]:
    """IBorrowingFees.LiqPriceInput for a trade as getTrade gives it, at pair price `price`:
    no additional fee, the whole position (partialCloseMultiplier 1e18), already opened."""
    return (
        int(trade[6]),  # collateralIndex
        trade[0],  # trader
        int(trade[2]),  # pairIndex
        int(trade[1]),  # index
        int(trade[9]),  # openPrice
        bool(trade[4]),  # long
        int(trade[8]),  # collateral
        int(trade[3]),  # leverage
        0,  # additionalFeeCollateral
        tuple(int(x) for x in params),
        price,  # currentPairPrice
        bool(trade[12]),  # isCounterTrade
        10**18,  # partialCloseMultiplier
        False,  # beforeOpened
    )


# -- tests ----------------------------------------------------------------------------------------


async def test_the_preset_connects_and_reads_pairs_prices_and_collaterals(
    fork: GainsFork, venue: GainsVenue
) -> None:
    assert int(fork.rpc("eth_chainId"), 16) == fork.chain.deployment.chain_id
    assert venue.deployment.chain_id == fork.chain.deployment.chain_id
    assert venue.deployment.diamond == to_checksum_address(fork.diamond)
    head = await Reads(venue.rpc).block_number()

    count = int(await call(venue, _PAIRS_COUNT, block=head))
    markets = await venue.markets(block=head)
    assert 0 < len(markets) <= count
    by_id = {m.market_id: m for m in markets}
    assert len(by_id) == len(markets)
    for m in markets:
        assert m.venue == "gains"
        assert 0 <= int(m.market_id) < count
        assert m.mark_price.raw > 0, m
        assert m.mark_price.decimals == 10
        assert (m.maintenance_rate, m.basis, m.strictness) == (
            Decimal(0),
            Basis.ENTRY,
            Strictness.LE,
        )
        assert m.close_quote is not None
        assert 0 <= m.close_quote.fee_rate < 1, m
        assert 0 <= m.close_quote.impact_rate < 1, m
    # pair 0 is BTC/USD and pair 1 ETH/USD on every Gains chain, priced by their Chainlink feeds
    btc, eth = by_id.get("0"), by_id.get("1")
    assert btc is not None, "pair 0 (BTC/USD) has no price"
    assert eth is not None, "pair 1 (ETH/USD) has no price"
    assert btc.index_token.symbol == "BTC/USD"
    assert eth.index_token.symbol == "ETH/USD"
    assert 1_000 < btc.mark_price.value < 10_000_000
    assert 100 < eth.mark_price.value < 1_000_000

    raw = await call(venue, _GET_COLLATERALS, block=head)
    assert len(raw) > 0
    active = await venue.collateral_tokens()
    assert [t.address for t in active] == [
        venue.collateral(i + 1).token.address for i, c in enumerate(raw) if c[1]
    ]
    usdc = [t for t in active if t.symbol.upper().startswith("USDC")]
    assert usdc, f"no USDC among the diamond's active collaterals {[t.symbol for t in active]}"
    assert usdc[0].decimals == 6
    assert venue.wallet_token == usdc[0].address  # the default wallet token
    for i, c in enumerate(raw, start=1):
        info = venue.collateral(i)
        assert info.token.address == to_checksum_address(c[0])
        assert info.precision == 10**info.token.decimals
        price = int(await call(venue, _COLLATERAL_PRICE, i, block=head))
        assert price > 0, info
        if info.token.symbol.upper().startswith(("USDC", "DAI")):
            assert 97 * 10**6 < price < 103 * 10**6, (info, price)  # 1e8: about one dollar


async def test_a_real_traders_trades_and_the_diamonds_liquidation_price(
    venue: GainsVenue, traders: list[str]
) -> None:
    read = None
    trader = ""
    for trader in traders:
        read = await venue.read(Watch((trader,)))
        if read.snapshot.positions:
            break
    else:
        pytest.skip(f"none of the {len(traders)} latest traders has an open trade with a price")
    assert read is not None
    snap = read.snapshot
    block = snap.block_number
    raw = await call(venue, _GET_TRADES, trader, block=block)
    open_market = {
        trade_key(trader, int(t[1])): t
        for t in raw
        if t[5] and int(t[7]) == 0 and int(t[8]) > 0  # open market trades with collateral
    }
    unpriced = {i.key for i in read.issues if i.kind == "price_invalid"}
    assert {p.key for p in snap.positions} <= set(open_market)
    for key, t in open_market.items():
        if all(p.key != key for p in snap.positions):
            assert str(int(t[2])) in unpriced, f"trade {key} was left out of the read"

    for p in snap.positions[:5]:
        t = open_market[p.key]
        gt = venue.trades[p.key]
        assert p.account == trader
        assert p.market_id == str(int(t[2]))
        assert p.side is (Side.LONG if t[4] else Side.SHORT)
        assert p.collateral.raw == int(t[8])
        assert p.entry_price.raw == int(t[9])
        assert p.collateral_token == venue.collateral(int(t[6])).token
        params = (
            gt.params.max_liq_spread_p,
            gt.params.start_liq_threshold_p,
            gt.params.end_liq_threshold_p,
            gt.params.start_leverage,
            gt.params.end_leverage,
        )
        diamond = int(await call(venue, _LIQ_PRICE, liq_input(t, params, gt.mark), block=block))
        tolerance = int(t[9]) * LIQ_TOLERANCE_BP // 10_000 + 1
        assert abs(gt.liquidation_price - diamond) <= tolerance, (
            f"trade {p.key} (pair {p.market_id}, {int(t[3]) / LEVERAGE_PRECISION}x, contracts "
            f"{gt.version.name}): the adapter's liquidation price {gt.liquidation_price} is not "
            f"the diamond's getTradeLiquidationPrice {diamond} at price {gt.mark} (1e10)"
        )
        model = liquidation_price(p, snap.market_of(p))
        if gt.liquidation_price > 0:
            assert model is not None
            assert abs(model.value * PRICE_PRECISION - gt.liquidation_price) <= 1, p.key


async def test_a_delegate_tops_up_and_the_unanswered_order_is_cancelled_after_the_timeout(
    fork: GainsFork, venue: GainsVenue, traders: list[str]
) -> None:
    snap_id = fork.rpc("evm_snapshot")
    try:
        await delegated_top_up(fork, venue, traders)
    finally:
        fork.rpc("evm_revert", snap_id)


async def delegated_top_up(fork: GainsFork, venue: GainsVenue, traders: list[str]) -> None:
    delegate = dev_account(7).address
    chosen = None
    for trader in traders:
        read = await venue.read(Watch((trader,)))
        if await call(venue, _PENDING_ORDERS, trader):
            continue  # a pending order of its own would conflict
        for p in sorted(read.snapshot.positions, key=lambda p: int(p.market_id)):
            t = venue.trades[p.key].trade
            lowest = int(await call(venue, _MIN_LEVERAGE, t.pair_index))
            if not t.is_counter_trade and t.leverage >= 2 * lowest:
                chosen = p
                break
        if chosen is not None:
            break
    if chosen is None:
        pytest.skip(
            f"none of the {len(traders)} latest traders has an open trade (not a counter "
            "trade, not pending) at twice its pair's minimum leverage or more"
        )
    trader = chosen.account
    token = chosen.collateral_token
    key = chosen.key
    amount = chosen.collateral.raw // 4
    held = helpers.token_balance(fork.node, token.address, trader)
    helpers.set_token_balance(fork.node, token.address, trader, held + 2 * amount)
    wallet = held + 2 * amount

    # the trader's setup, as `keeper delegate` prints it (sent here by impersonation)
    setup = await venue.delegation_setup(
        trader, delegate, max_actions=1, expires_at=2**40, token=token.address
    )
    for step in setup:
        assert (await send(fork, venue, trader, step)).success
    assert to_checksum_address(await call(venue, _DELEGATE, trader)) == delegate
    grant = await venue.delegation(trader, delegate, token=token.address)
    assert grant.active, grant.problems
    assert grant.actions_left is None
    assert grant.expires_at is None  # Gains sets no action count or expiry on a delegate
    assert grant.top_up_left == TokenAmount(wallet, token.decimals)

    read = await venue.read(Watch((trader,), delegate, token.address, delegated=True))
    snap = read.snapshot
    assert snap.funds is not None
    assert snap.funds[trader] == TokenAmount(wallet, token.decimals)
    position = snap.position(venue.name, key)
    before = venue.trades[key].trade
    action = TopUp(
        venue.name, Scope.POSITION, key, trader, token, TokenAmount(amount, token.decimals), WHY
    )
    plan = await venue.build(action, snap, sender=delegate)
    assert plan.approvals == 0  # the trader approved the diamond in the setup
    (step,) = plan.steps
    assert step.to == venue.deployment.diamond
    on_behalf, inner = _DELEGATED.decode_input(step.data)
    assert to_checksum_address(on_behalf) == trader
    index, new_leverage = _UPDATE_LEVERAGE.decode_input(bytes(inner))
    assert index == before.index
    assert new_leverage < before.leverage

    mined = [await send(fork, venue, delegate, step)]
    assert mined[0].success
    assert await venue.action_state(plan, mined) is ActionState.AWAITING_EXECUTION
    ref = venue.order_ref(mined)
    assert ref is not None
    assert ref.user == trader  # the order is the trader's, not the delegate's
    assert ref.pair_index == before.pair_index
    order = await call(venue, _PENDING, (trader, ref.index))
    assert order[3]  # isOpen
    assert to_checksum_address(order[1]) == trader
    assert int(order[4]) == PendingOrderType.UPDATE_LEVERAGE
    assert int(order[0][1]) == before.index
    assert int(order[0][3]) == new_leverage
    taken = wallet - helpers.token_balance(fork.node, token.address, trader)
    assert amount * 99 // 100 <= taken <= amount  # taken when the order is stored
    assert helpers.token_balance(fork.node, token.address, delegate) == 0
    current = await call(venue, _GET_TRADE, trader, before.index)
    assert int(current[3]) == before.leverage  # nothing changes until the oracle answers
    assert position.collateral.raw == before.collateral_amount

    timeout = int(await call(venue, _TIMEOUT))
    assert await venue.cancel_if_expired(plan, mined) is None
    cancel = None
    for _ in range(timeout + 5):
        helpers.mine(fork.node)
        cancel = await venue.cancel_if_expired(plan, mined)
        if cancel is not None:
            break
    assert cancel is not None, f"no cancel {timeout + 5} blocks after the order"
    assert "cancelOrderAfterTimeout" in cancel.description
    assert (await send(fork, venue, delegate, cancel)).success
    assert await venue.action_state(plan, mined) is ActionState.EXPIRED
    assert helpers.token_balance(fork.node, token.address, trader) == wallet
    assert not (await call(venue, _PENDING, (trader, ref.index)))[3]
    current = await call(venue, _GET_TRADE, trader, before.index)
    assert int(current[3]) == before.leverage
    assert int(current[8]) == before.collateral_amount
