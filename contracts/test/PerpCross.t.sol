// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {BaseTest} from "./Base.t.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpLens} from "../src/PerpLens.sol";
import {PerpMath} from "../src/PerpMath.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {MarketParams, Position} from "../src/PerpTypes.sol";

contract PerpCrossTest is BaseTest {
    event CrossDeposit(address indexed account, uint256 amount);
    event CrossWithdraw(address indexed account, uint256 amount);
    event LiquidationSettled(
        address indexed account, address indexed liquidator, bool isCross, uint256 liquidatorFee, uint256 toPool
    );

    uint256 internal constant BTC = 1;
    PriceFeed internal btcFeed;

    function setUp() public override {
        super.setUp();
        btcFeed = new PriceFeed("BTC / USD", oracle);
        vm.prank(oracle);
        btcFeed.setAnswer(30_000e8);
        MarketParams memory p = defaultParams();
        p.feed = address(btcFeed);
        ex.addMarket(p);
    }

    function crossDeposit(address who, uint256 amount) internal {
        vm.prank(who);
        ex.depositCross(amount);
    }

    function openX(address who, uint256 market, bool isLong, uint256 size) internal {
        vm.prank(who);
        ex.openCross(market, isLong, size);
    }

    function test_DepositWithdrawCross() public {
        vm.expectEmit(address(ex));
        emit CrossDeposit(alice, 1000e6);
        crossDeposit(alice, 1000e6);
        assertEq(ex.crossBalance(alice), 1000e6);
        vm.expectEmit(address(ex));
        emit CrossWithdraw(alice, 400e6);
        vm.prank(alice);
        ex.withdrawCross(400e6);
        assertEq(ex.crossBalance(alice), 600e6);
        assertEq(usdc.balanceOf(alice), 1_000_000e6 - 600e6);
        assertConserved(accounts2());
    }

    function test_RevertWhen_CrossBalanceOps() public {
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.depositCross(0);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.withdrawCross(0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientCollateral.selector, 0, 1));
        ex.withdrawCross(1);
        ex.depositCross(300e6);
        ex.openCross(ETH, true, 1e18); // balance 298, equity 296, initial margin 200
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, 200e6 - 1, 200e6));
        ex.withdrawCross(96e6 + 1);
        ex.withdrawCross(96e6);
        vm.stopPrank();
    }

    function test_OpenCross() public {
        crossDeposit(alice, 1000e6);
        openX(alice, ETH, true, 1e18);
        openX(alice, BTC, false, 0.1e18);
        assertEq(ex.crossBalance(alice), 1000e6 - 2e6 - 3e6);
        Position memory p = ex.positions(ex.crossPositionKey(alice, ETH, true));
        assertTrue(p.isCross);
        assertEq(p.collateral, 0);
        assertEq(p.entryPrice, 2000e18);
        (int256 equity, uint256 mm, uint256 im) = ex.crossHealth(alice);
        assertEq(equity, 995e6 - 2e6 - 3e6);
        assertEq(mm, 100e6 + 150e6);
        assertEq(im, 200e6 + 300e6);
        PerpLens.CrossAccountView memory v = lens.getCrossAccount(alice);
        assertEq(v.balance, 995e6);
        assertEq(v.equity, equity);
        assertEq(v.maintenanceMargin, mm);
        assertEq(v.initialMargin, im);
        assertEq(v.positions.length, 2);
        assertTrue(v.priceValid);
        assertFalse(v.liquidatable);
        assertEq(lens.getAccountPositions(alice).length, 2);
        assertConserved(accounts2());
    }

    function test_RevertWhen_OpenCross() public {
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.openCross(ETH, true, 0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, -2e6, 200e6));
        ex.openCross(ETH, true, 1e18);
        ex.depositCross(1_000_000e6);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.OpenInterestCap.selector, 1001e18, 1000e18));
        ex.openCross(ETH, true, 1001e18);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.UnknownMarket.selector, 9));
        ex.openCross(9, true, 1e18);
        vm.stopPrank();
    }

    function test_DecreaseAndCloseCross() public {
        crossDeposit(alice, 1000e6);
        openX(alice, ETH, true, 2e18);
        setPrice(2100e8);
        vm.prank(alice);
        ex.decreaseCross(ETH, true, 1e18); // +100 - 2.1
        assertEq(ex.crossBalance(alice), 996e6 + 97.9e6);
        vm.prank(alice);
        ex.closeCross(ETH, true);
        assertEq(ex.crossBalance(alice), 996e6 + 2 * 97.9e6);
        assertEq(ex.crossPositionKeys(alice).length, 0);
        assertConserved(accounts2());
    }

    function test_RevertWhen_DecreaseCross() public {
        bytes32 key = ex.crossPositionKey(alice, ETH, true);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, key));
        ex.decreaseCross(ETH, true, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, key));
        ex.closeCross(ETH, true);
        crossDeposit(alice, 300e6);
        openX(alice, ETH, true, 1e18);
        openX(alice, BTC, false, 0.01e18); // balance 298 - 0.3
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.decreaseCross(ETH, true, 0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.SizeExceedsPosition.selector, 1e18, 2e18));
        ex.decreaseCross(ETH, true, 2e18);
        vm.stopPrank();
        // BTC short gains, ETH long loses more than the balance
        setPrice(1600e8);
        vm.prank(oracle);
        btcFeed.setAnswer(10_000e8);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.CrossBalanceShortfall.selector, 297.7e6, 401.6e6));
        ex.closeCross(ETH, true);
        vm.prank(alice);
        ex.closeCross(BTC, false); // realizes +200 - 0.1 first: balance 497.6
        // at 1530 the account is liquidatable (equity 497.6 - 470 - 1.53 = 26.07 < 76.5); a decrease
        // keeps the equity and must bring it back above maintenance
        setPrice(1530e8);
        assertTrue(ex.isCrossLiquidatable(alice));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, 26.07e6, 38.25e6));
        ex.decreaseCross(ETH, true, 0.5e18);
        vm.prank(alice);
        ex.decreaseCross(ETH, true, 0.7e18);
        assertFalse(ex.isCrossLiquidatable(alice));
        setPrice(1600e8);
        vm.prank(alice);
        ex.closeCross(ETH, true);
        assertEq(ex.crossBalance(alice), 497.6e6 - 0.7e6 * 470 - 1.071e6 - 0.3e6 * 400 - 0.48e6);
        assertConserved(accounts2());
    }

    /// Equity exactly at maintenance is not liquidatable; one unit below is.
    function test_CrossLiquidationBoundary() public {
        // balance B, long 1 ETH: at 1800 equity = B - 2 - 200 - 1.8, maintenance 90
        crossDeposit(alice, 293.8e6);
        openX(alice, ETH, true, 1e18);
        crossDeposit(bob, 293.8e6 - 1);
        openX(bob, ETH, true, 1e18);
        setPrice(1800e8);
        assertFalse(ex.isCrossLiquidatable(alice));
        assertFalse(ex.isLiquidatable(ex.crossPositionKey(alice, ETH, true)));
        assertTrue(ex.isCrossLiquidatable(bob));
        assertTrue(ex.isLiquidatable(ex.crossPositionKey(bob, ETH, true)));
        assertTrue(lens.getCrossAccount(bob).liquidatable);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NotLiquidatable.selector, 90e6, 90e6));
        ex.liquidateCross(alice);
        vm.expectEmit(address(ex));
        emit LiquidationSettled(bob, keeper, true, 9e6, 90e6 - 1 - 9e6);
        vm.prank(keeper);
        assertEq(ex.liquidateCross(bob), 9e6);
        assertEq(ex.crossBalance(bob), 0);
        assertEq(ex.crossPositionKeys(bob).length, 0);
        assertEq(usdc.balanceOf(keeper), 9e6);
        assertConserved(accounts2());
    }

    /// Fuzzed cross boundary: a long or short leg moved against the account plus an unmoved BTC leg;
    /// the balance is chosen so that equity is exactly the maintenance margin, or one unit below.
    function testFuzz_CrossLiquidationBoundary(bool isLong, bool below, uint256 size, uint256 moveBps) public {
        size = bound(size, 1e16, 100e18);
        moveBps = bound(moveBps, 2000, 5000);
        uint256 p1 = isLong ? 2000e18 * (10_000 - moveBps) / 10_000 : 2000e18 * (10_000 + moveBps) / 10_000;
        uint256 btcSize = size / 1500; // a BTC leg of 2% of the ETH notional
        MarketParams memory p = defaultParams();
        uint256 mm = PerpMath.onNotional(size, p1, p.maintenanceMarginRate)
            + PerpMath.onNotional(btcSize, 30_000e18, p.maintenanceMarginRate);
        int256 target = int256(mm) - (below ? int256(1) : int256(0));
        int256 balance = target + int256(PerpMath.onNotional(size, 2000e18, p.openFeeRate))
            + int256(PerpMath.onNotional(btcSize, 30_000e18, p.openFeeRate)) - PerpMath.pnl(isLong, size, 2000e18, p1)
            + int256(PerpMath.onNotional(size, p1, p.closeFeeRate))
            + int256(PerpMath.onNotional(btcSize, 30_000e18, p.closeFeeRate));
        crossDeposit(alice, uint256(balance));
        openX(alice, ETH, isLong, size);
        if (btcSize != 0) openX(alice, BTC, !isLong, btcSize);
        setPrice(int256(p1 / 1e10));
        (int256 equity, uint256 maintenance,) = ex.crossHealth(alice);
        assertEq(equity, target);
        assertEq(maintenance, mm);
        assertEq(ex.isCrossLiquidatable(alice), below);
        assertEq(lens.getCrossAccount(alice).liquidatable, below);
        vm.prank(keeper);
        if (below) {
            ex.liquidateCross(alice);
            assertEq(ex.crossPositionKeys(alice).length, 0);
            assertConserved(accounts2());
        } else {
            vm.expectRevert(abi.encodeWithSelector(PerpExchange.NotLiquidatable.selector, target, mm));
            ex.liquidateCross(alice);
        }
    }

    function test_CrossLiquidationClosesAllAndLeavesIsolated() public {
        crossDeposit(alice, 1000e6);
        openX(alice, ETH, true, 2e18);
        openX(alice, BTC, true, 0.1e18);
        open(alice, true, 1000e6, 1e18);
        setPrice(1700e8);
        vm.prank(oracle);
        btcFeed.setAnswer(27_000e8);
        assertTrue(ex.isCrossLiquidatable(alice));
        vm.prank(keeper);
        ex.liquidateCross(alice);
        assertEq(ex.crossPositionKeys(alice).length, 0);
        assertEq(ex.marketState(BTC).longOI, 0);
        assertEq(ex.marketState(ETH).longOI, 1e18);
        assertEq(pos(alice, true).size, 1e18);
        assertFalse(ex.isLiquidatable(ex.positionKey(alice, ETH, true)));
        assertConserved(accounts2());
    }

    function test_CrossBadDebtAbsorbedByPool() public {
        crossDeposit(alice, 300e6);
        openX(alice, ETH, true, 1e18);
        setPrice(1500e8);
        uint256 poolBefore = ex.poolAmount();
        vm.prank(keeper);
        assertEq(ex.liquidateCross(alice), 0);
        assertEq(ex.poolAmount(), poolBefore + 298e6);
        assertConserved(accounts2());
    }

    function test_RevertWhen_LiquidateCrossWithoutPositions() public {
        crossDeposit(alice, 300e6);
        assertFalse(ex.isCrossLiquidatable(alice));
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, bytes32(0)));
        ex.liquidateCross(alice);
    }

    function test_CrossFundingSettlesIntoBalance() public {
        crossDeposit(alice, 1000e6);
        openX(alice, ETH, true, 1e18);
        skip(1000);
        setPrice(2000e8);
        assertEq(lens.getCrossAccount(alice).positions[0].pendingFunding, 0.2e6);
        (int256 equity,,) = ex.crossHealth(alice);
        assertEq(equity, 998e6 - 2e6 - 0.2e6);
        vm.prank(alice);
        ex.closeCross(ETH, true);
        assertEq(ex.crossBalance(alice), 998e6 - 2e6 - 0.2e6);
    }
}

contract PerpImpactTest is BaseTest {
    function setUp() public override {
        super.setUp();
        MarketParams memory p = defaultParams();
        p.impactFactor = 1e15; // 0.1% premium per 1 ETH of skew
        ex.setMarketParams(ETH, p);
    }

    function test_QuoteAndExecuteWithImpact() public {
        PerpLens.Quote memory q = lens.quoteIncrease(ETH, true, 2e18);
        assertEq(q.markPrice, 2000e18);
        assertEq(q.executionPrice, 2002e18); // premium (0 + 2) / 2 * 0.1%
        assertEq(q.priceImpactUsd, 4e6);
        assertEq(q.fee, 4.004e6);
        open(alice, true, 1000e6, 2e18);
        assertEq(pos(alice, true).entryPrice, 2002e18);
        assertEq(view_(alice, true).pnl, -4e6);
        // a short reducing the skew sells above the mark
        q = lens.quoteIncrease(ETH, false, 2e18);
        assertEq(q.executionPrice, 2002e18);
        assertEq(q.priceImpactUsd, -4e6);
        // closing the long restores the skew: same price, no net impact
        q = lens.quoteDecrease(ETH, true, 2e18);
        assertEq(q.executionPrice, 2002e18);
        assertEq(q.priceImpactUsd, -4e6);
        assertEq(q.fee, 4.004e6);
        vm.prank(alice);
        ex.closePosition(ETH, true);
        assertEq(ex.marketState(ETH).longOI, 0);
    }

    function test_ImpactCapped() public view {
        PerpLens.Quote memory q = lens.quoteIncrease(ETH, true, 500e18);
        assertEq(q.executionPrice, 2100e18); // capped at maxImpactRate 5%
        q = lens.quoteDecrease(ETH, true, 500e18);
        assertEq(q.executionPrice, 1900e18);
    }

    function test_RevertWhen_QuoteStale() public {
        skip(3601);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.StalePrice.selector, ETH, block.timestamp - 3601));
        lens.quoteIncrease(ETH, true, 1e18);
    }

    /// Mirrored trades get mirrored premiums, within one wei of rounding, and never more than the cap.
    function testFuzz_ImpactSymmetricAndBounded(uint256 longOI, uint256 shortOI, int256 delta, uint256 price)
        public
        view
    {
        MarketParams memory p = ex.marketParams(ETH);
        longOI = bound(longOI, 0, 1e24);
        shortOI = bound(shortOI, 0, 1e24);
        delta = bound(delta, -1e24, 1e24);
        price = bound(price, 1e15, 1e24);
        uint256 fill = PerpMath.fillPrice(p, longOI, shortOI, price, delta);
        uint256 mirror = PerpMath.fillPrice(p, shortOI, longOI, price, -delta);
        uint256 maxMove = PerpMath.mulDivUp(price, p.maxImpactRate, 1e18);
        assertLe(fill, price + maxMove);
        assertGe(fill, price - maxMove);
        // fill - price == price - mirror, up to rounding (1 wei of premium plus price rounding)
        assertApproxEqAbs(fill + mirror, 2 * price, price / 1e18 + 2);
        // against the trader when the trade grows the skew, in their favour when it shrinks it
        int256 skew = int256(longOI) - int256(shortOI);
        if (delta > 0 && skew >= 0) assertGe(fill, price);
        if (delta < 0 && skew <= 0) assertLe(fill, price);
        if (delta > 0 && 2 * skew + delta < 0) assertLe(fill, price);
    }

    /// Buying then selling the same size from the same state never gains.
    function testFuzz_ImpactRoundTripNeverGains(uint256 longOI, uint256 shortOI, uint256 size, uint256 price)
        public
        view
    {
        MarketParams memory p = ex.marketParams(ETH);
        longOI = bound(longOI, 0, 1e24);
        shortOI = bound(shortOI, 0, 1e24);
        size = bound(size, 1, 1e24);
        price = bound(price, 1e15, 1e24);
        uint256 buy = PerpMath.fillPrice(p, longOI, shortOI, price, int256(size));
        uint256 sell = PerpMath.fillPrice(p, longOI + size, shortOI, price, -int256(size));
        assertGe(buy, sell);
    }
}
