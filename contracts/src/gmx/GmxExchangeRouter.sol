// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";
import {GmxDataStore, GmxRouter} from "./GmxStores.sol";
import {GmxOrderHandler} from "./GmxOrderHandler.sol";

/// @notice The wrapped native token's deposit.
interface IGmxWNT {
    function deposit() external payable;
    function transfer(address to, uint256 amount) external returns (bool);
}

/// @title GmxExchangeRouter
/// @notice ExchangeRouter's multicall, sendWnt, sendTokens, createOrder, cancelOrder, updateOrder
///         and simulateExecuteLatestOrder with GMX's signatures. It must hold ROUTER_PLUGIN (for
///         Router.pluginTransfer) and CONTROLLER (for the order handler).
contract GmxExchangeRouter {
    /// @notice The data store (its WNT entry names the wrapped native token).
    GmxDataStore public immutable dataStore;
    /// @notice The router users approve.
    GmxRouter public immutable router;
    /// @notice The order handler.
    GmxOrderHandler public immutable orderHandler;

    /// @notice A call of a multicall reverted without data.
    error MulticallFailed(uint256 index);

    constructor(GmxDataStore dataStore_, GmxRouter router_, GmxOrderHandler orderHandler_) {
        dataStore = dataStore_;
        router = router_;
        orderHandler = orderHandler_;
    }

    /// @notice PayableMulticall: delegatecalls each entry to this contract, reverting with the
    ///         first failure's data.
    function multicall(bytes[] calldata data) external payable returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i; i < data.length; ++i) {
            (bool ok, bytes memory out) = address(this).delegatecall(data[i]);
            if (!ok) {
                if (out.length == 0) revert MulticallFailed(i);
                assembly ("memory-safe") {
                    revert(add(out, 32), mload(out))
                }
            }
            results[i] = out;
        }
    }

    /// @notice Wraps `amount` of native value (from what was sent) and sends it to `receiver`.
    function sendWnt(address receiver, uint256 amount) external payable {
        IGmxWNT wnt = IGmxWNT(dataStore.getAddress(GmxKeys.WNT));
        wnt.deposit{value: amount}();
        if (!wnt.transfer(receiver, amount)) revert IGmx.TokenTransferError(address(wnt), receiver, amount);
    }

    /// @notice Moves `amount` of `token` the caller approved to the Router to `receiver`.
    function sendTokens(address token, address receiver, uint256 amount) external payable {
        router.pluginTransfer(token, msg.sender, receiver, amount);
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
