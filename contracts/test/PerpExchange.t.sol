// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {BaseTest} from "./Base.t.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpLens} from "../src/PerpLens.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";
import {MarketParams, MarketState, Position} from "../src/PerpTypes.sol";

/// A token whose transfers return false.
contract FalseToken {
    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }

    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }
}

/// A feed with 19 decimals (refused by addMarket).
contract WideFeed {
    function decimals() external pure returns (uint8) {
        return 19;
    }
}

contract PerpExchangeAdminTest is BaseTest {
    event MarketAdded(uint256 indexed marketId, address indexed feed, MarketParams params);
    event MarketUpdated(uint256 indexed marketId, MarketParams params);

    function test_Constructor() public {
        assertEq(address(ex.collateralToken()), address(usdc));
        assertEq(ex.owner(), address(this));
        vm.expectRevert(PerpExchange.ZeroAddress.selector);
        new PerpExchange(IERC20(address(0)));
    }

    function test_AddMarket() public {
        MarketParams memory p = defaultParams();
        vm.expectEmit(address(ex));
        emit MarketAdded(1, address(feed), p);
        assertEq(ex.addMarket(p), 1);
        assertEq(ex.marketCount(), 2);
        assertEq(ex.marketParams(1).initialMarginRate, p.initialMarginRate);
        assertEq(ex.marketState(1).lastFundingTime, block.timestamp);
    }

    function test_RevertWhen_AddMarketNotOwner() public {
        MarketParams memory p = defaultParams();
        vm.prank(alice);
        vm.expectRevert(PerpExchange.NotOwner.selector);
        ex.addMarket(p);
    }

    function test_RevertWhen_InvalidParams() public {
        MarketParams[] memory bad = new MarketParams[](11);
        for (uint256 i = 0; i < bad.length; ++i) {
            bad[i] = defaultParams();
        }
        bad[0].feed = address(0);
        bad[1].maxStaleness = 0;
        bad[2].maintenanceMarginRate = 0;
        bad[3].maintenanceMarginRate = bad[3].initialMarginRate;
        bad[4].initialMarginRate = 1e18 + 1;
        bad[5].openFeeRate = 0.1e18 + 1;
        bad[6].closeFeeRate = 0.1e18 + 1;
        bad[7].liquidationFeeRate = 0.1e18 + 1;
        bad[8].maxFundingRate = 1e14 + 1;
        bad[9].maxImpactRate = 0.5e18 + 1;
        bad[10].feed = address(new WideFeed());
        for (uint256 i = 0; i < bad.length; ++i) {
            vm.expectRevert(PerpExchange.InvalidMarketParams.selector);
            ex.addMarket(bad[i]);
        }
    }

    function test_RevertWhen_TooManyMarkets() public {
        MarketParams memory p = defaultParams();
        for (uint256 i = 1; i < ex.MAX_MARKETS(); ++i) {
            ex.addMarket(p);
        }
        vm.expectRevert(PerpExchange.TooManyMarkets.selector);
        ex.addMarket(p);
    }

    function test_SetMarketParams() public {
        open(alice, true, 1000e6, 1e18);
        skip(100);
        MarketParams memory p = defaultParams();
        p.maxLongOI = 1e18;
        vm.expectEmit(address(ex));
        emit MarketUpdated(ETH, p);
        ex.setMarketParams(ETH, p);
        assertEq(ex.marketParams(ETH).maxLongOI, 1e18);
        assertEq(ex.marketState(ETH).lastFundingTime, block.timestamp, "funding accrued first");
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.OpenInterestCap.selector, 2e18, 1e18));
        open(alice, true, 1000e6, 1e18);
    }

    function test_RevertWhen_SetMarketParams() public {
        MarketParams memory p = defaultParams();
        vm.prank(alice);
        vm.expectRevert(PerpExchange.NotOwner.selector);
        ex.setMarketParams(ETH, p);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.UnknownMarket.selector, 5));
        ex.setMarketParams(5, p);
        p.maxStaleness = 0;
        vm.expectRevert(PerpExchange.InvalidMarketParams.selector);
        ex.setMarketParams(ETH, p);
    }

    function test_TransferOwnership() public {
        vm.expectRevert(PerpExchange.ZeroAddress.selector);
        ex.transferOwnership(address(0));
        ex.transferOwnership(alice);
        assertEq(ex.owner(), alice);
        vm.expectRevert(PerpExchange.NotOwner.selector);
        ex.transferOwnership(bob);
    }

    function test_GetPrice() public {
        assertEq(ex.getPrice(ETH), 2000e18);
        skip(3600);
        assertEq(ex.getPrice(ETH), 2000e18, "at max staleness still fresh");
        skip(1);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.StalePrice.selector, ETH, block.timestamp - 3601));
        ex.getPrice(ETH);
        setPrice(0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidPrice.selector, ETH, 0));
        ex.getPrice(ETH);
        setPrice(-1);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidPrice.selector, ETH, -1));
        ex.getPrice(ETH);
        int256 huge = int256(uint256(type(uint128).max) / 1e10 + 1);
        setPrice(huge);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidPrice.selector, ETH, huge));
        ex.getPrice(ETH);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.UnknownMarket.selector, 1));
        ex.getPrice(1);
    }
}

contract PerpExchangePoolTest is BaseTest {
    event Deposit(address indexed lp, uint256 amount, uint256 shares);
    event Withdraw(address indexed lp, uint256 shares, uint256 amount);

    function test_DepositWithdraw() public {
        assertEq(ex.lpShares(lp), POOL * 1e12);
        assertEq(ex.totalShares(), POOL * 1e12);
        vm.expectEmit(address(ex));
        emit Deposit(alice, 100e6, 100e18);
        vm.prank(alice);
        assertEq(ex.deposit(100e6), 100e18);
        vm.expectEmit(address(ex));
        emit Withdraw(alice, 100e18, 100e6);
        vm.prank(alice);
        assertEq(ex.withdraw(100e18), 100e6);
        assertEq(usdc.balanceOf(alice), 1_000_000e6);
        assertEq(ex.poolAmount(), POOL);
    }

    function test_SharesTrackPoolValue() public {
        open(alice, true, 1000e6, 1e18); // 2 USDC fee to the pool
        vm.prank(bob);
        uint256 shares = ex.deposit(500_001e6);
        assertApproxEqAbs(shares, POOL * 1e12 / 2, 1e12);
    }

    function test_RevertWhen_Withdraw() public {
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.deposit(0);
        vm.prank(lp);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidShares.selector, 0));
        ex.withdraw(0);
        vm.prank(lp);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidShares.selector, POOL * 1e12 + 1));
        ex.withdraw(POOL * 1e12 + 1);
        open(alice, true, 30_000e6, 100e18); // reserves 200,000
        assertEq(ex.reservedAmount(), 200_000e6);
        vm.prank(lp);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpExchange.InsufficientLiquidity.selector, POOL + 200e6, POOL + 200e6 + 200_000e6 - 1
            )
        );
        ex.withdraw(POOL * 1e12);
        vm.prank(lp);
        ex.withdraw(POOL * 1e12 / 2);
    }

    function test_RevertWhen_DepositMintsNoShares() public {
        PerpExchange fresh = new PerpExchange(IERC20(address(usdc)));
        MarketParams memory p = defaultParams();
        p.reserveFactor = 0;
        p.openFeeRate = 0.1e18;
        p.maxLongOI = type(uint128).max;
        fresh.addMarket(p);
        usdc.mint(alice, 10_000_000e6);
        vm.startPrank(alice);
        usdc.approve(address(fresh), type(uint256).max);
        fresh.openPosition(ETH, true, 5_000_000e6, 10_000e18); // 2,000,000 fee into an empty pool
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidShares.selector, 0));
        fresh.deposit(1);
        vm.stopPrank();
    }

    function test_RevertWhen_TransferFails() public {
        PerpExchange bad = new PerpExchange(IERC20(address(new FalseToken())));
        vm.expectRevert(PerpExchange.TransferFailed.selector);
        bad.deposit(1);
    }
}

contract PerpExchangeIsolatedTest is BaseTest {
    event PositionIncreased(
        bytes32 indexed key,
        address indexed account,
        uint256 indexed marketId,
        bool isLong,
        bool isCross,
        uint256 sizeDelta,
        uint256 collateralDelta,
        uint256 executionPrice,
        uint256 fee,
        int256 fundingSettled
    );
    event PositionDecreased(
        bytes32 indexed key,
        address indexed account,
        uint256 indexed marketId,
        uint256 sizeDelta,
        uint256 executionPrice,
        int256 realizedPnl,
        uint256 fee,
        int256 fundingSettled,
        uint256 payout
    );
    event MarginAdded(bytes32 indexed key, address indexed account, uint256 amount, int256 fundingSettled);
    event MarginRemoved(bytes32 indexed key, address indexed account, uint256 amount, int256 fundingSettled);
    event PositionLiquidated(
        bytes32 indexed key,
        address indexed account,
        address indexed liquidator,
        uint256 size,
        uint256 markPrice,
        int256 realizedPnl,
        int256 fundingSettled,
        uint256 closeFee
    );
    event LiquidationSettled(
        address indexed account, address indexed liquidator, bool isCross, uint256 liquidatorFee, uint256 toPool
    );
    event FundingUpdated(uint256 indexed marketId, int256 rate, int256 longFundingIndex, int256 shortFundingIndex);

    bytes32 internal aliceLong;

    function setUp() public override {
        super.setUp();
        aliceLong = ex.positionKey(alice, ETH, true);
    }

    function test_PositionKey() public view {
        assertEq(aliceLong, keccak256(abi.encode(alice, ETH, true)));
        assertEq(ex.crossPositionKey(alice, ETH, true), keccak256(abi.encode(alice, ETH, true, true)));
    }

    function test_Open() public {
        vm.expectEmit(address(ex));
        emit PositionIncreased(aliceLong, alice, ETH, true, false, 1e18, 250e6, 2000e18, 2e6, 0);
        open(alice, true, 250e6, 1e18);
        Position memory p = pos(alice, true);
        assertEq(p.account, alice);
        assertEq(p.size, 1e18);
        assertEq(p.collateral, 248e6);
        assertEq(p.entryPrice, 2000e18);
        assertEq(p.lastUpdated, block.timestamp);
        assertFalse(p.isCross);
        assertEq(ex.poolAmount(), POOL + 2e6);
        assertEq(ex.marketState(ETH).longOI, 1e18);
        PerpLens.PositionView memory v = view_(alice, true);
        assertEq(v.equity, 246e6); // 248 - close fee 2
        assertEq(v.maintenanceMargin, 100e6);
        assertEq(v.initialMargin, 200e6);
        assertFalse(v.liquidatable);
        assertConserved(accounts2());
    }

    function test_IncreaseAveragesEntry() public {
        open(alice, true, 500e6, 1e18);
        setPrice(2200e8);
        open(alice, true, 0, 1e18);
        Position memory p = pos(alice, true);
        assertEq(p.entryPrice, 2100e18);
        assertEq(p.size, 2e18);
        assertEq(p.collateral, 498e6 - 2.2e6);
        open(bob, false, 1000e6, 1e18);
        setPrice(2100e8);
        open(bob, false, 0, 2e18);
        assertEq(pos(bob, false).entryPrice, 2133333333333333333333); // (2200 + 4200) / 3, rounded down for a short
    }

    function test_RevertWhen_OpenInvalid() public {
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.openPosition(ETH, true, 100e6, 0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.UnknownMarket.selector, 3));
        ex.openPosition(3, true, 100e6, 1e18);
        // equity 198 - 2 = 196 < initial margin 200
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, 196e6, 200e6));
        ex.openPosition(ETH, true, 200e6, 1e18);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.OpenInterestCap.selector, 1001e18, 1000e18));
        ex.openPosition(ETH, true, 1_000_000e6, 1001e18);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.OpenInterestCap.selector, 1001e18, 1000e18));
        ex.openPosition(ETH, false, 1_000_000e6, 1001e18);
        vm.stopPrank();
        skip(3601);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.StalePrice.selector, ETH, block.timestamp - 3601));
        open(alice, true, 250e6, 1e18);
    }

    function test_RevertWhen_OpenExceedsReserve() public {
        MarketParams memory p = defaultParams();
        p.reserveFactor = 2e18;
        ex.setMarketParams(ETH, p);
        open(alice, true, 100_000e6, 249e18); // reserve 996,000
        vm.expectRevert(
            abi.encodeWithSelector(PerpExchange.InsufficientLiquidity.selector, POOL + 498e6 + 4e6, 1_004_000e6)
        );
        open(bob, false, 1000e6, 2e18);
    }

    function test_ClosePositionWithProfit() public {
        open(alice, true, 250e6, 1e18);
        setPrice(2100e8);
        uint256 before = usdc.balanceOf(alice);
        vm.expectEmit(address(ex));
        emit PositionDecreased(aliceLong, alice, ETH, 1e18, 2100e18, 100e6, 2.1e6, 0, 345.9e6);
        vm.prank(alice);
        ex.closePosition(ETH, true);
        assertEq(usdc.balanceOf(alice) - before, 345.9e6);
        assertEq(ex.poolAmount(), POOL + 2e6 - 97.9e6);
        assertEq(pos(alice, true).size, 0);
        assertEq(ex.isolatedPositionKeys(alice).length, 0);
        assertEq(ex.marketState(ETH).longOI, 0);
        assertEq(ex.marketState(ETH).entryNotional, 0);
        assertConserved(accounts2());
    }

    function test_CloseWithBadDebtPaysNothing() public {
        open(alice, true, 250e6, 1e18);
        setPrice(1500e8);
        uint256 before = usdc.balanceOf(alice);
        vm.prank(alice);
        ex.closePosition(ETH, true);
        assertEq(usdc.balanceOf(alice), before);
        assertEq(ex.poolAmount(), POOL + 250e6);
        assertConserved(accounts2());
    }

    function test_ProfitCappedByPool() public {
        PerpExchange fresh = new PerpExchange(IERC20(address(usdc)));
        MarketParams memory p = defaultParams();
        p.reserveFactor = 0;
        fresh.addMarket(p);
        vm.startPrank(alice);
        usdc.approve(address(fresh), type(uint256).max);
        fresh.deposit(10e6);
        fresh.openPosition(ETH, true, 250e6, 1e18);
        vm.stopPrank();
        setPrice(3000e8); // profit 1000 > pool 12
        uint256 before = usdc.balanceOf(alice);
        vm.prank(alice);
        fresh.closePosition(ETH, true);
        assertEq(usdc.balanceOf(alice) - before, 248e6 + 12e6);
        assertEq(fresh.poolAmount(), 0);
        assertEq(usdc.balanceOf(address(fresh)), 0);
    }

    function test_DecreasePartialPaysProfit() public {
        open(alice, true, 500e6, 2e18);
        setPrice(2100e8);
        uint256 before = usdc.balanceOf(alice);
        vm.prank(alice);
        ex.decreasePosition(ETH, true, 1e18);
        assertEq(usdc.balanceOf(alice) - before, 97.9e6); // pnl 100 - fee 2.1
        Position memory p = pos(alice, true);
        assertEq(p.size, 1e18);
        assertEq(p.collateral, 496e6);
        assertEq(p.entryPrice, 2000e18);
        assertConserved(accounts2());
    }

    function test_DecreasePartialTakesLoss() public {
        open(alice, true, 500e6, 2e18);
        setPrice(1950e8);
        vm.prank(alice);
        ex.decreasePosition(ETH, true, 1e18);
        assertEq(pos(alice, true).collateral, 496e6 - 50e6 - 1.95e6);
        assertConserved(accounts2());
    }

    function test_RevertWhen_DecreaseInvalid() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, aliceLong));
        ex.decreasePosition(ETH, true, 1e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, aliceLong));
        ex.closePosition(ETH, true);
        open(alice, true, 250e6, 2e18 / 2);
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.decreasePosition(ETH, true, 0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.SizeExceedsPosition.selector, 1e18, 1e18 + 1));
        ex.decreasePosition(ETH, true, 1e18 + 1);
        vm.stopPrank();
        setPrice(1900e8); // equity 248 - 100 - 1.9 = 146.1; half: collateral 248 - 50 - 0.95, IM 95
        vm.prank(alice);
        ex.decreasePosition(ETH, true, 0.5e18);
        // 0.5 left at 1750: equity 197.05 - 125 - 0.875 = 71.175; reducing by 0.05 keeps that equity
        // (loss and fee move from pnl to collateral) against an initial margin of 0.45 * 1750 * 10%
        setPrice(1750e8);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, 71.175e6, 78.75e6));
        ex.decreasePosition(ETH, true, 0.05e18);
        vm.prank(alice);
        ex.decreasePosition(ETH, true, 0.1e18); // 0.4 left: initial margin 70
    }

    function test_AddAndRemoveMargin() public {
        open(alice, true, 250e6, 1e18);
        vm.expectEmit(address(ex));
        emit MarginAdded(aliceLong, alice, 100e6, 0);
        vm.prank(alice);
        ex.addMargin(ETH, true, 100e6);
        assertEq(pos(alice, true).collateral, 348e6);
        vm.expectEmit(address(ex));
        emit MarginRemoved(aliceLong, alice, 146e6, 0);
        vm.prank(alice);
        ex.removeMargin(ETH, true, 146e6); // equity 202 - 2 = 200 == initial margin: allowed
        assertEq(pos(alice, true).collateral, 202e6);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, 200e6 - 1, 200e6));
        ex.removeMargin(ETH, true, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientCollateral.selector, 202e6, 203e6));
        ex.removeMargin(ETH, true, 203e6);
        assertConserved(accounts2());
    }

    function test_RevertWhen_MarginInvalid() public {
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.addMargin(ETH, true, 0);
        vm.expectRevert(PerpExchange.ZeroAmount.selector);
        ex.removeMargin(ETH, true, 0);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, aliceLong));
        ex.addMargin(ETH, true, 1);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, aliceLong));
        ex.removeMargin(ETH, true, 1);
        vm.stopPrank();
    }

    function test_LiquidationBoundary() public {
        open(alice, true, 250e6, 1e18);
        setPrice(1847e8); // equity 248 - 153 - 1.847 = 93.153 >= 92.35
        assertFalse(ex.isLiquidatable(aliceLong));
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NotLiquidatable.selector, 93.153e6, 92.35e6));
        ex.liquidate(alice, ETH, true);
        setPrice(1846e8); // equity 92.154 < 92.3
        assertTrue(ex.isLiquidatable(aliceLong));
        assertTrue(view_(alice, true).liquidatable);
        vm.expectEmit(address(ex));
        emit PositionLiquidated(aliceLong, alice, keeper, 1e18, 1846e18, -154e6, 0, 1.846e6);
        vm.expectEmit(address(ex));
        emit LiquidationSettled(alice, keeper, false, 9.23e6, 92.154e6 - 9.23e6);
        vm.prank(keeper);
        assertEq(ex.liquidate(alice, ETH, true), 9.23e6);
        assertEq(usdc.balanceOf(keeper), 9.23e6);
        assertEq(ex.poolAmount(), POOL + 2e6 + 248e6 - 9.23e6);
        assertEq(pos(alice, true).size, 0);
        assertFalse(ex.isLiquidatable(aliceLong));
        assertConserved(accounts2());
    }

    function test_LiquidationWithBadDebt() public {
        open(alice, true, 250e6, 1e18);
        setPrice(1500e8);
        vm.prank(keeper);
        assertEq(ex.liquidate(alice, ETH, true), 0);
        assertEq(ex.poolAmount(), POOL + 250e6);
        assertConserved(accounts2());
    }

    function test_RevertWhen_LiquidateNoPosition() public {
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NoPosition.selector, aliceLong));
        ex.liquidate(alice, ETH, true);
    }

    function test_FundingAccruesAndSettles() public {
        open(alice, true, 500e6, 1e18);
        skip(1000);
        // rate = fundingFactor * 1 / 1 = 1e11 per second: 1e-7 * 2000 * 1000 = 0.2 USD per ETH
        assertEq(view_(alice, true).pendingFunding, 0.2e6);
        assertEq(lens.getMarket(ETH).longFundingIndex, 0.2e18);
        vm.expectEmit(address(ex));
        emit FundingUpdated(ETH, 1e11, 0.2e18, -0.2e18);
        ex.updateFunding(ETH);
        assertEq(ex.marketState(ETH).longFundingIndex, 0.2e18);
        assertEq(ex.marketState(ETH).shortFundingIndex, -0.2e18);
        uint256 poolBefore = ex.poolAmount();
        vm.prank(alice);
        ex.addMargin(ETH, true, 1e6);
        assertEq(pos(alice, true).collateral, 498e6 + 1e6 - 0.2e6);
        assertEq(ex.poolAmount(), poolBefore + 0.2e6);
        assertEq(view_(alice, true).pendingFunding, 0);
        assertConserved(accounts2());
    }

    function test_FundingPaidToShorts() public {
        open(alice, true, 1000e6, 2e18);
        open(bob, false, 1000e6, 1e18);
        // rate = 1e11 * (2 - 1) / 3
        int256 rate = int256(1e11) / 3;
        assertEq(lens.getMarket(ETH).fundingRate, rate);
        skip(3000);
        int256 perEth = rate * 2000 * 3000;
        assertEq(view_(alice, true).pendingFunding, (2 * perEth + 1e12 - 1) / 1e12);
        assertEq(view_(bob, false).pendingFunding, -perEth / 1e12);
        uint256 before = pos(bob, false).collateral;
        vm.prank(bob);
        ex.addMargin(ETH, false, 1);
        assertEq(pos(bob, false).collateral, before + 1 + uint256(perEth / 1e12));
        assertConserved(accounts2());
    }

    function test_FundingRateCapped() public {
        MarketParams memory p = defaultParams();
        p.fundingFactor = 1e12;
        ex.setMarketParams(ETH, p);
        open(alice, true, 1000e6, 1e18);
        assertEq(lens.getMarket(ETH).fundingRate, 1e11);
        open(bob, false, 10_000e6, 3e18);
        assertEq(lens.getMarket(ETH).fundingRate, -1e11);
    }

    function test_UpdateFundingWithoutElapsedTimeIsNoop() public {
        ex.updateFunding(ETH);
        vm.recordLogs();
        ex.updateFunding(ETH);
        assertEq(vm.getRecordedLogs().length, 0);
    }

    function test_LensViews() public {
        open(alice, true, 250e6, 1e18);
        open(alice, false, 250e6, 1e18);
        PerpLens.PositionView[] memory all = lens.getAccountPositions(alice);
        assertEq(all.length, 2);
        assertEq(all[0].key, aliceLong);
        assertEq(all[0].markPrice, 2000e18);
        assertTrue(all[0].priceValid);
        PerpLens.PoolState memory s = lens.getPoolState();
        assertEq(s.totalLiquidity, POOL + 4e6);
        assertEq(s.totalShares, POOL * 1e12);
        assertEq(s.reserved, 4000e6);
        assertEq(s.markets[0].longOI, 1e18);
        assertEq(s.markets[0].shortOI, 1e18);
        assertEq(s.markets[0].fundingRate, 0);
        PerpLens.MarketView[] memory ms = lens.getMarkets();
        assertEq(ms.length, 1);
        assertEq(ms[0].price, 2000e18);
        bytes32[] memory keys = new bytes32[](2);
        keys[0] = aliceLong;
        keys[1] = ex.positionKey(bob, ETH, true);
        PerpLens.PositionView[] memory vs = lens.getPositions(keys);
        assertEq(vs[0].position.size, 1e18);
        assertEq(vs[1].position.size, 0);
        skip(3601); // stale feed: views do not revert
        PerpLens.PositionView memory v = view_(alice, true);
        assertFalse(v.priceValid);
        assertFalse(v.liquidatable);
        assertEq(v.position.size, 1e18);
        assertFalse(lens.getMarket(ETH).priceValid);
    }
}
