// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {PriceFeed} from "../../src/PriceFeed.sol";
import {IGains} from "../../src/gains/IGains.sol";
import {GainsTestDiamond} from "../../src/gains/GainsTestDiamond.sol";
import {GainsTestOracle} from "../../src/gains/GainsTestOracle.sol";
import {GainsTradingFacet} from "../../src/gains/GainsTradingFacet.sol";

/// Shared fixture: the Gains test deployment with USDC as collateral 1 and ETH/USD as pair 0
/// (0.06% position size fee, 1.5 USD minimum position, 0.04% spread, liquidation threshold 90%
/// at 25x down to 80% at 100x, spread capped at 0.05%), leverage 2x..150x, and a trader with
/// 100,000 USDC approved to the diamond.
abstract contract GainsBase is Test {
    TestUSDC internal usdc;
    PriceFeed internal feed;
    GainsTestDiamond internal diamond;
    GainsTestOracle internal oracle;
    GainsTradingFacet internal trading; // the diamond, seen through its trading facet's ABI
    uint8 internal constant USDC = 1;
    uint16 internal constant ETH = 0;
    uint256 internal constant P = 1e10; // price and percent precision
    address internal trader = makeAddr("trader");
    address internal delegate = makeAddr("delegate");

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        vm.roll(100);
        usdc = new TestUSDC();
        feed = new PriceFeed("ETH / USD", address(this));
        feed.setAnswer(2000e8);
        oracle = new GainsTestOracle();
        diamond = new GainsTestDiamond(address(oracle), address(new GainsTradingFacet()));
        trading = GainsTradingFacet(address(diamond));
        oracle.setDiamond(diamond);
        diamond.listCollateral(address(usdc), 6, 1e8);
        diamond.listPair(pair(), feeGroup(), liqParams(), 2e3, 150e3);
        usdc.mint(trader, 100_000e6);
        usdc.mint(address(diamond), 1_000_000e6); // pays profits
        vm.prank(trader);
        usdc.approve(address(diamond), type(uint256).max);
    }

    function pair() internal view returns (IGains.Pair memory p) {
        p.from = "ETH";
        p.to = "USD";
        p.feed = IGains.Feed(address(feed), address(0), IGains.FeedCalculation.DEFAULT, 0);
        p.spreadP = 4e8; // 0.04%
    }

    function feeGroup() internal pure returns (IGains.FeeGroup memory f) {
        f.totalPositionSizeFeeP = 6e8; // 0.06%
        f.minPositionSizeUsd = 1500; // 1.5 USD (1e3)
    }

    function liqParams() internal pure returns (IGains.GroupLiquidationParams memory l) {
        l.maxLiqSpreadP = 5e8; // 0.05%
        l.startLiqThresholdP = 90 * 1e10;
        l.endLiqThresholdP = 80 * 1e10;
        l.startLeverage = 25e3;
        l.endLeverage = 100e3;
    }

    /// Opens a market trade of `trader` at `price` USD (1e10) and returns its index.
    function open(bool long, uint120 collateral, uint24 leverage, uint64 price) internal returns (uint32 index) {
        IGains.Trade memory t;
        t.pairIndex = ETH;
        t.collateralIndex = USDC;
        t.long = long;
        t.leverage = leverage;
        t.collateralAmount = collateral;
        t.openPrice = price;
        vm.prank(trader);
        trading.openTrade(t, 1000, address(0));
        IGains.PendingOrder[] memory pending = diamond.getPendingOrders(trader);
        uint32 order = pending[pending.length - 1].index;
        oracle.fulfill(trader, order, price);
        IGains.Trade[] memory trades = diamond.getTrades(trader);
        index = trades[trades.length - 1].index;
    }

    function lastOrder() internal view returns (uint32) {
        IGains.PendingOrder[] memory pending = diamond.getPendingOrders(trader);
        return pending[pending.length - 1].index;
    }

    function liqPrice(uint32 index, uint64 price) internal view returns (uint256) {
        IGains.Trade memory t = diamond.getTrade(trader, index);
        return diamond.getTradeLiquidationPrice(
            IGains.LiqPriceInput({
                collateralIndex: t.collateralIndex,
                trader: trader,
                pairIndex: t.pairIndex,
                index: index,
                openPrice: t.openPrice,
                long: t.long,
                collateral: t.collateralAmount,
                leverage: t.leverage,
                additionalFeeCollateral: 0,
                liquidationParams: diamond.getTradeLiquidationParams(trader, index),
                currentPairPrice: price,
                isCounterTrade: t.isCounterTrade,
                partialCloseMultiplier: 1e18,
                beforeOpened: false
            })
        );
    }
}
