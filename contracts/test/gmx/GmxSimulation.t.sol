// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Vm} from "forge-std/Vm.sol";
import {GmxBase} from "./GmxBase.t.sol";
import {IGmx, GmxKeys} from "../../src/gmx/IGmx.sol";
import {GmxBaseRouter} from "../../src/gmx/GmxBaseRouter.sol";
import {GmxExchangeRouter} from "../../src/gmx/GmxExchangeRouter.sol";
import {GmxEventEmitter} from "../../src/gmx/GmxStores.sol";

/// ExchangeRouter.multicall([sendWnt, sendTokens?, createOrder, simulateExecuteLatestOrder]):
/// the creation and the execution of an order in one call that always reverts, with
/// EndOfOracleSimulation when the order would execute and with the error that would cancel it
/// otherwise; and the keeper's executeOrder cancelling with that same error.
contract GmxSimulationTest is GmxBase {
    /// SimulatePricesParams at `eth` (ETH = WNT, the index and long token; USDC at 1), stamped `at`.
    function simPrices(uint256 eth, uint256 at) internal view returns (IGmx.SimulatePricesParams memory s) {
        IGmx.MarketPrices memory p = prices(eth);
        s.primaryTokens = new address[](2);
        s.primaryTokens[0] = address(wnt);
        s.primaryTokens[1] = address(usdc);
        s.primaryPrices = new IGmx.PriceProps[](2);
        s.primaryPrices[0] = p.indexTokenPrice;
        s.primaryPrices[1] = p.shortTokenPrice;
        s.minTimestamp = at;
        s.maxTimestamp = at;
    }

    /// The trader's multicall with the simulation appended, as an eth_call would run it: the
    /// revert data it ends with (it never succeeds).
    function simulate(IGmx.CreateOrderParams memory p, uint256 collateral, IGmx.SimulatePricesParams memory s)
        internal
        returns (bytes memory)
    {
        bytes[] memory calls = new bytes[](collateral > 0 ? 4 : 3);
        calls[0] = abi.encodeCall(GmxBaseRouter.sendWnt, (address(vault), p.numbers.executionFee));
        if (collateral > 0) {
            calls[1] = abi.encodeCall(GmxBaseRouter.sendTokens, (address(usdc), address(vault), collateral));
        }
        calls[calls.length - 2] = abi.encodeCall(GmxExchangeRouter.createOrder, (p));
        calls[calls.length - 1] = abi.encodeCall(GmxExchangeRouter.simulateExecuteLatestOrder, (s));
        vm.prank(trader);
        (bool ok, bytes memory out) =
            address(exchange).call{value: p.numbers.executionFee}(abi.encodeCall(GmxBaseRouter.multicall, (calls)));
        assertFalse(ok, "a simulation always reverts");
        return out;
    }

    function topUp() internal view returns (IGmx.CreateOrderParams memory) {
        return params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max);
    }

    function endOfSimulation() internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IGmx.EndOfOracleSimulation.selector);
    }

    function test_AGoodTopUpEndsTheSimulationAndChangesNothing() public {
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        uint256 balance = usdc.balanceOf(trader);
        bytes memory out = simulate(topUp(), 100e6, simPrices(1_965, block.timestamp));
        assertEq(out, endOfSimulation());
        assertEq(reader.getPosition(address(ds), pk).numbers.collateralAmount, 200e6);
        assertEq(usdc.balanceOf(trader), balance);
        assertEq(ds.getBytes32Count(GmxKeys.ORDER_LIST), 0);
    }

    function test_ATopUpTooSmallToSaveThePositionRevertsLiquidatablePosition() public {
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        (bool liquidatable,, IGmx.IsPositionLiquidatableInfo memory before) =
            handler.isPositionLiquidatable(pk, prices(1_965), true, true);
        assertTrue(liquidatable); // 200 USDC less ~180 USD of loss and the close fee, under 50 USD
        bytes memory out = simulate(topUp(), 10e6, simPrices(1_965, block.timestamp));
        // IncreasePositionUtils validates a collateral deposit at the liquidation factor (0.5%)
        bytes memory expected = abi.encodeWithSelector(
            IGmx.LiquidatablePosition.selector,
            "min collateral for leverage",
            before.remainingCollateralUsd + int256(10 * USD),
            int256(1 * USD),
            int256(50 * USD)
        );
        assertEq(out, expected);
    }

    function test_ADecreaseWorseThanItsAcceptablePriceReverts() public {
        open(false, 10_000, 1_000e6, 2_000);
        IGmx.CreateOrderParams memory p = params(IGmx.OrderType.MarketDecrease, false, 5_000 * USD, 1_900 * 1e12);
        bytes memory out = simulate(p, 0, simPrices(2_000, block.timestamp));
        // a short buys back at the max price
        assertEq(
            out,
            abi.encodeWithSelector(
                IGmx.OrderNotFulfillableAtAcceptablePrice.selector, 2_000 * 1e12 + 5e11, 1_900 * 1e12
            )
        );
        assertEq(simulate(p, 0, simPrices(1_850, block.timestamp)), endOfSimulation());
    }

    function test_AReduceLeavingALiquidatablePositionReverts() public {
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        IGmx.CreateOrderParams memory p = params(IGmx.OrderType.MarketDecrease, true, 1_000 * USD, 0);
        bytes memory out = simulate(p, 0, simPrices(1_965, block.timestamp));
        assertEq(bytes4(out), IGmx.LiquidatablePosition.selector);
        (string memory reason, int256 remaining,, int256 forLeverage) =
            abi.decode(_args(out), (string, int256, int256, int256));
        assertEq(reason, "min collateral for leverage");
        assertEq(forLeverage, int256(90 * USD)); // 1% of the 9,000 left
        assertLt(remaining, forLeverage);
        assertGt(remaining, 0);
        assertEq(reader.getPosition(address(ds), pk).numbers.sizeInUsd, 10_000 * USD);
    }

    function test_OracleTimestampsAreCheckedAgainstTheOrder() public {
        open(true, 10_000, 200e6, 2_000);
        uint256 at = block.timestamp;
        assertEq(
            simulate(topUp(), 100e6, simPrices(2_000, at - 1)),
            abi.encodeWithSelector(IGmx.OracleTimestampsAreSmallerThanRequired.selector, at - 1, at)
        );
        assertEq(
            simulate(topUp(), 100e6, simPrices(2_000, at + 301)),
            abi.encodeWithSelector(IGmx.OracleTimestampsAreLargerThanRequestExpirationTime.selector, at + 301, at, 300)
        );
        assertEq(simulate(topUp(), 100e6, simPrices(2_000, at + 300)), endOfSimulation());
    }

    function test_EveryMarketTokenNeedsAPrice() public {
        open(true, 10_000, 200e6, 2_000);
        IGmx.SimulatePricesParams memory s = simPrices(2_000, block.timestamp);
        s.primaryTokens[1] = address(0xBEEF);
        assertEq(simulate(topUp(), 100e6, s), abi.encodeWithSelector(IGmx.EmptyPrimaryPrice.selector, address(usdc)));
        s = simPrices(2_000, block.timestamp);
        s.primaryPrices = new IGmx.PriceProps[](1);
        assertEq(
            simulate(topUp(), 100e6, s), abi.encodeWithSelector(IGmx.InvalidPrimaryPricesForSimulation.selector, 2, 1)
        );
    }

    function test_SimulatingWithoutAnOrderRevertsEmptyOrder() public {
        open(true, 10_000, 200e6, 2_000); // its order is executed and gone
        vm.prank(trader);
        vm.expectRevert(IGmx.EmptyOrder.selector);
        exchange.simulateExecuteLatestOrder(simPrices(2_000, block.timestamp));
    }

    function test_OnlyControllersSimulateOnTheHandler() public {
        bytes32 key = order(topUp(), 100e6);
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.Unauthorized.selector, trader, "CONTROLLER"));
        handler.simulateExecuteOrder(key, simPrices(2_000, block.timestamp));
        vm.prank(trader);
        vm.expectRevert(abi.encodeWithSelector(IGmx.Unauthorized.selector, trader, "SELF"));
        handler.doExecuteOrder(key, prices(2_000), trader);
    }

    function test_TheKeeperCancelsWithTheErrorTheSimulationGave() public {
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        bytes memory simulated = simulate(topUp(), 10e6, simPrices(1_965, block.timestamp));
        bytes32 key = order(topUp(), 10e6);
        uint256 balance = usdc.balanceOf(trader);
        vm.recordLogs();
        vm.prank(keeper);
        handler.executeOrder(key, prices(1_965));
        (string memory name, bytes memory reasonBytes) = _lastOrderEvent(vm.getRecordedLogs());
        assertEq(name, "OrderCancelled");
        assertEq(reasonBytes, simulated);
        assertEq(usdc.balanceOf(trader) - balance, 10e6, "the collateral goes back");
        assertEq(reader.getPosition(address(ds), pk).numbers.collateralAmount, 200e6);
        assertFalse(ds.containsBytes32(GmxKeys.ORDER_LIST, key));
    }

    /// Whatever the price and the amount, the simulation says EndOfOracleSimulation exactly when
    /// the keeper's execution at that price executes the order (and not cancels it).
    function testFuzz_SimulationAgreesWithExecution(uint256 eth, uint256 amount, bool reduce) public {
        eth = bound(eth, 1_900, 2_100);
        amount = bound(amount, 1e6, 300e6);
        bytes32 pk = open(true, 10_000, 200e6, 2_000);
        IGmx.CreateOrderParams memory p =
            reduce ? params(IGmx.OrderType.MarketDecrease, true, amount * 1e24 * 20, 0) : topUp();
        uint256 collateral = reduce ? 0 : amount;
        bool ok = keccak256(simulate(p, collateral, simPrices(eth, block.timestamp))) == keccak256(endOfSimulation());
        IGmx.PositionProps memory before = reader.getPosition(address(ds), pk);
        bytes32 key = order(p, collateral);
        vm.prank(keeper);
        handler.executeOrder(key, prices(eth));
        IGmx.PositionProps memory afterwards = reader.getPosition(address(ds), pk);
        bool changed = afterwards.numbers.sizeInUsd != before.numbers.sizeInUsd
            || afterwards.numbers.collateralAmount != before.numbers.collateralAmount;
        assertEq(changed, ok);
        assertFalse(ds.containsBytes32(GmxKeys.ORDER_LIST, key));
    }

    function _args(bytes memory revertData) private pure returns (bytes memory args) {
        args = new bytes(revertData.length - 4);
        for (uint256 i; i < args.length; ++i) {
            args[i] = revertData[i + 4];
        }
    }

    /// The name and reasonBytes of the last OrderExecuted / OrderCancelled EventLog2.
    function _lastOrderEvent(Vm.Log[] memory logs) private view returns (string memory name, bytes memory reason) {
        for (uint256 i = logs.length; i > 0; --i) {
            Vm.Log memory entry = logs[i - 1];
            if (entry.emitter != address(events) || entry.topics[0] != GmxEventEmitter.EventLog2.selector) continue;
            IGmx.EventLogData memory data;
            (, name, data) = abi.decode(entry.data, (address, string, IGmx.EventLogData));
            IGmx.BytesKeyValue[] memory items = data.bytesItems.items;
            for (uint256 j; j < items.length; ++j) {
                if (keccak256(bytes(items[j].key)) == keccak256("reasonBytes")) reason = items[j].value;
            }
            return (name, reason);
        }
        revert("no EventLog2 recorded");
    }
}
