// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Vm} from "forge-std/Vm.sol";
import {GmxBase} from "./GmxBase.t.sol";
import {IGmx, GmxKeys} from "../../src/gmx/IGmx.sol";
import {GmxBaseRouter} from "../../src/gmx/GmxBaseRouter.sol";
import {GmxSubaccountRouter} from "../../src/gmx/GmxSubaccountRouter.sol";
import {GmxEventEmitter} from "../../src/gmx/GmxStores.sol";

/// A subaccount that takes no native value (the auto top-up then pays it in WNT).
contract RefusesNative {
    receive() external payable {
        revert("no native value");
    }

    function act(address to, bytes calldata data, uint256 value) external returns (bytes memory) {
        (bool ok, bytes memory out) = to.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(out, 32), mload(out))
            }
        }
        return out;
    }
}

/// GmxSubaccountRouter against GMX's SubaccountRouter rules: the grant in the DataStore under
/// GMX's keys, who may act, how often and until when, whom an order may pay, where the money
/// comes from and goes, and the auto top-up.
contract GmxSubaccountTest is GmxBase {
    address internal sub = makeAddr("subaccount");
    bytes32 internal constant ACTION = GmxKeys.SUBACCOUNT_ORDER_ACTION;
    uint256 internal constant ETH_PRICE = 2_000e12; // USD (1e30) per wei at 2,000 USD per ETH

    function setUp() public override {
        super.setUp();
        vm.deal(sub, 100 ether);
    }

    // --- helpers ---------------------------------------------------------------------------

    /// Prices without a spread: opening and closing at one price realizes exactly nothing.
    function flat() internal pure returns (IGmx.MarketPrices memory p) {
        p.indexTokenPrice = IGmx.PriceProps(ETH_PRICE, ETH_PRICE);
        p.longTokenPrice = p.indexTokenPrice;
        p.shortTokenPrice = IGmx.PriceProps(1e24, 1e24);
    }

    /// The trader opens a 10 ETH long at 2,000 (20,000 USD) with 2,000 USDC at flat prices.
    function openFlat() internal returns (bytes32 pk) {
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 20_000 * USD, type(uint256).max), 2_000e6);
        vm.prank(keeper);
        handler.executeOrder(key, flat());
        pk = handler.positionKey(trader, MARKET, address(usdc), true);
        assertEq(handler.position(pk).sizeInTokens, 10 ether);
    }

    /// The trader's grant, in one multicall as the adapter's delegation_setup sends it.
    function grant(address subaccount, uint256 maxCount, uint256 expiresAt) internal {
        bytes[] memory calls = new bytes[](3);
        calls[0] = abi.encodeCall(GmxSubaccountRouter.addSubaccount, (subaccount));
        calls[1] =
            abi.encodeCall(GmxSubaccountRouter.setMaxAllowedSubaccountActionCount, (subaccount, ACTION, maxCount));
        calls[2] = abi.encodeCall(GmxSubaccountRouter.setSubaccountExpiresAt, (subaccount, ACTION, expiresAt));
        vm.prank(trader);
        subRouter.multicall(calls);
    }

    function increase(uint256 collateral) internal view returns (IGmx.CreateOrderParams memory p) {
        p = params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max);
        p.numbers.initialCollateralDeltaAmount = collateral;
    }

    function decrease(uint256 sizeDeltaUsd) internal view returns (IGmx.CreateOrderParams memory p) {
        p = params(IGmx.OrderType.MarketDecrease, true, sizeDeltaUsd, 0);
    }

    /// The subaccount's multicall for `account`: sendWnt(OrderVault, fee), createOrder(account, p).
    function subCalls(address account, IGmx.CreateOrderParams memory p) internal view returns (bytes memory) {
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeCall(GmxBaseRouter.sendWnt, (address(vault), p.numbers.executionFee));
        calls[1] = abi.encodeCall(GmxSubaccountRouter.createOrder, (account, p));
        return abi.encodeCall(GmxBaseRouter.multicall, (calls));
    }

    /// `from` sends the subaccount multicall; whether it went through, and the revert data.
    function trySub(address from, address account, IGmx.CreateOrderParams memory p)
        internal
        returns (bool ok, bytes memory out)
    {
        vm.prank(from);
        (ok, out) = address(subRouter).call{value: p.numbers.executionFee}(subCalls(account, p));
    }

    /// The subaccount creates `p` for the trader; the order's key.
    function subOrder(IGmx.CreateOrderParams memory p) internal returns (bytes32) {
        (bool ok, bytes memory out) = trySub(sub, trader, p);
        assertTrue(ok, "the subaccount's order reverted");
        bytes[] memory results = abi.decode(out, (bytes[]));
        return abi.decode(results[1], (bytes32));
    }

    function count(address account, address subaccount) internal view returns (uint256) {
        return ds.getUint(GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_ACTION_COUNT, account, subaccount, ACTION));
    }

    function traderWnt(uint256 amount) internal {
        vm.startPrank(trader);
        wnt.deposit{value: amount}();
        wnt.approve(address(router), type(uint256).max);
        vm.stopPrank();
    }

    // --- keys --------------------------------------------------------------------------------

    /// The keys are GMX's Keys.sol ones: the values keeper/venues/gmx.py::subaccount_keys gives
    /// for account 0x…A11c, subaccount 0x…5Ab0 (and SUBACCOUNT_FEATURE_DISABLED of 0x…0C0d).
    function test_KeysAreTheOnesTheAdapterReads() public pure {
        address a = address(0xA11c);
        address s = address(0x5Ab0);
        assertEq(GmxKeys.subaccountListKey(a), 0xf29da61b41b6f9c1e3d88e8a495f0f8362b32821220d23ff021e190c154b9bf9);
        assertEq(
            GmxKeys.subaccountActionKey(GmxKeys.MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT, a, s, ACTION),
            0x8adeea7266cfd15d4af521511c3976e26d59818afe5b5ed6fde89b62ff4bcf68
        );
        assertEq(
            GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_ACTION_COUNT, a, s, ACTION),
            0x5f73f79170efc67810fb7878f50aa7aae9b00f458896b5658b479fcd82da5283
        );
        assertEq(
            GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_EXPIRES_AT, a, s, ACTION),
            0xaaee02157b8b1e94ae03721aca579b9ab8a661cc1246d23543ac5daeef4cad9f
        );
        assertEq(
            GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_AUTO_TOP_UP_AMOUNT, a, s),
            0x2ea75377d21acccfda723ca18859312fe456bdc14c27aecb6afc8d5e919b10a9
        );
        assertEq(ACTION, 0x2a0791687fd34f2095c484a9fa4e25057d3ef79a97fcd8c61436047a7bdf4cbe);
        assertEq(
            GmxKeys.subaccountFeatureDisabledKey(address(0x0C0d)),
            0x9c84cfa3a47f3df532ab0331cf3d4d8981fdf8ee473f6863b1ab0c3465b31a7d
        );
    }

    // --- the grant ---------------------------------------------------------------------------

    function test_TheGrantIsWrittenUnderGmxKeysAndRemoved() public {
        grant(sub, 25, block.timestamp + 1 days);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(sub, 0.01 ether);
        assertTrue(ds.containsAddress(GmxKeys.subaccountListKey(trader), sub));
        assertEq(
            ds.getUint(GmxKeys.subaccountActionKey(GmxKeys.MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT, trader, sub, ACTION)),
            25
        );
        assertEq(
            ds.getUint(GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_EXPIRES_AT, trader, sub, ACTION)),
            block.timestamp + 1 days
        );
        assertEq(ds.getUint(GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_AUTO_TOP_UP_AMOUNT, trader, sub)), 0.01 ether);
        assertFalse(ds.containsAddress(GmxKeys.subaccountListKey(sub), trader), "the grant is one way");

        vm.prank(trader);
        subRouter.removeSubaccount(sub);
        assertFalse(ds.containsAddress(GmxKeys.subaccountListKey(trader), sub));
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.SubaccountNotAuthorized.selector, trader, sub));
    }

    function test_EachSettingEmitsGmxEvent() public {
        vm.recordLogs();
        grant(sub, 2, block.timestamp + 1 days);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(sub, 1);
        subOrder(decrease(1_000 * USD));
        vm.prank(trader);
        subRouter.removeSubaccount(sub);
        string[6] memory expected = [
            "AddSubaccount",
            "SetMaxAllowedSubaccountActionCount",
            "SetSubaccountExpiresAt",
            "SetSubaccountAutoTopUpAmount",
            "IncrementSubaccountActionCount",
            "RemoveSubaccount"
        ];
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 log2 = GmxEventEmitter.EventLog2.selector;
        uint256 seen;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(events) || logs[i].topics[0] != log2) continue;
            if (logs[i].topics[1] == keccak256(bytes("OrderCreated"))) continue;
            assertEq(logs[i].topics[1], keccak256(bytes(expected[seen])), expected[seen]);
            assertEq(logs[i].topics[2], bytes32(uint256(uint160(trader))));
            assertEq(logs[i].topics[3], bytes32(uint256(uint160(sub))));
            ++seen;
        }
        assertEq(seen, expected.length);
    }

    // --- who may act, how often, until when ---------------------------------------------------

    function test_AKeyNotInTheListCannotAct() public {
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.SubaccountNotAuthorized.selector, trader, sub));
        // a subaccount of the trader is not one of anybody else
        grant(sub, 10, block.timestamp + 1 days);
        address other = makeAddr("other");
        IGmx.CreateOrderParams memory p = decrease(1_000 * USD);
        p.addresses.receiver = other;
        p.addresses.cancellationReceiver = other;
        (ok, out) = trySub(sub, other, p);
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.SubaccountNotAuthorized.selector, other, sub));
    }

    function test_AnAddedKeyWithoutLimitsHasExpired() public {
        vm.prank(trader);
        subRouter.addSubaccount(sub);
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.SubaccountApprovalExpired.selector, trader, sub, 0, block.timestamp));
    }

    function test_TheMaxActionCountIsEnforcedAndCountsEveryAction() public {
        grant(sub, 2, block.timestamp + 1 days);
        bytes32 key = subOrder(decrease(1_000 * USD));
        assertEq(count(trader, sub), 1);
        vm.warp(block.timestamp + 300);
        vm.prank(sub);
        subRouter.cancelOrder(key); // a cancel is an action too
        assertEq(count(trader, sub), 2);
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.MaxSubaccountActionCountExceeded.selector, trader, sub, 3, 2));
        assertEq(count(trader, sub), 2, "a refused action is not counted");
        // the trader raises the maximum: the count goes on from where it was
        grant(sub, 3, block.timestamp + 1 days);
        subOrder(decrease(1_000 * USD));
        assertEq(count(trader, sub), 3);
    }

    function test_TheGrantExpiresAfterItsExpiry() public {
        uint256 expiresAt = block.timestamp + 1 days;
        grant(sub, 10, expiresAt);
        vm.warp(expiresAt); // the expiry itself is still allowed
        subOrder(decrease(1_000 * USD));
        vm.warp(expiresAt + 1);
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(
            out, abi.encodeWithSelector(IGmx.SubaccountApprovalExpired.selector, trader, sub, expiresAt, expiresAt + 1)
        );
        assertEq(count(trader, sub), 1);
    }

    function test_GmxCanDisableTheRouter() public {
        grant(sub, 10, block.timestamp + 1 days);
        bytes32 feature = GmxKeys.subaccountFeatureDisabledKey(address(subRouter));
        ds.setBool(feature, true);
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.DisabledFeature.selector, feature));
        ds.setBool(feature, false);
        subOrder(decrease(1_000 * USD));
    }

    function test_GmxCanDisableAnIntegrationId() public {
        grant(sub, 10, block.timestamp + 1 days);
        bytes32 id = keccak256("some-integration");
        ds.setBytes32(GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_INTEGRATION_ID, trader, sub), id);
        subOrder(decrease(1_000 * USD));
        ds.setBool(GmxKeys.subaccountIntegrationDisabledKey(id), true);
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.SubaccountIntegrationIdDisabled.selector, id));
    }

    // --- whom an order pays ------------------------------------------------------------------

    function test_AnOrderMustPayTheAccount() public {
        grant(sub, 10, block.timestamp + 1 days);
        IGmx.CreateOrderParams memory p = decrease(1_000 * USD);
        p.addresses.receiver = sub;
        (bool ok, bytes memory out) = trySub(sub, trader, p);
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.InvalidReceiverForSubaccountOrder.selector, sub, trader));
        p = increase(100e6);
        p.addresses.cancellationReceiver = sub;
        (ok, out) = trySub(sub, trader, p);
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.InvalidCancellationReceiverForSubaccountOrder.selector, sub, trader));
        // no cancellation receiver: GMX refunds the account
        p.addresses.cancellationReceiver = address(0);
        bytes32 key = subOrder(p);
        assertEq(handler.order(key).cancellationReceiver, trader);
        assertEq(count(trader, sub), 1);
    }

    // --- where the money comes from and goes -------------------------------------------------

    function test_TheSubaccountTopsUpAndClosesForTheTrader() public {
        bytes32 pk = openFlat();
        grant(sub, 10, block.timestamp + 1 days);
        uint256 wallet = usdc.balanceOf(trader);
        uint256 subEth = sub.balance;
        IGmx.CreateOrderParams memory p = increase(500e6);
        bytes32 key = subOrder(p);
        assertEq(usdc.balanceOf(trader), wallet - 500e6, "the collateral comes from the trader's wallet");
        assertEq(sub.balance, subEth - p.numbers.executionFee, "the subaccount pays the execution fee");
        IGmx.OrderProps memory o = reader.getOrder(address(ds), key);
        assertEq(o.addresses.account, trader);
        assertEq(o.numbers.initialCollateralDeltaAmount, 500e6);
        vm.prank(keeper);
        handler.executeOrder(key, flat());
        assertEq(handler.position(pk).collateralAmount, 2_500e6);

        key = subOrder(decrease(20_000 * USD));
        vm.prank(keeper);
        handler.executeOrder(key, flat());
        assertEq(handler.position(pk).sizeInUsd, 0);
        assertEq(usdc.balanceOf(trader), wallet + 2_000e6, "the proceeds go to the trader");
        assertEq(usdc.balanceOf(sub), 0);
        assertEq(count(trader, sub), 2);
    }

    function test_AWntCollateralComesFromTheTraderAndTheFeeFromTheSubaccount() public {
        grant(sub, 10, block.timestamp + 1 days);
        traderWnt(2 ether);
        IGmx.CreateOrderParams memory p = params(IGmx.OrderType.MarketIncrease, true, 2_000 * USD, type(uint256).max);
        p.addresses.initialCollateralToken = address(wnt);
        p.numbers.initialCollateralDeltaAmount = 1 ether;
        bytes32 key = subOrder(p);
        assertEq(wnt.balanceOf(trader), 1 ether);
        assertEq(reader.getOrder(address(ds), key).numbers.initialCollateralDeltaAmount, 1 ether);
        assertEq(reader.getOrder(address(ds), key).numbers.executionFee, p.numbers.executionFee);
    }

    function test_TheSubaccountCancelsForTheTraderWhoGetsTheRefunds() public {
        grant(sub, 10, block.timestamp + 1 days);
        bytes32 key = subOrder(increase(300e6));
        uint256 wallet = usdc.balanceOf(trader);
        uint256 fee = handler.order(key).executionFee;
        vm.prank(sub);
        vm.expectRevert(abi.encodeWithSelector(IGmx.RequestNotYetCancellable.selector, 0, 300, "Order"));
        subRouter.cancelOrder(key);
        vm.warp(block.timestamp + 300);
        vm.prank(sub);
        subRouter.cancelOrder(key);
        assertEq(usdc.balanceOf(trader), wallet + 300e6);
        assertEq(wnt.balanceOf(trader), fee, "the execution fee is refunded to the account");
        assertEq(wnt.balanceOf(sub), 0);
        assertEq(count(trader, sub), 2);
        vm.prank(sub);
        vm.expectRevert(IGmx.EmptyOrder.selector);
        subRouter.cancelOrder(key);
    }

    function test_AKeyNotInTheListCannotCancel() public {
        bytes32 key = order(params(IGmx.OrderType.MarketIncrease, true, 0, type(uint256).max), 100e6);
        vm.warp(block.timestamp + 300);
        vm.prank(sub);
        vm.expectRevert(abi.encodeWithSelector(IGmx.SubaccountNotAuthorized.selector, trader, sub));
        subRouter.cancelOrder(key);
    }

    function test_TheRouterNeedsTheRouterPluginRole() public {
        grant(sub, 10, block.timestamp + 1 days);
        roles.revokeRole(address(subRouter), GmxKeys.ROUTER_PLUGIN);
        (bool ok, bytes memory out) = trySub(sub, trader, increase(100e6));
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.Unauthorized.selector, address(subRouter), "ROUTER_PLUGIN"));
    }

    function test_OnlyTheWrappedNativeTokenSendsItValue() public {
        vm.prank(trader);
        (bool ok, bytes memory out) = address(subRouter).call{value: 1}("");
        assertFalse(ok);
        assertEq(out, abi.encodeWithSelector(IGmx.InvalidNativeTokenSender.selector, trader));
    }

    // --- auto top-up -------------------------------------------------------------------------

    function test_AutoTopUpPaysTheSubaccountBackForWhatTheActionUsed() public {
        grant(sub, 10, block.timestamp + 1 days);
        traderWnt(1 ether);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(sub, 0.01 ether);
        uint256 before = sub.balance;
        IGmx.CreateOrderParams memory p = decrease(1_000 * USD);
        subOrder(p);
        uint256 paid = 1 ether - wnt.balanceOf(trader);
        assertEq(sub.balance, before - p.numbers.executionFee + paid, "paid as native value");
        // capped to the execution fee plus the gas used so far at tx.gasprice (0.1 gwei)
        assertGt(paid, p.numbers.executionFee);
        assertLt(paid, p.numbers.executionFee + 2_000_000 * tx.gasprice);
        assertEq(address(subRouter).balance, 0);
        assertEq(wnt.balanceOf(address(subRouter)), 0);
    }

    function test_AutoTopUpIsAtMostTheAmountTheTraderSet() public {
        grant(sub, 10, block.timestamp + 1 days);
        traderWnt(1 ether);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(sub, 1e9);
        subOrder(decrease(1_000 * USD));
        assertEq(wnt.balanceOf(trader), 1 ether - 1e9);
    }

    function test_NoAutoTopUpWithoutTheTradersWntOrAllowance() public {
        grant(sub, 10, block.timestamp + 1 days);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(sub, 0.01 ether);
        uint256 before = sub.balance;
        IGmx.CreateOrderParams memory p = decrease(1_000 * USD);
        subOrder(p); // no WNT at all
        assertEq(sub.balance, before - p.numbers.executionFee);
        traderWnt(0.005 ether); // less than the amount
        subOrder(p);
        assertEq(wnt.balanceOf(trader), 0.005 ether);
        traderWnt(0.005 ether);
        vm.prank(trader);
        wnt.approve(address(router), 0.01 ether - 1); // an allowance short of the amount
        subOrder(p);
        assertEq(wnt.balanceOf(trader), 0.01 ether);
        assertEq(sub.balance, before - 3 * p.numbers.executionFee);
    }

    function test_AutoTopUpOfASubaccountRefusingNativeValueIsPaidInWnt() public {
        RefusesNative contractSub = new RefusesNative();
        vm.deal(address(contractSub), 1 ether);
        grant(address(contractSub), 10, block.timestamp + 1 days);
        traderWnt(1 ether);
        vm.prank(trader);
        subRouter.setSubaccountAutoTopUpAmount(address(contractSub), 1e9);
        IGmx.CreateOrderParams memory p = decrease(1_000 * USD);
        contractSub.act(address(subRouter), subCalls(trader, p), p.numbers.executionFee);
        assertEq(wnt.balanceOf(address(contractSub)), 1e9);
        assertEq(wnt.balanceOf(trader), 1 ether - 1e9);
    }

    // --- fuzz --------------------------------------------------------------------------------

    /// An order whose receiver is not the account always reverts, and so does one whose
    /// cancellation receiver is neither zero nor the account; anything else goes through.
    function testFuzz_AnOrderThatDoesNotPayTheAccountAlwaysReverts(
        address receiver,
        address cancellationReceiver,
        uint8 pickReceiver,
        uint8 pickCancellation,
        bool isIncrease
    ) public {
        grant(sub, 100, block.timestamp + 1 days);
        address[3] memory picks = [trader, sub, address(0)];
        if (pickReceiver % 4 < 3) receiver = picks[pickReceiver % 4];
        if (pickCancellation % 4 < 3) cancellationReceiver = picks[pickCancellation % 4];
        IGmx.CreateOrderParams memory p = isIncrease ? increase(100e6) : decrease(1_000 * USD);
        p.addresses.receiver = receiver;
        p.addresses.cancellationReceiver = cancellationReceiver;
        uint256 wallet = usdc.balanceOf(trader);
        (bool ok, bytes memory out) = trySub(sub, trader, p);
        if (receiver != trader) {
            assertFalse(ok);
            assertEq(out, abi.encodeWithSelector(IGmx.InvalidReceiverForSubaccountOrder.selector, receiver, trader));
        } else if (cancellationReceiver != address(0) && cancellationReceiver != trader) {
            assertFalse(ok);
            assertEq(
                out,
                abi.encodeWithSelector(
                    IGmx.InvalidCancellationReceiverForSubaccountOrder.selector, cancellationReceiver, trader
                )
            );
        } else {
            assertTrue(ok);
        }
        assertEq(count(trader, sub), ok ? 1 : 0);
        if (!ok) assertEq(usdc.balanceOf(trader), wallet);
    }

    /// Whatever the maximum, the expiry and the number of attempts, the count never passes the
    /// maximum, every refused attempt says why, and nothing goes through once expired.
    function testFuzz_TheActionCountNeverExceedsTheMax(
        uint8 maxCount,
        uint8 attempts,
        uint32 lifetime,
        uint32 elapsed,
        uint8 before
    ) public {
        maxCount = uint8(bound(maxCount, 0, 12));
        attempts = uint8(bound(attempts, 0, 16));
        before = uint8(bound(before, 0, 4));
        uint256 expiresAt = block.timestamp + lifetime;
        // actions taken under an earlier grant count against the new maximum
        ds.setUint(GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_ACTION_COUNT, trader, sub, ACTION), before);
        grant(sub, maxCount, expiresAt);
        vm.warp(block.timestamp + elapsed);
        uint256 done;
        for (uint256 i; i < attempts; ++i) {
            if (attempt(maxCount, expiresAt, before + done)) ++done;
            assertLe(count(trader, sub), before > maxCount ? before : maxCount);
        }
        uint256 room = maxCount > before ? maxCount - before : 0;
        assertEq(done, block.timestamp > expiresAt ? 0 : (attempts < room ? attempts : room));
        assertEq(count(trader, sub), before + done);
    }

    /// One order of the subaccount, `counted` actions already counted: whether it went through;
    /// refused with GMX's reason when expired or at the maximum.
    function attempt(uint256 maxCount, uint256 expiresAt, uint256 counted) internal returns (bool) {
        (bool ok, bytes memory out) = trySub(sub, trader, decrease(1_000 * USD));
        bytes memory expected;
        if (block.timestamp > expiresAt) {
            expected = abi.encodeWithSelector(
                IGmx.SubaccountApprovalExpired.selector, trader, sub, expiresAt, block.timestamp
            );
        } else if (counted + 1 > maxCount) {
            expected = abi.encodeWithSelector(
                IGmx.MaxSubaccountActionCountExceeded.selector, trader, sub, counted + 1, maxCount
            );
        }
        assertEq(ok, expected.length == 0);
        if (!ok) assertEq(out, expected);
        return ok;
    }

    /// The trader's USDC: its wallet, its position's collateral, and its pending increase orders'
    /// collateral in the OrderVault (the only USDC there).
    function traderUsdc(bytes32 pk) internal view returns (uint256 total) {
        IGmx.OrderInfo[] memory pending = reader.getAccountOrders(address(ds), trader, 0, 100);
        uint256 inVault;
        for (uint256 i; i < pending.length; ++i) {
            if (pending[i].order.numbers.orderType == IGmx.OrderType.MarketIncrease) {
                inVault += pending[i].order.numbers.initialCollateralDeltaAmount;
            }
        }
        assertEq(usdc.balanceOf(address(vault)), inVault, "USDC in the vault that no order of the trader's holds");
        total = usdc.balanceOf(trader) + handler.position(pk).collateralAmount + inVault;
    }

    /// Whatever the subaccount key tries, in any order (top-ups and decreases of any size,
    /// orders paying someone else, the Router directly, sendTokens, cancels, GMX executing in
    /// between), the trader's USDC stays in its wallet, its position or its pending orders, and
    /// the subaccount ends with none of it and no WNT (no auto top-up set).
    function testFuzz_TheSubaccountMovesTheTradersMoneyOnlyIntoItsPositionOrWallet(uint256 seed) public {
        bytes32 pk = openFlat();
        grant(sub, 1_000, block.timestamp + 365 days);
        uint256 total = traderUsdc(pk);
        uint256 subEth = sub.balance;
        for (uint256 i; i < 14; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 kind = r % 10;
            uint256 x = r >> 8;
            if (kind == 0) {
                trySub(sub, trader, increase(bound(x, 0, 40_000e6))); // a few exceed the wallet
            } else if (kind == 1) {
                trySub(sub, trader, decrease((1 + x % 12) * 2_000 * USD)); // whole ETH: exact pnl
            } else if (kind == 2 || kind == 3) {
                IGmx.CreateOrderParams memory p = x % 2 == 0 ? increase(x % 1_000e6) : decrease(2_000 * USD);
                address payee = address(uint160(x >> 8));
                if (payee == trader || payee == address(0)) payee = sub;
                if (kind == 2) p.addresses.receiver = payee;
                else p.addresses.cancellationReceiver = payee;
                (bool ok,) = trySub(sub, trader, p);
                assertFalse(ok, "an order paying someone else went through");
            } else if (kind == 4) {
                vm.prank(sub);
                vm.expectRevert(abi.encodeWithSelector(IGmx.Unauthorized.selector, sub, "ROUTER_PLUGIN"));
                router.pluginTransfer(address(usdc), trader, sub, x % 1_000e6 + 1);
            } else if (kind == 5) {
                // sendTokens moves the caller's own tokens only: the subaccount has none
                address to = x % 2 == 0 ? address(exchange) : address(subRouter);
                vm.prank(sub);
                (bool ok,) = to.call(abi.encodeCall(GmxBaseRouter.sendTokens, (address(usdc), sub, x % 1_000e6 + 1)));
                assertFalse(ok);
            } else if (kind == 6 || kind == 7) {
                IGmx.OrderInfo[] memory pending = reader.getAccountOrders(address(ds), trader, 0, 100);
                if (pending.length > 0) {
                    vm.prank(keeper);
                    handler.executeOrder(pending[x % pending.length].orderKey, flat());
                }
            } else if (kind == 8) {
                IGmx.OrderInfo[] memory pending = reader.getAccountOrders(address(ds), trader, 0, 100);
                if (pending.length > 0) {
                    vm.warp(block.timestamp + 300);
                    vm.prank(sub);
                    subRouter.cancelOrder(pending[x % pending.length].orderKey);
                }
            } else {
                // the subaccount's own order, through the ExchangeRouter: its account is the
                // subaccount, and it finds none of the trader's collateral in the vault
                IGmx.CreateOrderParams memory p = increase(0);
                p.addresses.receiver = sub;
                p.addresses.cancellationReceiver = sub;
                bytes[] memory calls = new bytes[](2);
                calls[0] = abi.encodeCall(GmxBaseRouter.sendWnt, (address(vault), p.numbers.executionFee));
                calls[1] = abi.encodeWithSelector(exchange.createOrder.selector, p);
                vm.prank(sub);
                bytes[] memory out = exchange.multicall{value: p.numbers.executionFee}(calls);
                assertEq(handler.order(abi.decode(out[1], (bytes32))).collateralDeltaAmount, 0);
            }
            assertEq(traderUsdc(pk), total, "the trader's USDC left its wallet, position and orders");
            assertEq(usdc.balanceOf(sub), 0);
            assertEq(wnt.balanceOf(sub), 0);
            assertLe(sub.balance, subEth);
        }
    }
}
