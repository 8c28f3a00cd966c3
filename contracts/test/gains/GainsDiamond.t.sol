// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGains} from "../../src/gains/IGains.sol";
import {GainsTestDiamond} from "../../src/gains/GainsTestDiamond.sol";
import {GainsTestOracle} from "../../src/gains/GainsTestOracle.sol";
import {GainsTradingFacet} from "../../src/gains/GainsTradingFacet.sol";
import {GainsBase} from "./GainsBase.t.sol";

contract GainsDiamondTest is GainsBase {
    function test_OpenTakesFeeAndStoresTrade() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        assertTrue(t.isOpen);
        assertEq(t.collateralAmount, 994e6); // 0.06% of the 10,000 USDC position
        assertEq(t.openPrice, 2000 * P);
        assertEq(usdc.balanceOf(trader), 99_000e6);
        assertEq(diamond.getTrades(trader).length, 1);
        assertEq(diamond.getTradeInfos(trader)[0].maxSlippageP, 1000);
        assertEq(uint8(diamond.getTradeInfo(trader, index).contractsVersion), uint8(IGains.ContractsVersion.V10));
        assertEq(diamond.getTradesLiquidationParams(trader)[0].startLeverage, 25e3);
    }

    /// The worked case: 994 USDC at 10x from 2,000: 90% threshold, closing fee 5.964 USDC,
    /// distance 2000 * (894.6 - 5.964) / 9940 = 178.8, less the 0.02% closing spread (0.4).
    function test_LiquidationPriceWorkedCase() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        assertEq(liqPrice(index, 2000 * uint64(P)), 18216 * P / 10);
        uint32 s = open(false, 1000e6, 10e3, 2000 * uint64(P));
        assertEq(liqPrice(s, 2000 * uint64(P)), 21784 * P / 10);
    }

    function test_ThresholdInterpolatesWithLeverage() public {
        // 62.5x: halfway from 25x (90%) to 100x (80%): 85%
        uint32 index = open(true, 1000e6, 62_500, 2000 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        uint256 size = uint256(t.collateralAmount) * 62_500 / 1e3;
        int256 feeCollateral = int256(size * 6e8 / 1e12);
        int256 neg = int256(uint256(t.collateralAmount) * 85e10 / 1e12);
        int256 dist = int256(2000 * P) * (neg - feeCollateral) * 1e3 / int256(uint256(t.collateralAmount) * 62_500);
        dist -= int256(2000 * P * 2e8 / 1e12);
        assertEq(liqPrice(index, 2000 * uint64(P)), uint256(int256(2000 * P) - dist));
    }

    function test_ThresholdWhereStartAndEndLeverageMeet() public {
        // parameters whose start and end leverage are equal: the start threshold at and below
        // that leverage, the end threshold above it, no division by zero
        uint32 index = open(true, 1000e6, 25_000, 2000 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        IGains.LiqPriceInput memory input = IGains.LiqPriceInput({
            collateralIndex: t.collateralIndex,
            trader: trader,
            pairIndex: t.pairIndex,
            index: index,
            openPrice: t.openPrice,
            long: true,
            collateral: t.collateralAmount,
            leverage: 25_000,
            additionalFeeCollateral: 0,
            liquidationParams: IGains.GroupLiquidationParams(5e8, 90e10, 80e10, 25_000, 25_000),
            currentPairPrice: t.openPrice,
            isCounterTrade: false,
            partialCloseMultiplier: 1e18,
            beforeOpened: false
        });
        uint256 atStart = diamond.getTradeLiquidationPrice(input);
        input.liquidationParams.startLiqThresholdP = 85e10; // only the start threshold applies here
        assertGt(diamond.getTradeLiquidationPrice(input), atStart); // less room: closer to the open
        input.leverage = 25_001;
        input.liquidationParams.startLiqThresholdP = 90e10;
        uint256 above = diamond.getTradeLiquidationPrice(input);
        input.liquidationParams.endLiqThresholdP = 70e10; // above it, the end threshold applies
        assertGt(diamond.getTradeLiquidationPrice(input), above);
    }

    function test_CloseMarketPaysPnl() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.closeTradeMarket(index, 2200 * uint64(P));
        assertEq(diamond.getTrade(trader, index).isOpen, true); // waits for the oracle
        oracle.fulfill(trader, lastOrder(), 2200 * uint64(P));
        assertFalse(diamond.getTrade(trader, index).isOpen);
        // 994 + 9940 * 10% - 5.964 closing fee
        assertEq(usdc.balanceOf(trader), 99_000e6 + 994e6 + 994e6 - 5_964_000);
        assertEq(diamond.getTrades(trader).length, 0);
    }

    function test_CloseCancelledPastSlippage() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.closeTradeMarket(index, 2000 * uint64(P));
        vm.expectEmit(address(diamond));
        emit IGains.MarketCloseCanceled(IGains.Id(trader, 1), trader, ETH, index, IGains.CancelReason.SLIPPAGE);
        oracle.fulfill(trader, 1, 1970 * uint64(P)); // 1.5% below, past the 1%
        assertTrue(diamond.getTrade(trader, index).isOpen);
    }

    function test_SecondCloseConflicts() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.startPrank(trader);
        trading.closeTradeMarket(index, 2000 * uint64(P));
        vm.expectRevert(IGains.AlreadyBeingMarketClosed.selector);
        trading.closeTradeMarket(index, 2000 * uint64(P));
        vm.expectRevert(IGains.AlreadyBeingMarketClosed.selector);
        trading.updateLeverage(index, 5e3);
        vm.stopPrank();
    }

    function test_UpdateLeverageAddsCollateralAtSameSize() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        uint256 before = liqPrice(index, 1900 * uint64(P));
        vm.prank(trader);
        trading.updateLeverage(index, 5e3);
        assertEq(usdc.balanceOf(trader), 99_000e6 - 994e6); // taken when the order is stored
        oracle.fulfill(trader, lastOrder(), 1900 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        assertEq(t.leverage, 5e3);
        assertEq(t.collateralAmount, 1988e6);
        assertLt(liqPrice(index, 1900 * uint64(P)), before);
    }

    function test_UpdateLeverageCancelledPastLiquidationReturnsCollateral() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.updateLeverage(index, 5e3);
        vm.expectEmit(true, true, true, false, address(diamond));
        emit IGains.LeverageUpdateExecuted(
            IGains.Id(trader, 1),
            false,
            IGains.CancelReason.LIQ_REACHED,
            USDC,
            trader,
            ETH,
            index,
            1800 * P,
            994e6,
            IGains.UpdateLeverageValues(0, 0, 0, 0, 0, 0, 0, 0)
        );
        oracle.fulfill(trader, lastOrder(), 1800 * uint64(P));
        assertEq(usdc.balanceOf(trader), 99_000e6);
        assertEq(diamond.getTrade(trader, index).leverage, 10e3);
    }

    function test_UpdateLeverageIncreaseFreesCollateral() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.updateLeverage(index, 20e3);
        oracle.fulfill(trader, lastOrder(), 2000 * uint64(P));
        assertEq(diamond.getTrade(trader, index).collateralAmount, 497e6);
        assertEq(usdc.balanceOf(trader), 99_000e6 + 497e6);
    }

    function test_DecreaseByLeverageKeepsCollateral() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.decreasePositionSize(index, 0, 4e3, 2100 * uint64(P));
        oracle.fulfill(trader, lastOrder(), 2100 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        assertEq(t.leverage, 6e3);
        assertEq(t.collateralAmount, 994e6);
        // the closed 3,976 USDC earned 5%: 198.8, less its 2.3856 closing fee
        assertEq(usdc.balanceOf(trader), 99_000e6 + 198_800_000 - 2_385_600);
    }

    function test_DecreaseByCollateralKeepsLeverage() public {
        uint32 index = open(false, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.decreasePositionSize(index, 494e6, 0, 2000 * uint64(P));
        oracle.fulfill(trader, lastOrder(), 2000 * uint64(P));
        IGains.Trade memory t = diamond.getTrade(trader, index);
        assertEq(t.leverage, 10e3);
        assertEq(t.collateralAmount, 500e6);
        assertEq(usdc.balanceOf(trader), 99_000e6 + 494e6 - 2_964_000);
    }

    function test_DecreaseInputsChecked() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.startPrank(trader);
        vm.expectRevert(IGains.InvalidDecreasePositionSizeInput.selector);
        trading.decreasePositionSize(index, 1e6, 1e3, 2000 * uint64(P));
        vm.expectRevert(IGains.InvalidDecreasePositionSizeInput.selector);
        trading.decreasePositionSize(index, 0, 0, 2000 * uint64(P));
        vm.expectRevert(IGains.WrongLeverage.selector);
        trading.decreasePositionSize(index, 0, 9e3, 2000 * uint64(P)); // 1x is under the 2x minimum
        vm.expectRevert(IGains.NoTrade.selector);
        trading.decreasePositionSize(7, 0, 1e3, 2000 * uint64(P));
        vm.stopPrank();
    }

    function test_TimeoutCancelsAndRefunds() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.updateLeverage(index, 5e3);
        uint32 order = lastOrder();
        vm.prank(trader);
        vm.expectRevert(IGains.WaitTimeout.selector);
        trading.cancelOrderAfterTimeout(order);
        vm.roll(block.number + diamond.getMarketOrdersTimeoutBlocks());
        vm.expectEmit(address(diamond));
        emit IGains.ChainlinkCallbackTimeout(IGains.Id(trader, order), ETH);
        vm.prank(trader);
        trading.cancelOrderAfterTimeout(order);
        assertEq(usdc.balanceOf(trader), 99_000e6);
        assertFalse(diamond.getPendingOrder(IGains.Id(trader, order)).isOpen);
        vm.expectRevert(IGains.PendingOrderNotOpen.selector);
        oracle.fulfill(trader, order, 2000 * uint64(P));
        vm.prank(trader);
        vm.expectRevert(IGains.NoOrder.selector);
        trading.cancelOrderAfterTimeout(order);
    }

    function test_DelegateActsForTrader() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        bytes memory call = abi.encodeCall(GainsTradingFacet.updateLeverage, (index, 5e3));
        vm.prank(delegate);
        vm.expectRevert(IGains.DelegateNotApproved.selector);
        diamond.delegatedTradingAction(trader, call);
        vm.prank(trader);
        diamond.setTradingDelegate(delegate);
        assertEq(diamond.getTradingDelegate(trader), delegate);
        vm.prank(delegate);
        diamond.delegatedTradingAction(trader, call);
        assertEq(usdc.balanceOf(trader), 99_000e6 - 994e6); // the trader pays
        assertEq(usdc.balanceOf(delegate), 0);
        oracle.fulfill(trader, lastOrder(), 2000 * uint64(P));
        assertEq(diamond.getTrade(trader, index).leverage, 5e3);
        // the delegate closes: the proceeds go to the trader
        vm.prank(delegate);
        diamond.delegatedTradingAction(trader, abi.encodeCall(GainsTradingFacet.closeTradeMarket, (index, 2000 * uint64(P))));
        oracle.fulfill(trader, lastOrder(), 2000 * uint64(P));
        assertEq(usdc.balanceOf(delegate), 0);
        assertGt(usdc.balanceOf(trader), 99_900e6);
    }

    function test_DelegateCannotRedelegate() public {
        vm.prank(trader);
        diamond.setTradingDelegate(delegate);
        vm.prank(delegate);
        vm.expectRevert(IGains.DelegatedActionNotAllowed.selector);
        diamond.delegatedTradingAction(trader, abi.encodeCall(GainsTestDiamond.setTradingDelegate, (delegate)));
        vm.prank(trader);
        diamond.removeTradingDelegate();
        vm.prank(delegate);
        vm.expectRevert(IGains.DelegateNotApproved.selector);
        diamond.delegatedTradingAction(trader, abi.encodeCall(GainsTestDiamond.removeTradingDelegate, ()));
    }

    function test_LiquidateOnlyPastLiquidationPrice() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.expectRevert(IGains.NotAuthorized.selector);
        oracle.liquidate(trader, index, 18217 * uint64(P) / 10);
        oracle.liquidate(trader, index, 18216 * uint64(P) / 10);
        assertFalse(diamond.getTrade(trader, index).isOpen);
    }

    function test_CloseAtLiquidationLiquidates() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.closeTradeMarket(index, 1821 * uint64(P));
        oracle.fulfill(trader, lastOrder(), 1821 * uint64(P));
        assertFalse(diamond.getTrade(trader, index).isOpen);
        assertEq(usdc.balanceOf(trader), 99_000e6);
    }

    function test_CallbacksOnlyFromOracle() public {
        IGains.AggregatorAnswer memory a;
        vm.expectRevert(IGains.NotAuthorized.selector);
        trading.closeTradeMarketCallback(a);
        vm.expectRevert(IGains.NotAuthorized.selector);
        trading.updateLeverageCallback(a);
        vm.expectRevert(IGains.NotAuthorized.selector);
        trading.liquidateTrade(trader, 0, 1);
        vm.expectRevert(GainsTestOracle.NotOwner.selector);
        vm.prank(trader);
        oracle.fulfill(trader, 0, 1);
    }

    function test_HoldingFeesAccrueAndMoveLiquidation() public {
        uint32 index = open(true, 1000e6, 10e3, 2000 * uint64(P));
        diamond.setHoldingRates(USDC, ETH, 100, 50, 2000 * uint64(P)); // 1e-8 % and 5e-9 % per second
        uint256 before = liqPrice(index, 2000 * uint64(P));
        vm.warp(block.timestamp + 1 days);
        IGains.TradeHoldingFees memory h = diamond.getTradePendingHoldingFeesCollateral(trader, index, 2000 * uint64(P));
        // 9940 USDC * 86400 s * 1e-10 (borrowing), * 5e-11 (funding)
        assertEq(h.borrowingFeeCollateral, 85_881);
        assertEq(h.fundingFeeCollateral, 42_940);
        assertEq(h.totalFeeCollateral, 128_821);
        assertGt(liqPrice(index, 2000 * uint64(P)), before);
    }

    function test_OpenCancelledPastSlippageRefunds() public {
        IGains.Trade memory t;
        t.pairIndex = ETH;
        t.collateralIndex = USDC;
        t.long = true;
        t.leverage = 10e3;
        t.collateralAmount = 1000e6;
        t.openPrice = 2000 * uint64(P);
        vm.prank(trader);
        trading.openTrade(t, 1000, address(0));
        oracle.fulfill(trader, 0, 2030 * uint64(P));
        assertEq(usdc.balanceOf(trader), 100_000e6);
        assertEq(diamond.getTrades(trader).length, 0);
    }

    function test_AdminChecks() public {
        vm.prank(trader);
        vm.expectRevert(IGains.NotAuthorized.selector);
        diamond.updateMarketOrdersTimeoutBlocks(5);
        vm.expectRevert(IGains.InvalidCollateralIndex.selector);
        diamond.getCollateralPriceUsd(9);
        vm.expectRevert(IGains.PairNotListed.selector);
        diamond.pairs(3);
        assertEq(diamond.getCollateralsCount(), 1);
        assertEq(diamond.getCollaterals()[0].precision, 1e6);
        assertEq(diamond.pairsCount(), 1);
        assertEq(diamond.pairTotalPositionSizeFeeP(0), 6e8);
        assertEq(diamond.pairSpreadP(trader, 0), 4e8);
        assertEq(diamond.getPairCounterTradeFeeRateMultiplier(0), 1000);
    }

    // --- fuzz -------------------------------------------------------------------------------------

    /// A trade is liquidatable exactly from its liquidation price on: the oracle's liquidation
    /// goes through there and is refused one tick before.
    function testFuzz_LiquidationBoundary(bool long, uint256 collateral, uint256 leverage, uint256 price) public {
        collateral = bound(collateral, 20e6, 50_000e6);
        leverage = bound(leverage, 2e3, 150e3);
        price = bound(price, 1 * P, 100_000 * P);
        uint32 index = open(long, uint120(collateral), uint24(leverage), uint64(price));
        uint256 liq = liqPrice(index, uint64(price));
        vm.assume(liq > 1 && liq < type(uint64).max - 1);
        uint256 safe = long ? liq + 1 : liq - 1;
        // fees do not move with the price here (no holding rates): the price is only the trigger
        assertEq(liqPrice(index, uint64(safe)), liq);
        vm.expectRevert(IGains.NotAuthorized.selector);
        oracle.liquidate(trader, index, uint64(safe));
        oracle.liquidate(trader, index, uint64(liq));
        assertFalse(diamond.getTrade(trader, index).isOpen);
    }

    /// Lowering the leverage at the same size moves the liquidation price away from the price.
    function testFuzz_LowerLeverageMovesLiquidationAway(bool long, uint256 leverage, uint256 lower) public {
        leverage = bound(leverage, 4e3, 150e3);
        lower = bound(lower, 2e3, leverage - 1e3);
        uint64 price = 2000 * uint64(P);
        uint32 index = open(long, 1000e6, uint24(leverage), price);
        uint256 before = liqPrice(index, price);
        vm.prank(trader);
        trading.updateLeverage(index, uint24(lower));
        oracle.fulfill(trader, lastOrder(), price);
        uint256 afterwards = liqPrice(index, price);
        if (long) assertLe(afterwards, before);
        else assertGe(afterwards, before);
        IGains.Trade memory t = diamond.getTrade(trader, index);
        uint256 sizeBefore = (uint256(1000e6) - (1000e6 * leverage / 1e3) * 6e8 / 1e12) * leverage;
        assertApproxEqAbs(uint256(t.collateralAmount) * lower, sizeBefore, lower); // same size
    }

    /// The threshold stays between the end and start thresholds and falls with leverage.
    function testFuzz_ThresholdMonotone(uint256 a, uint256 b) public {
        a = bound(a, 2e3, 150e3);
        b = bound(b, a, 150e3);
        uint32 i = open(true, 1000e6, uint24(a), 2000 * uint64(P));
        uint32 j = open(true, 1000e6, uint24(b), 2000 * uint64(P));
        // higher leverage sits closer to the price
        uint256 di = 2000 * P - liqPrice(i, 2000 * uint64(P));
        uint256 dj = 2000 * P - liqPrice(j, 2000 * uint64(P));
        assertGe(di, dj);
    }

    /// Collateral is conserved: what the trader paid in equals what the trader and the contract
    /// hold after a partial decrease and a close at arbitrary prices.
    function testFuzz_Conservation(bool long, uint256 p1, uint256 p2, uint256 cut) public {
        p1 = bound(p1, 1900 * P, 2100 * P);
        p2 = bound(p2, 1900 * P, 2100 * P);
        cut = bound(cut, 1e3, 8e3);
        uint256 total = usdc.balanceOf(trader) + usdc.balanceOf(address(diamond));
        uint32 index = open(long, 1000e6, 10e3, 2000 * uint64(P));
        vm.prank(trader);
        trading.decreasePositionSize(index, 0, uint24(cut), uint64(p1));
        oracle.fulfill(trader, lastOrder(), uint64(p1));
        if (diamond.getTrade(trader, index).isOpen) {
            vm.prank(trader);
            trading.closeTradeMarket(index, uint64(p2));
            oracle.fulfill(trader, lastOrder(), uint64(p2));
        }
        assertEq(usdc.balanceOf(trader) + usdc.balanceOf(address(diamond)), total);
        assertFalse(diamond.getTrade(trader, index).isOpen);
    }
}
