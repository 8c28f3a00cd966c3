// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Vm} from "forge-std/Vm.sol";
import {BaseTest} from "./Base.t.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {OperatorGrant, Position} from "../src/PerpTypes.sol";

/// Operators (PerpExchange.approveOperator and the *For calls). Fixture on top of BaseTest: alice
/// holds an isolated long of 1 ETH (248 USDC collateral) and a cross short of 1 ETH (cross balance
/// 998 USDC), so open interest is balanced and funding is zero unless a test skews it. The operator
/// holds 1,000 USDC with an unlimited allowance to the exchange, so a top-up wrongly pulled from it
/// (or any payout wrongly sent to it) would show in its balance.
contract PerpOperatorTest is BaseTest {
    /// What one call can change, for comparing an operator's call with the trader's own.
    struct State {
        uint256 wallet; // alice's tokens
        uint256 opWallet; // the operator's tokens
        uint256 others; // bob's and the LP's tokens
        uint256 exTokens; // the exchange's tokens
        uint256 pool;
        uint256 cross; // alice's cross balance
        Position iso; // alice's isolated long
        Position crossPos; // alice's cross short
    }

    address internal op = makeAddr("operator");
    address internal opB = makeAddr("operatorB");
    uint256 internal constant OP_FUNDS = 1_000e6;
    uint256 internal constant LIMIT = 500e6;
    uint256 internal constant ACTIONS = 10;
    uint256 internal expiry;
    bytes32 internal aliceLong;
    bytes32 internal aliceCrossShort;

    function setUp() public override {
        super.setUp();
        fund(op, OP_FUNDS);
        open(alice, true, 250e6, 1e18);
        vm.startPrank(alice);
        ex.depositCross(1000e6);
        ex.openCross(ETH, false, 1e18);
        vm.stopPrank();
        aliceLong = ex.positionKey(alice, ETH, true);
        aliceCrossShort = ex.crossPositionKey(alice, ETH, false);
        expiry = block.timestamp + 1 days;
        approve(alice, op, LIMIT, ACTIONS, expiry);
    }

    // ------------------------------------------------------------ helpers

    function approve(address who, address operator, uint256 limit, uint256 actions, uint256 expiresAt) internal {
        vm.prank(who);
        ex.approveOperator(operator, limit, actions, expiresAt);
    }

    function grantOf(address account, address operator) internal view returns (OperatorGrant memory) {
        return ex.operatorGrant(account, operator);
    }

    function state() internal view returns (State memory s) {
        s.wallet = usdc.balanceOf(alice);
        s.opWallet = usdc.balanceOf(op);
        s.others = usdc.balanceOf(bob) + usdc.balanceOf(lp);
        s.exTokens = usdc.balanceOf(address(ex));
        s.pool = ex.poolAmount();
        s.cross = ex.crossBalance(alice);
        s.iso = ex.positions(aliceLong);
        s.crossPos = ex.positions(aliceCrossShort);
    }

    /// The eight *For calls for `account`, in an order in which all succeed on the fixture.
    function forCalls(address account) internal pure returns (bytes[8] memory c) {
        c[0] = abi.encodeCall(PerpExchange.addMarginFor, (account, ETH, true, 10e6));
        c[1] = abi.encodeCall(PerpExchange.decreasePositionFor, (account, ETH, true, 0.1e18));
        c[2] = abi.encodeCall(PerpExchange.removeMarginFor, (account, ETH, true, 10e6));
        c[3] = abi.encodeCall(PerpExchange.closePositionFor, (account, ETH, true));
        c[4] = abi.encodeCall(PerpExchange.depositCrossFor, (account, 10e6));
        c[5] = abi.encodeCall(PerpExchange.decreaseCrossFor, (account, ETH, false, 0.1e18));
        c[6] = abi.encodeCall(PerpExchange.withdrawCrossFor, (account, 10e6));
        c[7] = abi.encodeCall(PerpExchange.closeCrossFor, (account, ETH, false));
    }

    /// Every *For call by `caller` for `account` reverts with `err`, and nothing changes.
    function assertAllRefused(address caller, address account, bytes memory err) internal {
        bytes[8] memory c = forCalls(account);
        State memory before = state();
        OperatorGrant memory g = grantOf(account, caller);
        for (uint256 i = 0; i < c.length; ++i) {
            vm.prank(caller);
            (bool ok, bytes memory ret) = address(ex).call(c[i]);
            assertFalse(ok, "refused");
            assertEq(ret, err, "revert data");
        }
        assertEq(abi.encode(state()), abi.encode(before), "nothing changed");
        assertEq(abi.encode(grantOf(account, caller)), abi.encode(g), "grant unchanged");
    }

    /// The outcome of one call: success, return or revert data, events, and the State after it.
    struct Outcome {
        bool ok;
        bytes ret;
        Vm.Log[] logs;
        State state;
    }

    function run(address caller, bytes memory data) internal returns (Outcome memory o) {
        vm.recordLogs();
        vm.prank(caller);
        (o.ok, o.ret) = address(ex).call(data);
        o.logs = vm.getRecordedLogs();
        o.state = state();
    }

    /// Runs `ownCall` as alice, rewinds, then `forCall` as the operator, and checks that the operator's
    /// call had the same outcome (success or the same revert), the same effects and the same events
    /// followed by OperatorActed, that it used one call and `topUp` of the grant, that the operator's
    /// tokens did not move and that tokens moved only between alice and the exchange. The state left
    /// is the one after the operator's call. Returns whether it succeeded.
    function assertSameAsOwn(bytes memory forCall, bytes memory ownCall, uint256 topUp) internal returns (bool) {
        OperatorGrant memory g0 = grantOf(alice, op);
        State memory before = state();
        uint256 snapshot = vm.snapshotState();
        Outcome memory own = run(alice, ownCall);
        vm.revertToState(snapshot);
        Outcome memory mine = run(op, forCall);
        OperatorGrant memory g1 = grantOf(alice, op);

        assertEq(mine.ok, own.ok, "same outcome as the trader's own call");
        assertEq(mine.state.opWallet, before.opWallet, "operator's tokens untouched");
        if (!mine.ok) {
            assertEq(mine.ret, own.ret, "same revert as the trader's own call");
            assertEq(abi.encode(g1), abi.encode(g0), "a refused call leaves the grant");
            assertEq(abi.encode(mine.state), abi.encode(before), "a refused call changes nothing");
            return false;
        }
        assertEq(abi.encode(mine.state), abi.encode(own.state), "same effects as the trader's own call");
        assertEq(mine.logs.length, own.logs.length + 1, "the trader's events and OperatorActed");
        for (uint256 i = 0; i < own.logs.length; ++i) {
            assertEq(mine.logs[i].emitter, own.logs[i].emitter, "event emitter");
            assertEq(abi.encode(mine.logs[i].topics), abi.encode(own.logs[i].topics), "event topics");
            assertEq(mine.logs[i].data, own.logs[i].data, "event data");
        }
        assertActed(mine.logs[own.logs.length], bytes4(forCall), g0.actionsLeft - 1);
        assertEq(g1.actionsLeft, g0.actionsLeft - 1, "one call used");
        assertEq(g1.topUpLeft, g0.topUpLeft - topUp, "top-up used");
        assertEq(g1.expiresAt, g0.expiresAt, "expiry kept");
        assertEq(mine.state.others, before.others, "no one else's tokens moved");
        assertEq(mine.state.wallet + mine.state.exTokens, before.wallet + before.exTokens, "only trader <-> exchange");
        assertConserved(accounts2());
        return true;
    }

    /// `entry` is OperatorActed(alice, op, selector, actionsLeft) from the exchange.
    function assertActed(Vm.Log memory entry, bytes4 selector, uint256 actionsLeft) internal view {
        assertEq(entry.emitter, address(ex));
        assertEq(entry.topics.length, 4);
        assertEq(entry.topics[0], PerpExchange.OperatorActed.selector);
        assertEq(entry.topics[1], bytes32(uint256(uint160(alice))));
        assertEq(entry.topics[2], bytes32(uint256(uint160(op))));
        assertEq(entry.topics[3], bytes32(selector));
        assertEq(entry.data, abi.encode(actionsLeft));
    }

    // ------------------------------------------------------------ grants

    function test_ApproveOperator() public {
        OperatorGrant memory g = grantOf(alice, op);
        assertEq(g.expiresAt, expiry);
        assertEq(g.actionsLeft, ACTIONS);
        assertEq(g.topUpLeft, LIMIT);
        assertEq(abi.encode(grantOf(alice, opB)), abi.encode(OperatorGrant(0, 0, 0)), "no grant to B");
        assertEq(abi.encode(grantOf(bob, op)), abi.encode(OperatorGrant(0, 0, 0)), "no grant from bob");

        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorApproved(bob, opB, type(uint128).max, 3, block.timestamp + 1);
        approve(bob, opB, type(uint128).max, 3, block.timestamp + 1);
        g = grantOf(bob, opB);
        assertEq(g.topUpLeft, type(uint128).max);
        assertEq(g.actionsLeft, 3);
        assertEq(g.expiresAt, block.timestamp + 1);
    }

    /// A new approval replaces the grant: what was left is not added to it.
    function test_ReapproveReplaces() public {
        vm.prank(op);
        ex.addMarginFor(alice, ETH, true, 300e6);
        assertEq(grantOf(alice, op).topUpLeft, LIMIT - 300e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorApproved(alice, op, 50e6, 2, expiry + 5);
        approve(alice, op, 50e6, 2, expiry + 5);
        assertEq(abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry + 5), 2, 50e6)));
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, 50e6, 60e6));
        ex.addMarginFor(alice, ETH, true, 60e6);
    }

    function test_RevokeOperator() public {
        vm.prank(op);
        ex.depositCrossFor(alice, 1e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorRevoked(alice, op);
        vm.prank(alice);
        ex.revokeOperator(op);
        assertEq(abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(0, 0, 0)));
        assertAllRefused(op, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, op));
        // revoking again, or a grant that never existed, is a no-op that still emits
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorRevoked(alice, op);
        vm.prank(alice);
        ex.revokeOperator(op);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorRevoked(bob, address(0));
        vm.prank(bob);
        ex.revokeOperator(address(0));
        // and a new approval works again
        approve(alice, op, 0, 1, expiry);
        vm.prank(op);
        ex.closePositionFor(alice, ETH, true);
    }

    function test_RevertWhen_InvalidGrant() public {
        uint256 t = block.timestamp;
        vm.startPrank(alice);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(address(0), 1, 1, t + 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(alice, 1, 1, t + 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, 1, 0, t + 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, 1, 1, t);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, 1, 1, t - 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, uint256(type(uint128).max) + 1, 1, t + 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, 1, uint256(type(uint64).max) + 1, t + 1);
        vm.expectRevert(PerpExchange.InvalidGrant.selector);
        ex.approveOperator(opB, 1, 1, uint256(type(uint64).max) + 1);
        // the bounds themselves are valid, and so is a grant without top-ups
        ex.approveOperator(opB, type(uint128).max, type(uint64).max, type(uint64).max);
        assertEq(
            abi.encode(grantOf(alice, opB)),
            abi.encode(OperatorGrant(type(uint64).max, type(uint64).max, type(uint128).max))
        );
        ex.approveOperator(opB, 0, 1, t + 1);
        vm.stopPrank();
        assertEq(abi.encode(grantOf(alice, opB)), abi.encode(OperatorGrant(uint64(t + 1), 1, 0)));
    }

    // ------------------------------------------------------------ each *For call

    function test_AddMarginFor() public {
        vm.expectEmit(address(ex));
        emit PerpExchange.MarginAdded(aliceLong, alice, 100e6, 0);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.addMarginFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.addMarginFor(alice, ETH, true, 100e6);
        assertEq(pos(alice, true).collateral, 348e6);
        assertEq(usdc.balanceOf(alice), 1_000_000e6 - 1250e6 - 100e6, "pulled from the trader");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(grantOf(alice, op).topUpLeft, LIMIT - 100e6);
        assertSameAsOwn(
            abi.encodeCall(PerpExchange.addMarginFor, (alice, ETH, true, 50e6)),
            abi.encodeCall(PerpExchange.addMargin, (ETH, true, 50e6)),
            50e6
        );
    }

    function test_DecreasePositionFor() public {
        setPrice(2100e8);
        uint256 walletBefore = usdc.balanceOf(alice);
        // pnl 50, close fee 1.05: the net gain is paid out and the collateral stays
        vm.expectEmit(address(ex));
        emit PerpExchange.PositionDecreased(aliceLong, alice, ETH, 0.5e18, 2100e18, 50e6, 1.05e6, 0, 48.95e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.decreasePositionFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.decreasePositionFor(alice, ETH, true, 0.5e18);
        assertEq(usdc.balanceOf(alice) - walletBefore, 48.95e6, "payout to the trader");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(pos(alice, true).size, 0.5e18);
        assertEq(pos(alice, true).collateral, 248e6);
        assertEq(grantOf(alice, op).topUpLeft, LIMIT, "no top-up used");
        assertTrue(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.decreasePositionFor, (alice, ETH, true, 0.2e18)),
                abi.encodeCall(PerpExchange.decreasePosition, (ETH, true, 0.2e18)),
                0
            )
        );
    }

    function test_ClosePositionFor() public {
        uint256 walletBefore = usdc.balanceOf(alice);
        vm.expectEmit(address(ex));
        emit PerpExchange.PositionDecreased(aliceLong, alice, ETH, 1e18, 2000e18, 0, 2e6, 0, 246e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.closePositionFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.closePositionFor(alice, ETH, true);
        assertEq(usdc.balanceOf(alice) - walletBefore, 246e6, "payout to the trader");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(ex.isolatedPositionKeys(alice).length, 0);
        assertConserved(accounts2());
    }

    function test_ClosePositionForMatchesOwn() public {
        setPrice(1900e8);
        assertTrue(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.closePositionFor, (alice, ETH, true)),
                abi.encodeCall(PerpExchange.closePosition, (ETH, true)),
                0
            )
        );
    }

    function test_RemoveMarginFor() public {
        uint256 walletBefore = usdc.balanceOf(alice);
        vm.expectEmit(address(ex));
        emit PerpExchange.MarginRemoved(aliceLong, alice, 40e6, 0);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.removeMarginFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.removeMarginFor(alice, ETH, true, 40e6);
        assertEq(usdc.balanceOf(alice) - walletBefore, 40e6, "paid to the trader");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(pos(alice, true).collateral, 208e6);
        // the trader's own margin check applies: collateral 208, equity 206 against an initial margin
        // of 200, so 6 more may go and then not one unit more
        assertTrue(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.removeMarginFor, (alice, ETH, true, 6e6)),
                abi.encodeCall(PerpExchange.removeMargin, (ETH, true, 6e6)),
                0
            )
        );
        assertFalse(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.removeMarginFor, (alice, ETH, true, 1)),
                abi.encodeCall(PerpExchange.removeMargin, (ETH, true, 1)),
                0
            )
        );
    }

    function test_DepositCrossFor() public {
        vm.expectEmit(address(ex));
        emit PerpExchange.CrossDeposit(alice, 200e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.depositCrossFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.depositCrossFor(alice, 200e6);
        assertEq(ex.crossBalance(alice), 1198e6);
        assertEq(ex.crossBalance(op), 0);
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(grantOf(alice, op).topUpLeft, LIMIT - 200e6);
        assertSameAsOwn(
            abi.encodeCall(PerpExchange.depositCrossFor, (alice, 300e6)),
            abi.encodeCall(PerpExchange.depositCross, (300e6)),
            300e6
        );
        assertEq(grantOf(alice, op).topUpLeft, 0);
    }

    function test_DecreaseCrossFor() public {
        setPrice(1900e8);
        // the short gains 50 on half, close fee 0.95, settled into the cross balance
        vm.expectEmit(address(ex));
        emit PerpExchange.PositionDecreased(aliceCrossShort, alice, ETH, 0.5e18, 1900e18, 50e6, 0.95e6, 0, 0);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.decreaseCrossFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.decreaseCrossFor(alice, ETH, false, 0.5e18);
        assertEq(ex.crossBalance(alice), 998e6 + 49.05e6);
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertSameAsOwn(
            abi.encodeCall(PerpExchange.decreaseCrossFor, (alice, ETH, false, 0.25e18)),
            abi.encodeCall(PerpExchange.decreaseCross, (ETH, false, 0.25e18)),
            0
        );
    }

    function test_CloseCrossFor() public {
        vm.expectEmit(address(ex));
        emit PerpExchange.PositionDecreased(aliceCrossShort, alice, ETH, 1e18, 2000e18, 0, 2e6, 0, 0);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.closeCrossFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.closeCrossFor(alice, ETH, false);
        assertEq(ex.crossBalance(alice), 996e6);
        assertEq(ex.crossPositionKeys(alice).length, 0);
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertConserved(accounts2());
    }

    function test_CloseCrossForMatchesOwn() public {
        setPrice(2200e8);
        assertTrue(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.closeCrossFor, (alice, ETH, false)),
                abi.encodeCall(PerpExchange.closeCross, (ETH, false)),
                0
            )
        );
    }

    function test_WithdrawCrossFor() public {
        uint256 walletBefore = usdc.balanceOf(alice);
        vm.expectEmit(address(ex));
        emit PerpExchange.CrossWithdraw(alice, 500e6);
        vm.expectEmit(address(ex));
        emit PerpExchange.OperatorActed(alice, op, PerpExchange.withdrawCrossFor.selector, ACTIONS - 1);
        vm.prank(op);
        ex.withdrawCrossFor(alice, 500e6);
        assertEq(usdc.balanceOf(alice) - walletBefore, 500e6, "paid to the trader");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(ex.crossBalance(alice), 498e6);
        // balance 498, equity 496 against an initial margin of 200: 296 more may go, not one unit more
        assertFalse(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, 296e6 + 1)),
                abi.encodeCall(PerpExchange.withdrawCross, (296e6 + 1)),
                0
            )
        );
        assertTrue(
            assertSameAsOwn(
                abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, 296e6)),
                abi.encodeCall(PerpExchange.withdrawCross, (296e6)),
                0
            )
        );
    }

    /// The trader's own checks apply unchanged to the operator's calls, and a refused call uses nothing.
    function test_RevertWhen_ForCallsFailTheTradersChecks() public {
        bytes memory noIso = abi.encodeWithSelector(PerpExchange.NoPosition.selector, ex.positionKey(alice, ETH, false));
        bytes memory noCross =
            abi.encodeWithSelector(PerpExchange.NoPosition.selector, ex.crossPositionKey(alice, ETH, true));
        bytes memory zero = abi.encodeWithSelector(PerpExchange.ZeroAmount.selector);
        bytes[11] memory calls = [
            abi.encodeCall(PerpExchange.addMarginFor, (alice, ETH, true, 0)),
            abi.encodeCall(PerpExchange.addMarginFor, (alice, ETH, false, 1)),
            abi.encodeCall(PerpExchange.decreasePositionFor, (alice, ETH, true, 0)),
            abi.encodeCall(PerpExchange.decreasePositionFor, (alice, ETH, true, 1e18 + 1)),
            abi.encodeCall(PerpExchange.closePositionFor, (alice, ETH, false)),
            abi.encodeCall(PerpExchange.removeMarginFor, (alice, ETH, true, 0)),
            abi.encodeCall(PerpExchange.depositCrossFor, (alice, 0)),
            abi.encodeCall(PerpExchange.decreaseCrossFor, (alice, ETH, true, 1)),
            abi.encodeCall(PerpExchange.closeCrossFor, (alice, ETH, true)),
            abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, 0)),
            abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, 998e6 + 1))
        ];
        bytes[11] memory errors = [
            zero,
            noIso,
            zero,
            abi.encodeWithSelector(PerpExchange.SizeExceedsPosition.selector, 1e18, 1e18 + 1),
            noIso,
            zero,
            zero,
            noCross,
            noCross,
            zero,
            abi.encodeWithSelector(PerpExchange.InsufficientCollateral.selector, 998e6, 998e6 + 1)
        ];
        for (uint256 i = 0; i < calls.length; ++i) {
            vm.prank(op);
            (bool ok, bytes memory ret) = address(ex).call(calls[i]);
            assertFalse(ok);
            assertEq(ret, errors[i]);
        }
        assertEq(
            abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), uint64(ACTIONS), uint128(LIMIT)))
        );
    }

    // ------------------------------------------------------------ refusals

    function test_RevertWhen_NotApproved() public {
        assertAllRefused(opB, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, opB));
        assertAllRefused(alice, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, alice));
        assertAllRefused(bob, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, bob));
    }

    /// A grant to operator A does not let B act, and B's own grant is counted separately.
    function test_GrantIsPerOperator() public {
        assertAllRefused(opB, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, opB));
        approve(alice, opB, 5e6, 1, expiry);
        vm.prank(opB);
        ex.depositCrossFor(alice, 5e6);
        assertEq(abi.encode(grantOf(alice, opB)), abi.encode(OperatorGrant(uint64(expiry), 0, 0)));
        assertEq(
            abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), uint64(ACTIONS), uint128(LIMIT)))
        );
        assertAllRefused(opB, alice, abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, opB));
    }

    /// alice's grant does not let the operator act for bob, nor does bob's count against alice's.
    function test_GrantIsPerAccount() public {
        open(bob, false, 300e6, 1e18);
        vm.prank(bob);
        ex.depositCross(100e6);
        uint256 bobWallet = usdc.balanceOf(bob);
        bytes memory err = abi.encodeWithSelector(PerpExchange.NotOperator.selector, bob, op);
        vm.startPrank(op);
        vm.expectRevert(err);
        ex.closePositionFor(bob, ETH, false);
        vm.expectRevert(err);
        ex.addMarginFor(bob, ETH, false, 1e6);
        vm.expectRevert(err);
        ex.withdrawCrossFor(bob, 1e6);
        vm.expectRevert(err);
        ex.depositCrossFor(bob, 1e6);
        vm.stopPrank();
        approve(bob, op, 0, 1, expiry);
        vm.prank(op);
        ex.withdrawCrossFor(bob, 100e6);
        assertEq(usdc.balanceOf(bob), bobWallet + 100e6, "paid to bob");
        assertEq(grantOf(bob, op).actionsLeft, 0);
        assertEq(grantOf(alice, op).actionsLeft, ACTIONS, "alice's grant untouched");
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertConserved(accounts2());
    }

    /// Usable up to and including expiresAt; one second later every call is refused.
    function test_RevertWhen_Expired() public {
        vm.warp(expiry);
        setPrice(2000e8);
        vm.prank(op);
        ex.depositCrossFor(alice, 1e6);
        vm.warp(expiry + 1);
        setPrice(2000e8);
        assertAllRefused(op, alice, abi.encodeWithSelector(PerpExchange.OperatorExpired.selector, alice, op, expiry));
    }

    /// Every call uses one action: eight actions cover the eight calls, then nothing is left.
    function test_RevertWhen_ActionsExhausted() public {
        approve(alice, op, 10e6 + 10e6, 8, expiry);
        bytes[8] memory c = forCalls(alice);
        for (uint256 i = 0; i < c.length; ++i) {
            vm.prank(op);
            (bool ok,) = address(ex).call(c[i]);
            assertTrue(ok);
            assertEq(grantOf(alice, op).actionsLeft, 7 - i);
        }
        assertEq(abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), 0, 0)));
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertEq(ex.isolatedPositionKeys(alice).length + ex.crossPositionKeys(alice).length, 0);
        assertConserved(accounts2());
        // a used-up grant is refused as if absent, even before its expiry
        approve(alice, op, 0, 1, expiry);
        vm.prank(op);
        ex.withdrawCrossFor(alice, 1e6);
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.NotOperator.selector, alice, op));
        ex.withdrawCrossFor(alice, 1e6);
    }

    function test_RevertWhen_TopUpOverLimit() public {
        approve(alice, op, 100e6, 10, expiry);
        vm.startPrank(op);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, 100e6, 100e6 + 1));
        ex.addMarginFor(alice, ETH, true, 100e6 + 1);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, 100e6, 100e6 + 1));
        ex.depositCrossFor(alice, 100e6 + 1);
        ex.addMarginFor(alice, ETH, true, 60e6);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, 40e6, 40e6 + 1));
        ex.depositCrossFor(alice, 40e6 + 1);
        ex.depositCrossFor(alice, 40e6);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, 0, 1));
        ex.addMarginFor(alice, ETH, true, 1);
        // reductions need no top-up limit
        ex.withdrawCrossFor(alice, 40e6);
        vm.stopPrank();
        assertEq(abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), 7, 0)));
    }

    /// Top-ups come from the trader's wallet through its allowance to the exchange: within the grant
    /// but beyond the allowance or the balance, the token refuses and the exchange reverts TransferFailed.
    function test_RevertWhen_TopUpBeyondAllowanceOrBalance() public {
        vm.prank(alice);
        usdc.approve(address(ex), 50e6);
        vm.startPrank(op);
        vm.expectRevert(PerpExchange.TransferFailed.selector);
        ex.addMarginFor(alice, ETH, true, 50e6 + 1);
        vm.expectRevert(PerpExchange.TransferFailed.selector);
        ex.depositCrossFor(alice, 50e6 + 1);
        ex.depositCrossFor(alice, 50e6);
        vm.stopPrank();
        assertEq(abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), 9, uint128(LIMIT - 50e6))));
        assertEq(usdc.allowance(alice, address(ex)), 0);
        assertEq(usdc.balanceOf(op), OP_FUNDS, "never taken from the operator instead");

        address carol = makeAddr("carol");
        fund(carol, 30e6);
        vm.prank(carol);
        ex.depositCross(10e6);
        approve(carol, op, LIMIT, 5, expiry);
        vm.startPrank(op);
        vm.expectRevert(PerpExchange.TransferFailed.selector);
        ex.depositCrossFor(carol, 20e6 + 1);
        ex.depositCrossFor(carol, 20e6);
        vm.stopPrank();
        assertEq(usdc.balanceOf(carol), 0);
        assertEq(ex.crossBalance(carol), 30e6);
        assertEq(usdc.balanceOf(op), OP_FUNDS);
    }

    /// There is no *For form of opening, increasing, LP deposits or withdrawals: the operator's own
    /// calls act on its own account and never on the trader's, and use none of the grant.
    function test_OperatorCannotOpenOrTouchLpFunds() public {
        State memory before = state();
        string[4] memory missing = [
            "openPositionFor(address,uint256,bool,uint256,uint256)",
            "openCrossFor(address,uint256,bool,uint256)",
            "depositFor(address,uint256)",
            "withdrawFor(address,uint256)"
        ];
        for (uint256 i = 0; i < missing.length; ++i) {
            vm.prank(op);
            (bool ok, bytes memory ret) =
                address(ex).call(abi.encodeWithSignature(missing[i], alice, ETH, true, 1e6, 1e18));
            assertFalse(ok, missing[i]);
            assertEq(ret.length, 0);
        }
        // openPosition by the operator opens the operator's own position with its own collateral
        vm.prank(op);
        ex.openPosition(ETH, true, 100e6, 0.1e18);
        assertEq(ex.positions(ex.positionKey(op, ETH, true)).account, op);
        assertEq(usdc.balanceOf(op), OP_FUNDS - 100e6);
        assertEq(abi.encode(ex.positions(aliceLong)), abi.encode(before.iso), "alice's position untouched");
        // openCross acts on the operator's (empty) cross account
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InsufficientMargin.selector, -0.2e6, 20e6));
        ex.openCross(ETH, false, 0.1e18);
        // LP shares are the operator's own: it has none
        uint256 lpShares = ex.lpShares(lp);
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(PerpExchange.InvalidShares.selector, lpShares));
        ex.withdraw(lpShares);
        assertEq(
            abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), uint64(ACTIONS), uint128(LIMIT)))
        );
        assertEq(ex.crossBalance(alice), before.cross);
        assertEq(usdc.balanceOf(alice), before.wallet);
    }

    /// The trader's own calls neither need nor use a grant.
    function test_TraderCallsDoNotUseGrants() public {
        vm.startPrank(alice);
        ex.addMargin(ETH, true, 1e6);
        ex.depositCross(1e6);
        ex.closePosition(ETH, true);
        ex.closeCross(ETH, false);
        vm.stopPrank();
        assertEq(
            abi.encode(grantOf(alice, op)), abi.encode(OperatorGrant(uint64(expiry), uint64(ACTIONS), uint128(LIMIT)))
        );
    }

    /// Cold-storage gas of a trader's call and of the same call by an operator, logged with -vv.
    function test_GasOperatorVsOwn() public {
        skip(60);
        setPrice(2000e8);
        uint256 id = vm.snapshotState();
        string[4] memory names = ["addMargin", "closePosition", "depositCross", "withdrawCross"];
        bytes[4] memory own = [
            abi.encodeCall(PerpExchange.addMargin, (ETH, true, 100e6)),
            abi.encodeCall(PerpExchange.closePosition, (ETH, true)),
            abi.encodeCall(PerpExchange.depositCross, (100e6)),
            abi.encodeCall(PerpExchange.withdrawCross, (100e6))
        ];
        bytes[4] memory viaOp = [
            abi.encodeCall(PerpExchange.addMarginFor, (alice, ETH, true, 100e6)),
            abi.encodeCall(PerpExchange.closePositionFor, (alice, ETH, true)),
            abi.encodeCall(PerpExchange.depositCrossFor, (alice, 100e6)),
            abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, 100e6))
        ];
        for (uint256 i = 0; i < names.length; ++i) {
            vm.revertToState(id);
            _cool();
            vm.prank(alice);
            (bool ok,) = address(ex).call(own[i]);
            assertTrue(ok);
            uint256 ownGas = vm.lastCallGas().gasTotalUsed;
            vm.revertToState(id);
            _cool();
            vm.prank(op);
            (ok,) = address(ex).call(viaOp[i]);
            assertTrue(ok);
            emit log_named_uint(names[i], ownGas);
            emit log_named_uint(string.concat(names[i], "For"), vm.lastCallGas().gasTotalUsed);
        }
    }

    function _cool() internal {
        vm.cool(address(ex));
        vm.cool(address(usdc));
        vm.cool(address(feed));
    }

    // ------------------------------------------------------------ fuzz

    /// A random *For call and the trader's own form of it (amounts and sizes derived from `amount`).
    function randomCall(uint256 kind, uint256 amount)
        internal
        view
        returns (bytes memory forCall, bytes memory ownCall, uint256 topUp)
    {
        uint256 isoSize = pos(alice, true).size;
        uint256 crossSize = ex.positions(aliceCrossShort).size;
        kind %= 8;
        if (kind == 0) {
            topUp = bound(amount, 1, 300e6);
            forCall = abi.encodeCall(PerpExchange.addMarginFor, (alice, ETH, true, topUp));
            ownCall = abi.encodeCall(PerpExchange.addMargin, (ETH, true, topUp));
        } else if (kind == 1) {
            uint256 size = bound(amount, 1, isoSize + 1);
            forCall = abi.encodeCall(PerpExchange.decreasePositionFor, (alice, ETH, true, size));
            ownCall = abi.encodeCall(PerpExchange.decreasePosition, (ETH, true, size));
        } else if (kind == 2) {
            forCall = abi.encodeCall(PerpExchange.closePositionFor, (alice, ETH, true));
            ownCall = abi.encodeCall(PerpExchange.closePosition, (ETH, true));
        } else if (kind == 3) {
            uint256 margin = bound(amount, 1, 150e6);
            forCall = abi.encodeCall(PerpExchange.removeMarginFor, (alice, ETH, true, margin));
            ownCall = abi.encodeCall(PerpExchange.removeMargin, (ETH, true, margin));
        } else if (kind == 4) {
            topUp = bound(amount, 1, 300e6);
            forCall = abi.encodeCall(PerpExchange.depositCrossFor, (alice, topUp));
            ownCall = abi.encodeCall(PerpExchange.depositCross, (topUp));
        } else if (kind == 5) {
            uint256 size = bound(amount, 1, crossSize + 1);
            forCall = abi.encodeCall(PerpExchange.decreaseCrossFor, (alice, ETH, false, size));
            ownCall = abi.encodeCall(PerpExchange.decreaseCross, (ETH, false, size));
        } else if (kind == 6) {
            forCall = abi.encodeCall(PerpExchange.closeCrossFor, (alice, ETH, false));
            ownCall = abi.encodeCall(PerpExchange.closeCross, (ETH, false));
        } else {
            uint256 withdrawn = bound(amount, 1, 1_200e6);
            forCall = abi.encodeCall(PerpExchange.withdrawCrossFor, (alice, withdrawn));
            ownCall = abi.encodeCall(PerpExchange.withdrawCross, (withdrawn));
        }
    }

    /// Any grant, top-up and time: the checks apply in order (absent or used up, expired, over the
    /// limit) and a successful top-up uses exactly one action and its amount, pulled from the trader.
    function testFuzz_GrantChecks(uint256 limit, uint256 actions, uint256 duration, uint256 amount, uint256 elapsed)
        public
    {
        limit = bound(limit, 0, 1_000e6);
        actions = bound(actions, 1, type(uint64).max);
        duration = bound(duration, 1, 30 days);
        amount = bound(amount, 1, 2_000e6);
        elapsed = bound(elapsed, 0, 40 days);
        uint256 expiresAt = block.timestamp + duration;
        approve(alice, op, limit, actions, expiresAt);
        skip(elapsed);
        setPrice(2000e8);
        uint256 wallet = usdc.balanceOf(alice);
        vm.prank(op);
        if (block.timestamp > expiresAt) {
            vm.expectRevert(abi.encodeWithSelector(PerpExchange.OperatorExpired.selector, alice, op, expiresAt));
        } else if (amount > limit) {
            vm.expectRevert(abi.encodeWithSelector(PerpExchange.TopUpLimitExceeded.selector, limit, amount));
        }
        ex.addMarginFor(alice, ETH, true, amount);
        OperatorGrant memory g = grantOf(alice, op);
        assertEq(g.expiresAt, expiresAt);
        if (block.timestamp > expiresAt || amount > limit) {
            assertEq(g.actionsLeft, actions);
            assertEq(g.topUpLeft, limit);
            assertEq(usdc.balanceOf(alice), wallet);
        } else {
            assertEq(g.actionsLeft, actions - 1);
            assertEq(g.topUpLeft, limit - amount);
            assertEq(wallet - usdc.balanceOf(alice), amount);
        }
        assertEq(usdc.balanceOf(op), OP_FUNDS);
        assertConserved(accounts2());
    }

    /// Under random prices, elapsed time (with skewed open interest, so funding settles) and a random
    /// call, the operator's call does exactly what the trader's own call does.
    function testFuzz_ForCallMatchesOwn(uint256 kind, uint256 amount, int256 moveBps, uint256 elapsed) public {
        open(bob, true, 2_000e6, bound(amount, 0, 5e18) + 1e15); // skew: longs pay funding
        skip(bound(elapsed, 0, 3 days));
        setPrice(2000e8 * (10_000 + bound(moveBps, -1500, 1500)) / 10_000);
        approve(alice, op, type(uint128).max, type(uint64).max, type(uint64).max);
        (bytes memory forCall, bytes memory ownCall, uint256 topUp) = randomCall(kind, amount);
        assertSameAsOwn(forCall, ownCall, topUp);
    }

    struct Sequence {
        uint256 opTokens;
        uint256 pair; // alice's tokens + the exchange's
        uint256 used;
        uint256 toppedUp;
        int256 answer;
    }

    /// A random sequence of operator calls with prices moving between them: the operator's tokens never
    /// move, every token the exchange sends goes to the trader, every top-up comes from the trader, and
    /// the grant goes down by exactly one action per successful call and by exactly the top-ups.
    function testFuzz_OperatorSequence(
        uint256 limit,
        uint256 actions,
        uint256[10] memory kinds,
        uint256[10] memory amounts,
        int256[10] memory moves
    ) public {
        limit = bound(limit, 0, 600e6);
        actions = bound(actions, 1, 12);
        approve(alice, op, limit, actions, expiry);
        Sequence memory s = Sequence({
            opTokens: usdc.balanceOf(op),
            pair: usdc.balanceOf(alice) + usdc.balanceOf(address(ex)),
            used: 0,
            toppedUp: 0,
            answer: 2000e8
        });
        uint256 others = usdc.balanceOf(bob) + usdc.balanceOf(lp);
        for (uint256 i = 0; i < kinds.length; ++i) {
            s.answer = s.answer * (10_000 + bound(moves[i], -800, 800)) / 10_000;
            setPrice(s.answer);
            (bytes memory forCall,, uint256 topUp) = randomCall(kinds[i], amounts[i]);
            OperatorGrant memory g0 = grantOf(alice, op);
            uint256 wallet0 = usdc.balanceOf(alice);
            uint256 ex0 = usdc.balanceOf(address(ex));
            vm.prank(op);
            (bool ok,) = address(ex).call(forCall);
            OperatorGrant memory g1 = grantOf(alice, op);
            uint256 wallet1 = usdc.balanceOf(alice);
            uint256 ex1 = usdc.balanceOf(address(ex));
            if (ok) {
                ++s.used;
                s.toppedUp += topUp;
                assertEq(g1.actionsLeft, g0.actionsLeft - 1, "one action per call");
                assertEq(g1.topUpLeft, g0.topUpLeft - topUp, "top-up used exactly");
                if (topUp != 0) assertEq(wallet0 - wallet1, topUp, "top-up from the trader's wallet");
                else assertEq(wallet1 - wallet0, ex0 - ex1, "the exchange's payment went to the trader");
            } else {
                assertEq(abi.encode(g1), abi.encode(g0), "refused call leaves the grant");
                assertEq(wallet1, wallet0);
                assertEq(ex1, ex0);
            }
            assertEq(usdc.balanceOf(op), s.opTokens, "operator's tokens never move");
        }
        OperatorGrant memory g = grantOf(alice, op);
        assertLe(s.used, actions);
        assertEq(g.actionsLeft, actions - s.used);
        assertEq(g.topUpLeft, limit - s.toppedUp);
        assertEq(usdc.balanceOf(alice) + usdc.balanceOf(address(ex)), s.pair, "only trader <-> exchange");
        assertEq(usdc.balanceOf(bob) + usdc.balanceOf(lp), others);
        assertConserved(accounts2());
    }
}

/// Drives traders (opening, approving, revoking, changing allowances), two operators acting for
/// random traders (granted or not), price moves and time; records any breach of what it checks after
/// each operator call, and the ghost of every grant.
contract OperatorHandler is Test {
    struct Ghost {
        uint256 actions; // approved
        uint256 limit; // approved
        uint256 expiresAt;
        uint256 used; // successful calls since the approval
        uint256 toppedUp; // top-ups since the approval
    }

    PerpExchange internal ex;
    TestUSDC internal usdc;
    PriceFeed internal feed;
    address internal oracle;
    int256 internal answer = 2000e8;

    address[3] internal traders;
    address[2] internal operators;
    mapping(address => mapping(address => Ghost)) internal ghosts;

    /// Post-condition breaches (must stay empty).
    string[] public breaches;
    /// Successful calls per action, for the log.
    mapping(bytes32 => uint256) public calls;

    constructor(
        PerpExchange ex_,
        TestUSDC usdc_,
        PriceFeed feed_,
        address oracle_,
        address[3] memory traders_,
        address[2] memory operators_
    ) {
        ex = ex_;
        usdc = usdc_;
        feed = feed_;
        oracle = oracle_;
        traders = traders_;
        operators = operators_;
    }

    function breachCount() external view returns (uint256) {
        return breaches.length;
    }

    function ghost(address trader, address operator) external view returns (Ghost memory) {
        return ghosts[trader][operator];
    }

    // ------------------------------------------------------------ traders

    function open(uint256 who, bool isLong, uint256 collateral, uint256 leverage) external {
        address t = traders[who % 3];
        collateral = _bound(collateral, 10e6, 5_000e6);
        uint256 size = collateral * _bound(leverage, 1, 9) * 1e30 / (uint256(answer) * 1e10);
        vm.prank(t);
        try ex.openPosition(0, isLong, collateral, size) {
            calls["open"]++;
        } catch {}
    }

    function openCross(uint256 who, bool isLong, uint256 leverage) external {
        address t = traders[who % 3];
        uint256 size = (ex.crossBalance(t) / 4 + 1e6) * _bound(leverage, 1, 9) * 1e30 / (uint256(answer) * 1e10);
        vm.prank(t);
        try ex.openCross(0, isLong, size) {
            calls["openCross"]++;
        } catch {}
    }

    function approve(uint256 who, uint256 which, uint256 limit, uint256 actions, uint256 duration) external {
        address t = traders[who % 3];
        address o = operators[which % 2];
        limit = _bound(limit, 0, 20_000e6);
        actions = _bound(actions, 1, 50);
        uint256 expiresAt = block.timestamp + _bound(duration, 1 hours, 5 days);
        vm.prank(t);
        ex.approveOperator(o, limit, actions, expiresAt);
        ghosts[t][o] = Ghost({actions: actions, limit: limit, expiresAt: expiresAt, used: 0, toppedUp: 0});
        calls["approve"]++;
    }

    function revoke(uint256 who, uint256 which) external {
        address t = traders[who % 3];
        address o = operators[which % 2];
        vm.prank(t);
        ex.revokeOperator(o);
        delete ghosts[t][o];
        calls["revoke"]++;
    }

    /// The trader's allowance to the exchange bounds the operator's top-ups too.
    function setAllowance(uint256 who, uint256 amount, bool unlimited) external {
        vm.prank(traders[who % 3]);
        usdc.approve(address(ex), unlimited ? type(uint256).max : _bound(amount, 0, 20_000e6));
        calls["setAllowance"]++;
    }

    // ------------------------------------------------------------ operators

    function opAddMargin(uint256 who, uint256 which, uint256 pick, uint256 amount) external {
        (address t, Position memory p) = _pick(who, pick, false);
        amount = _bound(amount, 1, 5_000e6);
        _act(t, which, abi.encodeCall(ex.addMarginFor, (t, p.marketId, p.isLong, amount)), amount, "opAddMargin");
    }

    function opDecrease(uint256 who, uint256 which, uint256 pick, uint256 fraction) external {
        (address t, Position memory p) = _pick(who, pick, false);
        uint256 sizeDelta = p.size * _bound(fraction, 1, 100) / 100;
        _act(t, which, abi.encodeCall(ex.decreasePositionFor, (t, p.marketId, p.isLong, sizeDelta)), 0, "opDecrease");
    }

    function opClose(uint256 who, uint256 which, uint256 pick) external {
        (address t, Position memory p) = _pick(who, pick, false);
        _act(t, which, abi.encodeCall(ex.closePositionFor, (t, p.marketId, p.isLong)), 0, "opClose");
    }

    function opRemoveMargin(uint256 who, uint256 which, uint256 pick, uint256 amount) external {
        (address t, Position memory p) = _pick(who, pick, false);
        amount = _bound(amount, 1, p.collateral + 1);
        _act(t, which, abi.encodeCall(ex.removeMarginFor, (t, p.marketId, p.isLong, amount)), 0, "opRemoveMargin");
    }

    function opDepositCross(uint256 who, uint256 which, uint256 amount) external {
        address t = traders[who % 3];
        amount = _bound(amount, 1, 5_000e6);
        _act(t, which, abi.encodeCall(ex.depositCrossFor, (t, amount)), amount, "opDepositCross");
    }

    function opDecreaseCross(uint256 who, uint256 which, uint256 pick, uint256 fraction) external {
        (address t, Position memory p) = _pick(who, pick, true);
        uint256 sizeDelta = p.size * _bound(fraction, 1, 100) / 100;
        _act(t, which, abi.encodeCall(ex.decreaseCrossFor, (t, p.marketId, p.isLong, sizeDelta)), 0, "opDecreaseCross");
    }

    function opCloseCross(uint256 who, uint256 which, uint256 pick) external {
        (address t, Position memory p) = _pick(who, pick, true);
        _act(t, which, abi.encodeCall(ex.closeCrossFor, (t, p.marketId, p.isLong)), 0, "opCloseCross");
    }

    function opWithdrawCross(uint256 who, uint256 which, uint256 amount) external {
        address t = traders[who % 3];
        amount = _bound(amount, 1, ex.crossBalance(t) + 1);
        _act(t, which, abi.encodeCall(ex.withdrawCrossFor, (t, amount)), 0, "opWithdrawCross");
    }

    // ------------------------------------------------------------ environment

    function movePrice(int256 bps) external {
        answer = answer * (10_000 + _bound(bps, -1000, 1000)) / 10_000;
        if (answer < 100e8) answer = 100e8;
        _push();
        calls["movePrice"]++;
    }

    function passTime(uint256 seconds_) external {
        skip(_bound(seconds_, 1, 6 hours));
        _push();
        calls["passTime"]++;
    }

    // ------------------------------------------------------------ helpers

    struct Balances {
        uint256 trader;
        uint256 exchange;
        uint256 op0;
        uint256 op1;
    }

    function _balances(address t) internal view returns (Balances memory b) {
        b.trader = usdc.balanceOf(t);
        b.exchange = usdc.balanceOf(address(ex));
        b.op0 = usdc.balanceOf(operators[0]);
        b.op1 = usdc.balanceOf(operators[1]);
    }

    /// One operator call for trader `t`, then its post-conditions.
    function _act(address t, uint256 which, bytes memory data, uint256 topUp, string memory name) internal {
        address o = operators[which % 2];
        // mostly an operator with actions left from the trader (if any), sometimes any operator
        if (which % 4 != 0 && ghosts[t][o].actions == ghosts[t][o].used) o = operators[1 - which % 2];
        OperatorGrant memory g0 = ex.operatorGrant(t, o);
        Balances memory b0 = _balances(t);
        vm.prank(o);
        (bool ok, bytes memory ret) = address(ex).call(data);
        OperatorGrant memory g1 = ex.operatorGrant(t, o);
        Balances memory b1 = _balances(t);
        if (b1.op0 != b0.op0 || b1.op1 != b0.op1) _breach(string.concat(name, ": an operator's tokens moved"));
        if (!ok) {
            if (keccak256(abi.encode(g1)) != keccak256(abi.encode(g0))) {
                _breach(string.concat(name, ": refused, grant changed"));
            }
            if (b1.trader != b0.trader || b1.exchange != b0.exchange) {
                _breach(string.concat(name, ": refused, tokens moved"));
            }
            bytes4 reason = ret.length >= 4 ? bytes4(ret) : bytes4(0);
            if (reason == PerpExchange.NotOperator.selector) calls["refused: NotOperator"]++;
            else if (reason == PerpExchange.OperatorExpired.selector) calls["refused: OperatorExpired"]++;
            else if (reason == PerpExchange.TopUpLimitExceeded.selector) calls["refused: TopUpLimitExceeded"]++;
            else calls["refused: the trader's checks"]++;
            return;
        }
        calls[bytes32(bytes(name))]++;
        if (g0.actionsLeft == 0 || block.timestamp > g0.expiresAt || topUp > g0.topUpLeft) {
            _breach(string.concat(name, ": acted without a usable grant"));
        }
        if (g1.actionsLeft + 1 != g0.actionsLeft) _breach(string.concat(name, ": actionsLeft not down by one"));
        if (g1.topUpLeft + topUp != g0.topUpLeft) _breach(string.concat(name, ": topUpLeft not down by the top-up"));
        if (g1.expiresAt != g0.expiresAt) _breach(string.concat(name, ": expiry changed"));
        if (b1.trader + b1.exchange != b0.trader + b0.exchange) {
            _breach(string.concat(name, ": tokens left trader/exchange"));
        }
        if (topUp != 0 && b0.trader - b1.trader != topUp) _breach(string.concat(name, ": top-up not from the trader"));
        Ghost storage gh = ghosts[t][o];
        gh.used++;
        gh.toppedUp += topUp;
    }

    /// One of the trader's open isolated or cross positions (size 0 when there is none).
    function _pick(uint256 who, uint256 pick, bool cross) internal view returns (address t, Position memory p) {
        t = traders[who % 3];
        bytes32[] memory keys = cross ? ex.crossPositionKeys(t) : ex.isolatedPositionKeys(t);
        if (keys.length != 0) p = ex.positions(keys[pick % keys.length]);
        else p.isLong = pick % 2 == 0;
    }

    function _push() internal {
        vm.prank(oracle);
        feed.setAnswer(answer);
    }

    function _breach(string memory what) internal {
        breaches.push(what);
    }
}

contract PerpOperatorInvariantTest is StdInvariant, BaseTest {
    OperatorHandler internal handler;
    address[3] internal traders;
    address[2] internal operators;
    uint256 internal constant OP_FUNDS = 10_000e6;

    function setUp() public override {
        super.setUp();
        traders = [alice, bob, makeAddr("carol")];
        fund(traders[2], 1_000_000e6);
        operators = [makeAddr("operator0"), makeAddr("operator1")];
        for (uint256 i = 0; i < operators.length; ++i) {
            fund(operators[i], OP_FUNDS); // with an allowance: a pull from an operator would succeed
        }
        // every trader starts with isolated and cross positions, so reductions have something to act on
        for (uint256 i = 0; i < traders.length; ++i) {
            open(traders[i], true, 1_000e6, 2e18);
            open(traders[i], false, 1_000e6, 2e18);
            vm.startPrank(traders[i]);
            ex.depositCross(20_000e6);
            ex.openCross(ETH, i % 2 == 0, 5e18);
            vm.stopPrank();
        }
        handler = new OperatorHandler(ex, usdc, feed, oracle, traders, operators);
        for (uint256 i = 0; i < traders.length; ++i) {
            handler.approve(i, i, 10_000e6, 50, 2 days); // a grant to operator0 or operator1 each
        }
        bytes4[] memory selectors = new bytes4[](16);
        selectors[0] = OperatorHandler.open.selector;
        selectors[1] = OperatorHandler.openCross.selector;
        selectors[2] = OperatorHandler.approve.selector;
        selectors[3] = OperatorHandler.approve.selector; // twice: grants are needed for most of the rest
        selectors[4] = OperatorHandler.revoke.selector;
        selectors[5] = OperatorHandler.setAllowance.selector;
        selectors[6] = OperatorHandler.opAddMargin.selector;
        selectors[7] = OperatorHandler.opDecrease.selector;
        selectors[8] = OperatorHandler.opClose.selector;
        selectors[9] = OperatorHandler.opRemoveMargin.selector;
        selectors[10] = OperatorHandler.opDepositCross.selector;
        selectors[11] = OperatorHandler.opDecreaseCross.selector;
        selectors[12] = OperatorHandler.opCloseCross.selector;
        selectors[13] = OperatorHandler.opWithdrawCross.selector;
        selectors[14] = OperatorHandler.movePrice.selector;
        selectors[15] = OperatorHandler.passTime.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// No operator ever receives (or pays) a token.
    function invariant_operatorsNeverReceive() public view {
        for (uint256 i = 0; i < operators.length; ++i) {
            assertEq(usdc.balanceOf(operators[i]), OP_FUNDS);
        }
    }

    /// Every token the exchange holds is owed to the pool, an isolated position or a cross account,
    /// and the traders' wallets, the exchange, the LP and the operators hold every token minted.
    function invariant_tokenConservation() public view {
        uint256 owed = ex.poolAmount();
        uint256 held = usdc.balanceOf(address(ex)) + usdc.balanceOf(lp);
        for (uint256 i = 0; i < traders.length; ++i) {
            held += usdc.balanceOf(traders[i]);
            owed += ex.crossBalance(traders[i]);
            bytes32[] memory keys = ex.isolatedPositionKeys(traders[i]);
            for (uint256 j = 0; j < keys.length; ++j) {
                owed += ex.positions(keys[j]).collateral;
            }
        }
        for (uint256 i = 0; i < operators.length; ++i) {
            held += usdc.balanceOf(operators[i]);
            assertEq(ex.crossBalance(operators[i]), 0);
            assertEq(ex.isolatedPositionKeys(operators[i]).length, 0);
        }
        assertEq(usdc.balanceOf(address(ex)), owed, "exchange owes what it holds");
        assertEq(held, usdc.totalSupply(), "tokens stay with traders, exchange, LP and operators");
    }

    /// Each grant is what its trader last approved, less exactly one action per successful call and
    /// exactly the top-ups made since; revoked or never approved grants are empty.
    function invariant_grantsWithinApproval() public view {
        for (uint256 i = 0; i < traders.length; ++i) {
            for (uint256 j = 0; j < operators.length; ++j) {
                OperatorGrant memory g = ex.operatorGrant(traders[i], operators[j]);
                OperatorHandler.Ghost memory gh = handler.ghost(traders[i], operators[j]);
                assertLe(g.actionsLeft, gh.actions, "actions within approval");
                assertLe(g.topUpLeft, gh.limit, "top-up within approval");
                assertEq(g.actionsLeft, gh.actions - gh.used, "actions used exactly");
                assertEq(g.topUpLeft, gh.limit - gh.toppedUp, "top-ups used exactly");
                assertEq(g.expiresAt, gh.expiresAt, "expiry as approved");
            }
        }
    }

    /// No operator call breached its post-conditions (see OperatorHandler._act).
    function invariant_noBreaches() public view {
        uint256 n = handler.breachCount();
        if (n != 0) assertEq(handler.breaches(0), "", "post-condition breached");
        assertEq(n, 0);
    }

    /// Calls that succeeded, shown with -vv.
    function afterInvariant() public {
        string[19] memory names = [
            "open",
            "openCross",
            "approve",
            "revoke",
            "setAllowance",
            "opAddMargin",
            "opDecrease",
            "opClose",
            "opRemoveMargin",
            "opDepositCross",
            "opDecreaseCross",
            "opCloseCross",
            "opWithdrawCross",
            "refused: NotOperator",
            "refused: OperatorExpired",
            "refused: TopUpLimitExceeded",
            "refused: the trader's checks",
            "movePrice",
            "passTime"
        ];
        for (uint256 i = 0; i < names.length; ++i) {
            emit log_named_uint(names[i], handler.calls(bytes32(bytes(names[i]))));
        }
    }
}
