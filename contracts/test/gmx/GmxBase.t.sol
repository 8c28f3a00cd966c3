// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {TestUSDC} from "../../src/TestUSDC.sol";
import {IGmx, GmxKeys} from "../../src/gmx/IGmx.sol";
import {
    GmxRoleStore,
    GmxDataStore,
    GmxEventEmitter,
    GmxOrderVault,
    GmxRouter,
    GmxWNT
} from "../../src/gmx/GmxStores.sol";
import {GmxOrderHandler} from "../../src/gmx/GmxOrderHandler.sol";
import {GmxBaseRouter} from "../../src/gmx/GmxBaseRouter.sol";
import {GmxExchangeRouter} from "../../src/gmx/GmxExchangeRouter.sol";
import {GmxSubaccountRouter} from "../../src/gmx/GmxSubaccountRouter.sol";
import {GmxReader} from "../../src/gmx/GmxReader.sol";

/// Shared fixture: the GMX-compatible test deployment with an ETH/USD market (WETH long token,
/// USDC short token), GMX-like parameters, the SubaccountRouter, and a trader holding WETH, ETH
/// and USDC.
abstract contract GmxBase is Test {
    GmxRoleStore internal roles;
    GmxDataStore internal ds;
    GmxEventEmitter internal events;
    GmxOrderVault internal vault;
    GmxRouter internal router;
    GmxWNT internal wnt;
    TestUSDC internal usdc;
    GmxOrderHandler internal handler;
    GmxExchangeRouter internal exchange;
    GmxSubaccountRouter internal subRouter;
    GmxReader internal reader;

    address internal constant MARKET = address(0x70d95587d40A2caf56bd97485aB3Eec10Bee6336);
    address internal trader = makeAddr("trader");
    address internal keeper = makeAddr("orderKeeper");
    uint256 internal constant USD = 1e30;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        roles = new GmxRoleStore();
        ds = new GmxDataStore(roles);
        events = new GmxEventEmitter(roles);
        vault = new GmxOrderVault(roles);
        router = new GmxRouter(roles);
        wnt = new GmxWNT();
        usdc = new TestUSDC();
        handler = new GmxOrderHandler(roles, ds, events, vault);
        exchange = new GmxExchangeRouter(ds, router, handler);
        reader = new GmxReader(handler);
        subRouter = new GmxSubaccountRouter(ds, router, events, handler);
        roles.grantRole(address(this), GmxKeys.CONTROLLER);
        roles.grantRole(address(handler), GmxKeys.CONTROLLER);
        roles.grantRole(address(exchange), GmxKeys.CONTROLLER);
        roles.grantRole(address(exchange), GmxKeys.ROUTER_PLUGIN);
        roles.grantRole(address(subRouter), GmxKeys.CONTROLLER);
        roles.grantRole(address(subRouter), GmxKeys.ROUTER_PLUGIN);
        roles.grantRole(keeper, GmxKeys.ORDER_KEEPER);
        ds.setAddress(GmxKeys.WNT, address(wnt));
        ds.setUint(GmxKeys.MIN_COLLATERAL_USD, 1 * USD);
        ds.setUint(GmxKeys.MIN_POSITION_SIZE_USD, 1 * USD);
        ds.setUint(GmxKeys.REQUEST_EXPIRATION_TIME, 300);
        ds.setUint(GmxKeys.NATIVE_TOKEN_TRANSFER_GAS_LIMIT, 200_000);
        ds.setUint(GmxKeys.ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1, 600_000);
        ds.setUint(GmxKeys.ESTIMATED_GAS_FEE_PER_ORACLE_PRICE, 250_000);
        ds.setUint(GmxKeys.ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR, USD);
        ds.setUint(GmxKeys.orderGasLimitKey(true), 3_000_000);
        ds.setUint(GmxKeys.orderGasLimitKey(false), 3_000_000);
        ds.setUint(GmxKeys.marketKey(GmxKeys.MIN_COLLATERAL_FACTOR, MARKET), USD / 100);
        ds.setUint(GmxKeys.marketKey(GmxKeys.MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION, MARKET), USD / 200);
        ds.setUint(GmxKeys.marketKey(GmxKeys.MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS, MARKET), USD / 100);
        ds.setUint(GmxKeys.positionFeeFactorKey(MARKET, false), USD / 2000);
        handler.addMarket(MARKET, address(wnt), address(wnt), address(usdc));
        usdc.mint(trader, 100_000e6);
        usdc.mint(address(handler), 1_000_000e6); // pays profits
        vm.deal(trader, 100 ether);
        vm.prank(trader);
        usdc.approve(address(router), type(uint256).max);
        vm.txGasPrice(0.1 gwei);
    }

    /// Prices: ETH at `eth` USD with a 1 USD spread, USDC at 1.
    function prices(uint256 eth) internal pure returns (IGmx.MarketPrices memory p) {
        p.indexTokenPrice = IGmx.PriceProps((eth * 1e12) - 5e11, (eth * 1e12) + 5e11);
        p.longTokenPrice = p.indexTokenPrice;
        p.shortTokenPrice = IGmx.PriceProps(1e24, 1e24);
    }

    function fee() internal view returns (uint256) {
        return handler.estimateExecutionGasLimit(true) * tx.gasprice * 12 / 10;
    }

    function params(IGmx.OrderType kind, bool isLong, uint256 sizeDeltaUsd, uint256 acceptable)
        internal
        view
        returns (IGmx.CreateOrderParams memory p)
    {
        p.addresses.receiver = trader;
        p.addresses.cancellationReceiver = trader;
        p.addresses.market = MARKET;
        p.addresses.initialCollateralToken = address(usdc);
        p.numbers.sizeDeltaUsd = sizeDeltaUsd;
        p.numbers.acceptablePrice = acceptable;
        p.numbers.executionFee = fee();
        p.orderType = kind;
        p.isLong = isLong;
    }

    /// The trader's multicall: execution fee, optional USDC collateral, createOrder.
    function order(IGmx.CreateOrderParams memory p, uint256 collateral) internal returns (bytes32 key) {
        bytes[] memory calls = new bytes[](collateral > 0 ? 3 : 2);
        calls[0] = abi.encodeCall(GmxBaseRouter.sendWnt, (address(vault), p.numbers.executionFee));
        if (collateral > 0) {
            calls[1] = abi.encodeCall(GmxBaseRouter.sendTokens, (address(usdc), address(vault), collateral));
        }
        calls[calls.length - 1] = abi.encodeCall(GmxExchangeRouter.createOrder, (p));
        vm.prank(trader);
        bytes[] memory out = exchange.multicall{value: p.numbers.executionFee}(calls);
        key = abi.decode(out[out.length - 1], (bytes32));
    }

    function open(bool isLong, uint256 sizeUsd, uint256 collateral, uint256 eth) internal returns (bytes32 pk) {
        bytes32 key = order(
            params(IGmx.OrderType.MarketIncrease, isLong, sizeUsd * USD, isLong ? type(uint256).max : 0), collateral
        );
        vm.prank(keeper);
        handler.executeOrder(key, prices(eth));
        pk = handler.positionKey(trader, MARKET, address(usdc), isLong);
    }
}
