// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {GmxBase} from "./GmxBase.t.sol";
import {IGmx, GmxKeys} from "../../src/gmx/IGmx.sol";
import {GmxOrderHandler} from "../../src/gmx/GmxOrderHandler.sol";

contract GmxDeploymentTest is GmxBase {
    function test_OpenTopUpReduceClose() public {
        bytes32 pk = open(true, 10_000, 1_000e6, 2_000);
        IGmx.PositionProps memory p = reader.getPosition(address(ds), pk);
        assertEq(p.numbers.sizeInUsd, 10_000 * USD);
        assertEq(p.numbers.collateralAmount, 1_000e6);
        assertEq(p.numbers.sizeInTokens, uint256(10_000 * USD) / (2_000 * 1e12 + 5e11));

        // top-up: MarketIncrease with sizeDeltaUsd 0
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max), 500e6);
        assertTrue(ds.containsBytes32(GmxKeys.ORDER_LIST, key));
        uint256 keeperBefore = wnt.balanceOf(keeper);
        vm.prank(keeper);
        handler.executeOrder(key, prices(2_000));
        assertFalse(ds.containsBytes32(GmxKeys.ORDER_LIST, key));
        assertEq(reader.getPosition(address(ds), pk).numbers.collateralAmount, 1_500e6);
        assertGt(wnt.balanceOf(keeper), keeperBefore);

        // reduce half at 2,100: +~250 USD realized into collateral
        key = order(params(IGmx.OrderType.MarketDecrease, true, 5_000 * USD, 2_000 * 1e12), 0);
        vm.prank(keeper);
        handler.executeOrder(key, prices(2_100));
        p = reader.getPosition(address(ds), pk);
        assertEq(p.numbers.sizeInUsd, 5_000 * USD);
        assertGt(p.numbers.collateralAmount, 1_700e6);

        // close: the trader gets collateral plus pnl
        uint256 before = usdc.balanceOf(trader);
        key = order(params(IGmx.OrderType.MarketDecrease, true, 5_000 * USD, 0), 0);
        vm.prank(keeper);
        handler.executeOrder(key, prices(2_100));
        assertEq(reader.getPosition(address(ds), pk).numbers.sizeInUsd, 0);
        assertGt(usdc.balanceOf(trader) - before, 1_900e6);
        assertEq(reader.getAccountPositions(address(ds), trader, 0, 10).length, 0);
    }

    function test_AcceptablePriceMissedCancelsAndRefunds() public {
        open(false, 10_000, 1_000e6, 2_000);
        bytes32 key = order(params(IGmx.OrderType.MarketDecrease, false, 10_000 * USD, 1_900 * 1e12), 0);
        uint256 wntBefore = wnt.balanceOf(trader);
        vm.prank(keeper);
        handler.executeOrder(key, prices(2_000)); // a short buys back above 1,900: cancelled
        assertFalse(ds.containsBytes32(GmxKeys.ORDER_LIST, key));
        assertGt(wnt.balanceOf(trader), wntBefore);
        assertEq(reader.getAccountPositions(address(ds), trader, 0, 10).length, 1);
    }

    function test_UserCancelOnlyAfterExpiration() public {
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max), 100e6);
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.RequestNotYetCancellable.selector, 0, 300, "Order"));
        exchange.cancelOrder(key);
        vm.warp(block.timestamp + 300);
        uint256 before = usdc.balanceOf(trader);
        vm.prank(trader);
        exchange.cancelOrder(key);
        assertEq(usdc.balanceOf(trader) - before, 100e6);
        assertEq(reader.getAccountOrders(address(ds), trader, 0, 10).length, 0);
    }

    function test_InsufficientExecutionFeeReverts() public {
        IGmx.CreateOrderParams memory p = params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max);
        vm.txGasPrice(1 gwei); // the fee was priced at 0.1 gwei
        uint256 minFee = handler.estimateExecutionGasLimit(true) * 1 gwei;
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeWithSignature("sendWnt(address,uint256)", address(vault), p.numbers.executionFee);
        calls[1] = abi.encodeWithSignature(
            "createOrder(((address,address,address,address,address,address,address[]),(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256),uint8,uint8,bool,bool,bool,bytes32,bytes32[]))",
            p
        );
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.InsufficientExecutionFee.selector, minFee, p.numbers.executionFee));
        exchange.multicall{value: p.numbers.executionFee}(calls);
    }

    function test_MarketOrdersAreNotUpdatable() public {
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max), 100e6);
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.OrderNotUpdatable.selector, 2));
        exchange.updateOrder(key, 0, 0, 0, 0, 0, false);
    }

    function test_SendTokensNeedsTheRouterPluginRole() public {
        roles.revokeRole(address(exchange), GmxKeys.ROUTER_PLUGIN);
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.Unauthorized.selector, address(exchange), "ROUTER_PLUGIN"));
        exchange.sendTokens(address(usdc), address(vault), 1e6);
    }

    function test_OnlyOrderKeepersExecute() public {
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max), 100e6);
        vm.expectRevert(abi.encodeWithSelector(IGmx.Unauthorized.selector, address(this), "ORDER_KEEPER"));
        handler.executeOrder(key, prices(2_000));
    }

    function test_WntCollateralPaysFeeAndCollateralInOneSend() public {
        IGmx.CreateOrderParams memory p = params(IGmx.OrderType.MarketIncrease, true, 2_000 * USD, type(uint256).max);
        p.addresses.initialCollateralToken = address(wnt);
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeWithSignature("sendWnt(address,uint256)", address(vault), p.numbers.executionFee + 1 ether);
        calls[1] = abi.encodeWithSignature(
            "createOrder(((address,address,address,address,address,address,address[]),(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256),uint8,uint8,bool,bool,bool,bytes32,bytes32[]))",
            p
        );
        vm.prank(trader);
        bytes[] memory out = exchange.multicall{value: p.numbers.executionFee + 1 ether}(calls);
        bytes32 key = abi.decode(out[1], (bytes32));
        assertEq(reader.getOrder(address(ds), key).numbers.initialCollateralDeltaAmount, 1 ether);
        vm.prank(keeper);
        handler.executeOrder(key, prices(2_000));
        bytes32 pk = handler.positionKey(trader, MARKET, address(wnt), true);
        assertEq(reader.getPosition(address(ds), pk).numbers.collateralAmount, 1 ether);
    }

    function test_LiquidationViewFollowsGmxOrder() public {
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        IGmx.MarketProps memory m = reader.getMarket(address(ds), MARKET);
        (bool liq, string memory reason,) =
            reader.isPositionLiquidatable(address(ds), address(0), pk, m, prices(2_000), true, false);
        assertFalse(liq);
        assertEq(reason, "");
        (liq, reason,) = reader.isPositionLiquidatable(address(ds), address(0), pk, m, prices(1_980), true, false);
        assertTrue(liq);
        assertEq(reason, "min collateral for leverage");
        (liq, reason,) = reader.isPositionLiquidatable(address(ds), address(0), pk, m, prices(1_900), true, false);
        assertTrue(liq);
        assertEq(reason, "min collateral");
    }

    /// Opening and closing at one price returns the collateral less the spread, never more.
    function testFuzz_RoundTripNeverPaysMoreThanCollateral(
        uint256 sizeUsd,
        uint256 collateral,
        uint256 eth,
        bool isLong
    ) public {
        sizeUsd = bound(sizeUsd, 10, 50_000);
        // enough collateral for GMX's validatePosition at opening (1% of the size, the fee, the spread)
        collateral = bound(collateral, 10e6 + sizeUsd * 1e6 / 50, 50_000e6);
        eth = bound(eth, 100, 10_000);
        open(isLong, sizeUsd, collateral, eth);
        uint256 before = usdc.balanceOf(trader);
        bytes32 key =
            order(params(IGmx.OrderType.MarketDecrease, isLong, sizeUsd * USD, isLong ? 0 : type(uint256).max), 0);
        vm.prank(keeper);
        handler.executeOrder(key, prices(eth));
        uint256 back = usdc.balanceOf(trader) - before;
        assertLe(back, collateral);
        assertEq(reader.getAccountPositions(address(ds), trader, 0, 10).length, 0);
    }

    /// The DataStore's bytes32 sets keep membership and count through adds and removes.
    function testFuzz_DataStoreSets(bytes32[8] memory values, uint8 removeMask) public {
        bytes32 setKey = keccak256("set");
        uint256 distinct;
        for (uint256 i; i < values.length; ++i) {
            if (!ds.containsBytes32(setKey, values[i])) distinct++;
            ds.addBytes32(setKey, values[i]);
        }
        assertEq(ds.getBytes32Count(setKey), distinct);
        for (uint256 i; i < values.length; ++i) {
            if (removeMask & (1 << i) != 0) ds.removeBytes32(setKey, values[i]);
        }
        for (uint256 i; i < values.length; ++i) {
            bool removed;
            for (uint256 j; j < values.length; ++j) {
                if (values[j] == values[i] && removeMask & (1 << j) != 0) removed = true;
            }
            assertEq(ds.containsBytes32(setKey, values[i]), !removed);
        }
        bytes32[] memory all = ds.getBytes32ValuesAt(setKey, 0, 100);
        assertEq(all.length, ds.getBytes32Count(setKey));
    }
}
