// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpLens} from "../src/PerpLens.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";
import {MarketParams, MarketState, Position} from "../src/PerpTypes.sol";

/// Shared fixture: USDC, an ETH/USD feed at 2000, the exchange with one market, the lens, and a
/// pool funded with 1,000,000 USDC.
abstract contract BaseTest is Test {
    TestUSDC internal usdc;
    PriceFeed internal feed;
    PerpExchange internal ex;
    PerpLens internal lens;

    address internal oracle = makeAddr("oracle");
    address internal lp = makeAddr("lp");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal keeper = makeAddr("keeper");

    uint256 internal constant ETH = 0;
    uint256 internal constant POOL = 1_000_000e6;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        usdc = new TestUSDC();
        feed = new PriceFeed("ETH / USD", oracle);
        setPrice(2000e8);
        ex = new PerpExchange(IERC20(address(usdc)));
        lens = new PerpLens(ex);
        ex.addMarket(defaultParams());
        fund(lp, POOL);
        vm.prank(lp);
        ex.deposit(POOL);
        fund(alice, 1_000_000e6);
        fund(bob, 1_000_000e6);
    }

    function defaultParams() internal view returns (MarketParams memory) {
        return MarketParams({
            feed: address(feed),
            maxStaleness: 3600,
            initialMarginRate: 0.1e18,
            maintenanceMarginRate: 0.05e18,
            openFeeRate: 0.001e18,
            closeFeeRate: 0.001e18,
            liquidationFeeRate: 0.005e18,
            fundingFactor: 1e11,
            maxFundingRate: 1e11,
            reserveFactor: 1e18,
            impactFactor: 0,
            maxImpactRate: 0.05e18,
            maxLongOI: 1000e18,
            maxShortOI: 1000e18
        });
    }

    function setPrice(int256 answer) internal {
        vm.prank(oracle);
        feed.setAnswer(answer);
    }

    function fund(address who, uint256 amount) internal {
        usdc.mint(who, amount);
        vm.prank(who);
        usdc.approve(address(ex), type(uint256).max);
    }

    function open(address who, bool isLong, uint256 collateral, uint256 size) internal {
        vm.prank(who);
        ex.openPosition(ETH, isLong, collateral, size);
    }

    function pos(address who, bool isLong) internal view returns (Position memory) {
        return ex.positions(ex.positionKey(who, ETH, isLong));
    }

    function view_(address who, bool isLong) internal view returns (PerpLens.PositionView memory) {
        return lens.getPosition(ex.positionKey(who, ETH, isLong));
    }

    /// Tokens held by the exchange minus everything it owes: must be zero.
    function assertConserved(address[] memory accounts) internal view {
        uint256 owed = ex.poolAmount();
        for (uint256 i = 0; i < accounts.length; ++i) {
            owed += ex.crossBalance(accounts[i]);
            bytes32[] memory keys = ex.isolatedPositionKeys(accounts[i]);
            for (uint256 j = 0; j < keys.length; ++j) {
                owed += ex.positions(keys[j]).collateral;
            }
        }
        assertEq(usdc.balanceOf(address(ex)), owed, "token conservation");
    }

    function accounts2() internal view returns (address[] memory a) {
        a = new address[](2);
        a[0] = alice;
        a[1] = bob;
    }
}
