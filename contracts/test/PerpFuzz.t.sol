// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {BaseTest} from "./Base.t.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpLens} from "../src/PerpLens.sol";
import {PerpMath} from "../src/PerpMath.sol";
import {MarketParams, MarketState, Position} from "../src/PerpTypes.sol";

contract PerpFuzzTest is BaseTest {
    /// Closing pays collateral + pnl - close fee (rounded against the trader), floored at zero.
    function testFuzz_PnlOnClose(bool isLong, uint256 size, uint256 p0, uint256 p1) public {
        size = bound(size, 1e12, 100e18);
        p0 = bound(p0, 100e8, 10_000e8);
        p1 = bound(p1, 50e8, 20_000e8);
        setPrice(int256(p0));
        uint256 notional0 = PerpMath.notional(size, p0 * 1e10);
        uint256 collateral = notional0 / 5 + 1e6;
        open(alice, isLong, collateral, size);
        uint256 openFee = PerpMath.mulDivUp(notional0, 0.001e18, 1e18);
        setPrice(int256(p1));
        int256 pnl = isLong
            ? PerpMath.divFloor(int256(size) * (int256(p1) - int256(p0)) * 1e10, 1e30)
            : PerpMath.divFloor(int256(size) * (int256(p0) - int256(p1)) * 1e10, 1e30);
        uint256 closeFee = PerpMath.mulDivUp(PerpMath.notional(size, p1 * 1e10), 0.001e18, 1e18);
        assertEq(view_(alice, isLong).pnl, pnl, "view pnl");
        int256 expected = int256(collateral - openFee) + pnl - int256(closeFee);
        uint256 payout = expected > 0 ? uint256(expected) : 0;
        uint256 cap = collateral - openFee + ex.poolAmount(); // the pool pays at most what it holds
        uint256 before = usdc.balanceOf(alice);
        vm.prank(alice);
        ex.closePosition(ETH, isLong);
        assertEq(usdc.balanceOf(alice) - before, payout < cap ? payout : cap, "payout");
        assertConserved(accounts2());
        assertEq(ex.marketState(ETH).entryNotional, 0);
    }

    /// Funding accrues at fundingFactor * skew / total (capped) on both sides, rounded against traders,
    /// and the aggregate per side matches the positions within one unit each.
    function testFuzz_FundingAccrual(uint256 longSize, uint256 shortSize, uint256 elapsed, uint256 factor) public {
        longSize = bound(longSize, 1e15, 100e18);
        shortSize = bound(shortSize, 1e15, 100e18);
        elapsed = bound(elapsed, 1, 3600);
        factor = bound(factor, 0, 2e11);
        MarketParams memory params = defaultParams();
        params.fundingFactor = uint64(factor);
        ex.setMarketParams(ETH, params);
        open(alice, true, longSize * 400 / 1e12 + 1e6, longSize);
        open(bob, false, shortSize * 400 / 1e12 + 1e6, shortSize);
        skip(elapsed);
        int256 rate = int256(factor) * (int256(longSize) - int256(shortSize)) / int256(longSize + shortSize);
        if (rate > 1e11) rate = 1e11;
        if (rate < -1e11) rate = -1e11;
        int256 perUnit = rate * 2000e18 * int256(elapsed) / 1e18;
        PerpLens.MarketView memory m = lens.getMarket(ETH);
        assertEq(m.fundingRate, rate);
        assertEq(m.longFundingIndex, perUnit);
        assertEq(m.shortFundingIndex, -perUnit);
        int256 longOwed = view_(alice, true).pendingFunding;
        int256 shortOwed = view_(bob, false).pendingFunding;
        assertEq(longOwed, PerpMath.divCeil(int256(longSize) * perUnit, 1e30));
        assertEq(shortOwed, PerpMath.divCeil(-int256(shortSize) * perUnit, 1e30));
        // net to the pool: what longs pay minus what shorts receive, within rounding
        int256 net = PerpMath.divFloor(int256(longSize) * perUnit - int256(shortSize) * perUnit, 1e30);
        assertApproxEqAbs(longOwed + shortOwed, net, 2);
        // settling moves exactly the pending funding between collateral and pool
        ex.updateFunding(ETH);
        MarketState memory s = ex.marketState(ETH);
        int256 aggregate = PerpMath.divCeil(int256(s.longOI) * s.longFundingIndex - s.longFundingBase, 1e30);
        assertEq(aggregate, longOwed);
        uint256 poolBefore = ex.poolAmount();
        uint256 collBefore = pos(alice, true).collateral;
        vm.prank(alice);
        ex.addMargin(ETH, true, 1);
        assertEq(int256(pos(alice, true).collateral), int256(collBefore) + 1 - longOwed);
        assertEq(int256(ex.poolAmount()), int256(poolBefore) + longOwed);
        assertConserved(accounts2());
    }

    struct Boundary {
        uint256 p1;
        int256 target;
        uint256 mm1;
        bytes32 key;
    }

    /// A position whose equity is exactly its maintenance margin is not liquidatable; one unit less is.
    function testFuzz_LiquidationBoundary(bool isLong, bool below, uint256 size, uint256 p0, uint256 moveBps) public {
        size = bound(size, 1e15, 100e18);
        p0 = bound(p0, 100e8, 10_000e8) * 1e10;
        moveBps = bound(moveBps, 1500, 5000);
        Boundary memory b;
        b.p1 = isLong ? p0 * (10_000 - moveBps) / 10_000 : p0 * (10_000 + moveBps) / 10_000;
        b.p1 = b.p1 / 1e10 * 1e10; // representable by the 8-decimal feed
        setPrice(int256(p0 / 1e10));
        MarketParams memory params = defaultParams();
        b.mm1 = PerpMath.onNotional(size, b.p1, params.maintenanceMarginRate);
        b.target = int256(b.mm1) - (below ? int256(1) : int256(0));
        // deposit so that equity at p1 = target: collateral - openFee + pnl(p1) - closeFee(p1)
        int256 deposit = b.target + int256(PerpMath.onNotional(size, p0, params.openFeeRate))
            - PerpMath.pnl(isLong, size, p0, b.p1) + int256(PerpMath.onNotional(size, b.p1, params.closeFeeRate));
        open(alice, isLong, uint256(deposit), size);
        b.key = ex.positionKey(alice, ETH, isLong);
        setPrice(int256(b.p1 / 1e10));
        PerpLens.PositionView memory v = lens.getPosition(b.key);
        assertEq(v.equity, b.target, "equity at the boundary");
        assertEq(v.maintenanceMargin, b.mm1);
        assertEq(ex.isLiquidatable(b.key), below);
        assertEq(v.liquidatable, below);
        vm.prank(keeper);
        if (!below) {
            vm.expectRevert(abi.encodeWithSelector(PerpExchange.NotLiquidatable.selector, b.target, b.mm1));
            ex.liquidate(alice, ETH, isLong);
        } else {
            uint256 fee = ex.liquidate(alice, ETH, isLong);
            uint256 wanted = PerpMath.onNotional(size, b.p1, params.liquidationFeeRate);
            assertEq(fee, wanted < uint256(b.target) ? wanted : uint256(b.target));
            assertConserved(accounts2());
        }
    }

    /// The size-weighted entry keeps the total pnl of two fills (within rounding against the trader).
    function testFuzz_AverageEntryKeepsPnl(bool isLong, uint256 s1, uint256 s2, uint256 p1, uint256 p2, uint256 p3)
        public
        pure
    {
        s1 = bound(s1, 1, 1e24);
        s2 = bound(s2, 1, 1e24);
        p1 = bound(p1, 1e15, 1e24);
        p2 = bound(p2, 1e15, 1e24);
        p3 = bound(p3, 1e15, 1e24);
        uint256 entry = PerpMath.averageEntry(isLong, s1, p1, s2, p2);
        int256 merged = PerpMath.pnl(isLong, s1 + s2, entry, p3);
        int256 separate = PerpMath.pnl(isLong, s1, p1, p3) + PerpMath.pnl(isLong, s2, p2, p3);
        assertLe(merged, separate + 1);
        assertGe(merged, separate - 1 - int256((s1 + s2) / 1e30 + 1));
    }
}
