// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {Multicall3} from "../src/Multicall3.sol";

contract TestUSDCTest is Test {
    TestUSDC internal usdc;
    address internal a = makeAddr("a");
    address internal b = makeAddr("b");

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function setUp() public {
        usdc = new TestUSDC();
    }

    function test_Metadata() public view {
        assertEq(usdc.name(), "Test USD Coin");
        assertEq(usdc.symbol(), "USDC");
        assertEq(usdc.decimals(), 6);
    }

    function test_MintTransferApprove() public {
        vm.expectEmit(address(usdc));
        emit Transfer(address(0), a, 100);
        usdc.mint(a, 100);
        assertEq(usdc.totalSupply(), 100);
        vm.prank(a);
        assertTrue(usdc.transfer(b, 30));
        assertEq(usdc.balanceOf(a), 70);
        assertEq(usdc.balanceOf(b), 30);
        vm.expectEmit(address(usdc));
        emit Approval(a, address(this), 50);
        vm.prank(a);
        usdc.approve(address(this), 50);
        assertTrue(usdc.transferFrom(a, b, 20));
        assertEq(usdc.allowance(a, address(this)), 30);
        vm.prank(a);
        usdc.approve(address(this), type(uint256).max);
        usdc.transferFrom(a, b, 50);
        assertEq(usdc.allowance(a, address(this)), type(uint256).max);
        assertEq(usdc.balanceOf(b), 100);
    }

    function test_RevertWhen_Insufficient() public {
        usdc.mint(a, 10);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.InsufficientBalance.selector, 10, 11));
        usdc.transfer(b, 11);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.InsufficientAllowance.selector, 0, 1));
        usdc.transferFrom(a, b, 1);
    }

    function test_RevertWhen_ZeroAddress() public {
        vm.expectRevert(TestUSDC.ZeroAddress.selector);
        usdc.mint(address(0), 1);
        vm.expectRevert(TestUSDC.ZeroAddress.selector);
        usdc.approve(address(0), 1);
        usdc.mint(a, 1);
        vm.prank(a);
        vm.expectRevert(TestUSDC.ZeroAddress.selector);
        usdc.transfer(address(0), 1);
    }

    function testFuzz_TransferConservesSupply(uint128 minted, uint128 sent) public {
        usdc.mint(a, minted);
        sent = uint128(bound(sent, 0, minted));
        vm.prank(a);
        usdc.transfer(b, sent);
        assertEq(usdc.balanceOf(a) + usdc.balanceOf(b), usdc.totalSupply());
    }
}

contract PriceFeedTest is Test {
    PriceFeed internal feed;
    address internal oracle = makeAddr("oracle");

    function setUp() public {
        feed = new PriceFeed("ETH / USD", oracle);
    }

    function test_Metadata() public view {
        assertEq(feed.decimals(), 8);
        assertEq(feed.description(), "ETH / USD");
        assertEq(feed.version(), 1);
        assertEq(feed.owner(), address(this));
        assertEq(feed.oracle(), oracle);
    }

    function test_SetAnswerMakesRounds() public {
        vm.warp(1000);
        vm.prank(oracle);
        feed.setAnswer(2000e8);
        vm.warp(1010);
        vm.prank(oracle);
        feed.setAnswer(2100e8);
        (uint80 id, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredIn) = feed.latestRoundData();
        assertEq(id, 2);
        assertEq(answer, 2100e8);
        assertEq(startedAt, 1010);
        assertEq(updatedAt, 1010);
        assertEq(answeredIn, 2);
        (id, answer,, updatedAt,) = feed.getRoundData(1);
        assertEq(id, 1);
        assertEq(answer, 2000e8);
        assertEq(updatedAt, 1000);
    }

    function test_RevertWhen_NoData() public {
        vm.expectRevert(PriceFeed.NoDataPresent.selector);
        feed.latestRoundData();
        vm.expectRevert(PriceFeed.NoDataPresent.selector);
        feed.getRoundData(7);
    }

    function test_Roles() public {
        vm.expectRevert(PriceFeed.NotOracle.selector);
        feed.setAnswer(1);
        address other = makeAddr("other");
        feed.setOracle(other);
        vm.prank(other);
        feed.setAnswer(1);
        vm.prank(other);
        vm.expectRevert(PriceFeed.NotOwner.selector);
        feed.setOracle(other);
        vm.expectRevert(PriceFeed.ZeroAddress.selector);
        feed.setOracle(address(0));
        vm.expectRevert(PriceFeed.ZeroAddress.selector);
        feed.transferOwnership(address(0));
        feed.transferOwnership(other);
        assertEq(feed.owner(), other);
        vm.expectRevert(PriceFeed.NotOwner.selector);
        feed.transferOwnership(other);
        vm.expectRevert(PriceFeed.ZeroAddress.selector);
        new PriceFeed("x", address(0));
    }
}

contract Reverter {
    function boom() external pure {
        revert("boom");
    }
}

contract Multicall3Test is Test {
    Multicall3 internal mc;
    Reverter internal reverter;

    function setUp() public {
        mc = new Multicall3();
        reverter = new Reverter();
    }

    function _calls(bool allowFailure) internal view returns (Multicall3.Call3[] memory calls) {
        calls = new Multicall3.Call3[](2);
        calls[0] = Multicall3.Call3(address(mc), false, abi.encodeCall(Multicall3.getBlockNumber, ()));
        calls[1] = Multicall3.Call3(address(reverter), allowFailure, abi.encodeCall(Reverter.boom, ()));
    }

    function test_Aggregate3() public {
        vm.roll(42);
        Multicall3.Result[] memory r = mc.aggregate3(_calls(true));
        assertTrue(r[0].success);
        assertEq(abi.decode(r[0].returnData, (uint256)), 42);
        assertFalse(r[1].success);
        vm.expectRevert(bytes("Multicall3: call failed"));
        mc.aggregate3(_calls(false));
    }

    function test_AggregateAndTry() public {
        Multicall3.Call[] memory calls = new Multicall3.Call[](1);
        calls[0] = Multicall3.Call(address(mc), abi.encodeCall(Multicall3.getChainId, ()));
        (uint256 bn, bytes[] memory data) = mc.aggregate(calls);
        assertEq(bn, block.number);
        assertEq(abi.decode(data[0], (uint256)), block.chainid);
        calls[0] = Multicall3.Call(address(reverter), abi.encodeCall(Reverter.boom, ()));
        vm.expectRevert(bytes("Multicall3: call failed"));
        mc.aggregate(calls);
        Multicall3.Result[] memory r = mc.tryAggregate(false, calls);
        assertFalse(r[0].success);
        vm.expectRevert(bytes("Multicall3: call failed"));
        mc.tryAggregate(true, calls);
        vm.expectRevert(bytes("Multicall3: call failed"));
        mc.blockAndAggregate(calls);
    }

    function test_Aggregate3Value() public {
        Multicall3.Call3Value[] memory calls = new Multicall3.Call3Value[](1);
        calls[0] = Multicall3.Call3Value(address(mc), false, 0, abi.encodeCall(Multicall3.getBasefee, ()));
        assertTrue(mc.aggregate3Value(calls)[0].success);
        vm.expectRevert(bytes("Multicall3: value mismatch"));
        mc.aggregate3Value{value: 1}(calls);
    }

    function test_Getters() public {
        vm.roll(100);
        vm.warp(12345);
        vm.deal(address(this), 7);
        assertEq(mc.getBlockNumber(), 100);
        assertEq(mc.getCurrentBlockTimestamp(), 12345);
        assertEq(mc.getEthBalance(address(this)), 7);
        assertEq(mc.getChainId(), block.chainid);
        assertEq(mc.getBasefee(), block.basefee);
        assertEq(mc.getBlockHash(99), blockhash(99));
        assertEq(mc.getLastBlockHash(), blockhash(99));
        assertEq(mc.getCurrentBlockCoinbase(), block.coinbase);
        assertEq(mc.getCurrentBlockGasLimit(), block.gaslimit);
        assertEq(mc.getCurrentBlockDifficulty(), block.prevrandao);
        (uint256 bn, bytes32 bh, Multicall3.Result[] memory r) =
            mc.tryBlockAndAggregate(false, new Multicall3.Call[](0));
        assertEq(bn, 100);
        assertEq(bh, blockhash(100));
        assertEq(r.length, 0);
    }
}
