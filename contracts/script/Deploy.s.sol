// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Script, console} from "forge-std/Script.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {Multicall3} from "../src/Multicall3.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpLens} from "../src/PerpLens.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";
import {MarketParams} from "../src/PerpTypes.sol";

/// @notice Deploys the reference exchange on a dev chain: TestUSDC, an ETH/USD feed at 2000 (the
///         broadcaster is owner and oracle), PerpExchange with market 0 (10x, 5% maintenance, 0.1% fees),
///         PerpLens and Multicall3, and seeds the pool with 1,000,000 USDC.
///         `forge script script/Deploy.s.sol --rpc-url $RPC --private-key $KEY --broadcast`
contract Deploy is Script {
    function run() external {
        vm.startBroadcast();
        address deployer = msg.sender;
        TestUSDC usdc = new TestUSDC();
        PriceFeed feed = new PriceFeed("ETH / USD", deployer);
        feed.setAnswer(2000e8);
        PerpExchange exchange = new PerpExchange(IERC20(address(usdc)));
        exchange.addMarket(
            MarketParams({
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
            })
        );
        PerpLens lens = new PerpLens(exchange);
        Multicall3 multicall = new Multicall3();
        usdc.mint(deployer, 1_000_000e6);
        usdc.approve(address(exchange), type(uint256).max);
        exchange.deposit(1_000_000e6);
        vm.stopBroadcast();
        console.log("TestUSDC", address(usdc));
        console.log("PriceFeed", address(feed));
        console.log("PerpExchange", address(exchange));
        console.log("PerpLens", address(lens));
        console.log("Multicall3", address(multicall));
    }
}
