"""A read of the reference exchange equals the chain's state field by field, at one block,
in at most ceil(N / chunk) + 2 round trips; bad answers raise clear errors and the next read
recovers."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from eth_abi.abi import encode

from keeper import margin
from keeper.chain.jsonrpc import HttpJsonRpc, RpcMalformedResponseError
from keeper.chain.rpc import CountingRpc, FailoverRpc
from keeper.model import MarginMode, Side, Snapshot
from keeper.testing.anvil import free_port
from keeper.testing.devnet import Devnet
from keeper.venues.base import Venue, VenueDecodeError, VenueError, Watch
from keeper.venues.reference import ReferenceVenue
from tests.integration.venues.conftest import ProxyFactory, connect
from tests.integration.venues.support import open_book

pytestmark = pytest.mark.integration

WAD = 10**18


def watch(devnet: Devnet, wallet: str | None = None) -> Watch:
    d = devnet.deployment
    return Watch((d.trader, d.cross_trader), wallet=wallet)


def at(devnet: Devnet, block: int) -> dict[str, Any]:
    return {"block_identifier": block}


async def test_snapshot_equals_the_chain_field_by_field(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    keys = open_book(devnet)
    devnet.set_price("ETH", Decimal("2100"))
    devnet.chain.advance_time(80_000)  # most of a day of funding (feeds go stale at 86,400)
    liquidator = devnet.deployment.liquidator
    read = await venue.read(watch(devnet, wallet=liquidator))
    snap = read.snapshot
    block = snap.block_number
    lens, _ex, usdc = devnet.lens.functions, devnet.exchange.functions, devnet.usdc.functions
    header = devnet.w3.eth.get_block(block)
    assert snap.block_time == header["timestamp"]
    assert read.issues == ()

    # markets
    assert [m.market_id for m in snap.markets] == ["0", "1"]
    for market in snap.markets:
        view = lens.getMarket(int(market.market_id)).call(**at(devnet, block))
        assert market.venue == "refex"
        assert market.index_token.symbol == ("ETH" if market.market_id == "0" else "BTC")
        assert market.mark_price.raw == view.price
        assert market.mark_price.decimals == 18
        assert market.maintenance_rate * WAD == view.params.maintenanceMarginRate
        assert market.close_fee_rate * WAD == view.params.closeFeeRate
        assert market.liquidation_fee_rate * WAD == view.params.liquidationFeeRate
        assert market.funding_rate_long * WAD == view.fundingRate
        assert market.funding_rate_short == -market.funding_rate_long
        assert market.usd_decimals == 6
        assert market.min_collateral_usd is None

    # positions, with the funding accrued over the week
    assert {p.key for p in snap.positions} == {"0x" + k.hex() for k in keys.values()}
    accrued = 0
    for position in snap.positions:
        view = lens.getPosition(bytes.fromhex(position.key[2:])).call(**at(devnet, block))
        stored = view.position
        assert position.account == stored.account
        assert position.market_id == str(stored.marketId)
        assert position.side is (Side.LONG if stored.isLong else Side.SHORT)
        assert position.mode is (MarginMode.CROSS if stored.isCross else MarginMode.ISOLATED)
        assert position.size.raw == stored.size
        assert position.size.decimals == 18
        assert position.entry_price.raw == stored.entryPrice
        assert position.collateral.raw == stored.collateral == position.collateral_usd.raw
        assert position.collateral_token.address == devnet.deployment.usdc
        assert position.fees.raw == view.pendingFunding
        assert position.fees.decimals == 6
        accrued += abs(view.pendingFunding)
        market = snap.market_of(position)
        if position.mode is MarginMode.ISOLATED:
            # the model's pnl and equity round once, the chain's per term: within 2 units
            assert 0 <= margin.pnl(position, market).raw - view.pnl <= 1
            assert 0 <= margin.equity(position, market).raw - view.equity <= 2
            assert margin.maintenance_margin(position, market).raw == view.maintenanceMargin
            assert margin.is_liquidatable(position, market) == view.liquidatable
            assert position.cross_account is None
        else:
            assert position.cross_account == stored.account
    assert accrued > 0

    # the cross account
    (account,) = snap.accounts
    cross_view = lens.getCrossAccount(devnet.deployment.cross_trader).call(**at(devnet, block))
    assert account.key == account.account == devnet.deployment.cross_trader
    assert account.collateral.raw == cross_view.balance == account.collateral_usd.raw
    assert list(account.position_keys) == ["0x" + p.key.hex() for p in cross_view.positions]
    legs = [(p, snap.market_of(p)) for p in snap.positions_of(account)]
    assert 0 <= margin.cross_equity(account, legs).raw - cross_view.equity <= 2 * len(legs)
    assert margin.cross_maintenance_margin(account, legs).raw == cross_view.maintenanceMargin
    assert margin.cross_is_liquidatable(account, legs) == cross_view.liquidatable

    # pool state
    pool_view = lens.getPoolState().call(**at(devnet, block))
    assert read.pool is not None
    assert read.pool.liquidity.raw == pool_view.totalLiquidity
    assert read.pool.reserved.raw == pool_view.reserved
    assert read.pool.shares == pool_view.totalShares
    for oi, view in zip(read.pool.open_interest, pool_view.markets, strict=True):
        assert oi.market_id == str(view.marketId)
        assert (oi.long.raw, oi.short.raw) == (view.longOI, view.shortOI)
        assert oi.funding_rate * WAD == view.fundingRate

    # the wallet
    assert snap.wallet.address == liquidator
    assert snap.wallet.balance.raw == usdc.balanceOf(liquidator).call(**at(devnet, block))
    assert snap.wallet.native_balance.raw == devnet.w3.eth.get_balance(
        devnet.w3.to_checksum_address(liquidator), block
    )


async def test_reads_are_pinned_to_one_block(devnet: Devnet, venue: ReferenceVenue) -> None:
    open_book(devnet)
    first = await venue.snapshot(watch(devnet))
    devnet.set_price("ETH", Decimal("1800"))
    devnet.chain.advance_time(3_600)
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "BTC", long=True, collateral=1_000, size="0.1")
    later = await venue.snapshot(watch(devnet))
    assert later.block_number > first.block_number
    assert len(later.positions) == len(first.positions) + 1
    again = await venue.snapshot(watch(devnet), block=first.block_number)
    assert again == first


async def test_no_positions_and_observer_wallet(devnet: Devnet, venue: ReferenceVenue) -> None:
    read = await venue.read(Watch((devnet.deployment.lp,)))
    assert read.snapshot.positions == ()
    assert read.snapshot.accounts == ()
    assert read.snapshot.wallet.address == "0x0000000000000000000000000000000000000000"
    assert len(read.snapshot.markets) == 2
    assert read.round_trips == 2


async def test_stale_price_leaves_the_market_out_with_an_issue(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    open_book(devnet)
    devnet.chain.advance_time(86_400 + 60)  # past maxStaleness of both feeds
    devnet.set_price("ETH", Decimal("2000"))  # ETH fresh again, BTC stale
    read = await venue.read(watch(devnet))
    snap = read.snapshot
    assert [m.market_id for m in snap.markets] == ["0"]
    assert all(p.market_id == "0" for p in snap.positions)
    kinds = {(i.kind, i.key) for i in read.issues}
    assert ("price_invalid", "1") in kinds
    assert ("account_incomplete", devnet.deployment.cross_trader) in kinds
    assert snap.accounts == ()
    assert len(snap.positions) == 2  # the trader's isolated ETH long and short


@pytest.mark.parametrize("chunk", [1, 2, 500])
async def test_round_trips_are_at_most_ceil_n_over_chunk_plus_two(
    devnet: Devnet, chunk: int
) -> None:
    open_book(devnet)
    counting = CountingRpc(HttpJsonRpc(devnet.chain.url, timeout=30))
    try:
        venue = await connect(devnet, counting, chunk_size=chunk)
        counting.reset()
        read = await venue.read(watch(devnet, wallet=devnet.deployment.trader))
        n = len(read.snapshot.positions)
        assert n == 5
        assert counting.count == read.round_trips == math.ceil(n / chunk) + 2
        assert counting.by_method == {"eth_blockNumber": 1, "eth_call": counting.count - 1}
        counting.reset()  # a read at a given block needs no pin
        w = watch(devnet, wallet=devnet.deployment.trader)
        pinned = await venue.read(w, block=read.snapshot.block_number)
        assert counting.count == pinned.round_trips == math.ceil(n / chunk) + 1
        assert pinned.snapshot == read.snapshot
    finally:
        await counting.inner.close()  # type: ignore[attr-defined]


async def test_failover_from_a_dead_endpoint(devnet: Devnet) -> None:
    open_book(devnet)
    dead = f"http://127.0.0.1:{free_port()}"
    async with FailoverRpc([dead, devnet.chain.url], retry_wait=0, retry_wait_max=0) as rpc:
        venue = await connect(devnet, rpc)
        snap = await venue.snapshot(watch(devnet))
    assert len(snap.positions) == 5


async def test_a_lagging_endpoint_is_skipped_for_the_pinned_block(
    devnet: Devnet, venue: ReferenceVenue, make_proxy: ProxyFactory
) -> None:
    open_book(devnet)
    expected = await venue.snapshot(watch(devnet))
    lagging = await make_proxy()
    lagging.lag = 5
    async with FailoverRpc([lagging.url, devnet.chain.url], retry_wait=0) as rpc:
        reader = await connect(devnet, rpc)
        assert await reader.snapshot(watch(devnet), block=expected.block_number) == expected
        assert isinstance(reader, Venue)
        lagging_stats = rpc.stats()[0]
    # the lagging endpoint was asked (its head was unknown), said it lacks the block, and the
    # read went on to the other one at the same block
    assert lagging_stats.errors.get("missing_block", 0) + lagging_stats.skipped >= 1


async def _read_through(proxy_url: str, devnet: Devnet) -> tuple[ReferenceVenue, FailoverRpc]:
    rpc = FailoverRpc([proxy_url], attempts=1, retry_wait=0, retry_wait_max=0)
    return await connect(devnet, rpc), rpc


@pytest.mark.parametrize("fault", ["truncate", "garbage", "cut"])
async def test_a_cut_or_garbled_answer_raises_and_the_next_read_recovers(
    devnet: Devnet, venue: ReferenceVenue, make_proxy: ProxyFactory, fault: str
) -> None:
    open_book(devnet)
    expected = await venue.snapshot(watch(devnet))
    proxy = await make_proxy()
    reader, rpc = await _read_through(proxy.url, devnet)
    try:
        proxy.next_faults = [fault]  # the pin
        with pytest.raises(RpcMalformedResponseError if fault != "cut" else Exception) as info:
            await reader.snapshot(watch(devnet))
        assert "eth_blockNumber" in str(info.value)
        # the positions round: the batch of keys passes, the positions are cut
        proxy.next_faults = ["", fault]
        with pytest.raises(Exception, match="eth_call") as info:
            await reader.snapshot(watch(devnet), block=expected.block_number)
        assert isinstance(info.value, RpcMalformedResponseError) or fault == "cut"
        assert await reader.snapshot(watch(devnet), block=expected.block_number) == expected
    finally:
        await rpc.close()


@pytest.mark.parametrize(
    ("result", "error", "match"),
    [
        ("0x", Exception, "aggregate3 returned no data"),
        ("0x" + "00" * 31 + "20" + "00" * 32, RpcMalformedResponseError, "0 results"),
        ("0x1234", RpcMalformedResponseError, "cut short"),
        ("nonsense", RpcMalformedResponseError, "not hex"),
    ],
)
async def test_a_wrong_result_raises_a_clear_error_and_the_next_read_recovers(  # noqa: PLR0917
    devnet: Devnet,
    venue: ReferenceVenue,
    make_proxy: ProxyFactory,
    result: str,
    error: type[Exception],
    match: str,
) -> None:
    open_book(devnet)
    expected = await venue.snapshot(watch(devnet))
    proxy = await make_proxy()
    reader, rpc = await _read_through(proxy.url, devnet)
    try:
        proxy.next_faults = ["", f"result:{result}"]  # the batch of keys, then the positions
        with pytest.raises(error, match=match):
            await reader.snapshot(watch(devnet), block=expected.block_number)
        assert await reader.snapshot(watch(devnet), block=expected.block_number) == expected
    finally:
        await rpc.close()


async def test_a_position_answer_of_the_wrong_shape_names_the_call(
    devnet: Devnet, venue: ReferenceVenue, make_proxy: ProxyFactory
) -> None:
    open_book(devnet)
    expected = await venue.snapshot(watch(devnet))
    proxy = await make_proxy()
    reader, rpc = await _read_through(proxy.url, devnet)
    # aggregate3 answering each of the trader's three calls with 4 bytes, not a Position
    one = "0x" + encode(["(bool,bytes)[]"], [[(True, b"\xde\xad\xbe\xef")] * 3]).hex()
    try:
        proxy.next_faults = ["", f"result:{one}"]
        with pytest.raises(VenueDecodeError, match=r"PerpExchange.positions: expected 288"):
            await reader.snapshot(Watch((devnet.deployment.trader,)), block=expected.block_number)
        assert await reader.snapshot(watch(devnet), block=expected.block_number) == expected
    finally:
        await rpc.close()
    assert isinstance(expected, Snapshot)


async def test_bad_watch_and_addresses_are_refused(devnet: Devnet, venue: ReferenceVenue) -> None:
    with pytest.raises(VenueError, match="account: not an address"):
        await venue.read(Watch(("0x1234",)))
    d = devnet.deployment
    with pytest.raises(VenueError, match="an account is listed twice"):
        await venue.read(Watch((d.trader, d.trader.lower())))
    rpc = HttpJsonRpc(devnet.chain.url)
    try:
        with pytest.raises(VenueError, match="no PerpLens"):
            await ReferenceVenue.connect(
                rpc, exchange=d.exchange, lens=d.usdc, multicall=d.multicall
            )
        with pytest.raises(VenueError, match="no contract at the Multicall3 address"):
            await ReferenceVenue.connect(
                rpc, exchange=d.exchange, lens=d.lens, multicall="0x" + "11" * 20
            )
    finally:
        await rpc.close()
