// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx} from "./IGmx.sol";
import {GmxDataStore, GmxRouter} from "./GmxStores.sol";
import {GmxOrderHandler} from "./GmxOrderHandler.sol";
import {GmxBaseRouter} from "./GmxBaseRouter.sol";

/// @title GmxExchangeRouter
/// @notice ExchangeRouter's multicall, sendWnt, sendTokens (GmxBaseRouter), createOrder,
///         cancelOrder, updateOrder and simulateExecuteLatestOrder with GMX's signatures. It must
///         hold ROUTER_PLUGIN (for Router.pluginTransfer) and CONTROLLER (for the order handler).
contract GmxExchangeRouter is GmxBaseRouter {
    /// @notice The order handler.
    GmxOrderHandler public immutable orderHandler;

    constructor(GmxDataStore dataStore_, GmxRouter router_, GmxOrderHandler orderHandler_)
        GmxBaseRouter(dataStore_, router_)
    {
        orderHandler = orderHandler_;
    }

    /// @notice Creates an order for the caller from what was sent to the OrderVault.
    function createOrder(IGmx.CreateOrderParams calldata params) external payable returns (bytes32) {
        return orderHandler.createOrder(msg.sender, params);
    }

    /// @notice ExchangeRouter.updateOrder. Only market orders exist here, and GMX refuses to
    ///         update those: it reverts OrderNotUpdatable (EmptyOrder for an unknown key).
    function updateOrder(bytes32 key, uint256, uint256, uint256, uint256, uint256, bool) external payable {
        GmxOrderHandler.StoredOrder memory o = orderHandler.order(key);
        if (o.account == address(0)) revert IGmx.EmptyOrder();
        revert IGmx.OrderNotUpdatable(uint256(o.orderType));
    }

    /// @notice ExchangeRouter.simulateExecuteLatestOrder: executes the order created last (by an
    ///         earlier call of the same multicall) at the given prices and oracle timestamps, and
    ///         always reverts: EndOfOracleSimulation when the order would execute, else the error
    ///         that would cancel it (OrderNotFulfillableAtAcceptablePrice, LiquidatablePosition,
    ///         ...). Meant for eth_call, as GMX's interface uses it.
    function simulateExecuteLatestOrder(IGmx.SimulatePricesParams calldata simulatedOracleParams) external payable {
        orderHandler.simulateExecuteOrder(orderHandler.latestOrderKey(), simulatedOracleParams);
    }

    /// @notice Cancels the caller's order once it is past REQUEST_EXPIRATION_TIME.
    function cancelOrder(bytes32 key) external payable {
        orderHandler.cancelOrder(msg.sender, key);
    }
}
