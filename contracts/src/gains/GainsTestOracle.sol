// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGains} from "./IGains.sol";
import {GainsTestDiamond} from "./GainsTestDiamond.sol";
import {GainsTradingFacet} from "./GainsTradingFacet.sol";

/// @title GainsTestOracle
/// @notice The oracle network of the Gains test deployment: its owner (a test) answers pending
///         orders at the prices it chooses, and liquidates trades past their liquidation price.
///         An order it never answers stays pending until its trader cancels it after the timeout.
contract GainsTestOracle {
    /// @notice Account that answers and liquidates.
    address public owner;
    /// @notice The diamond whose pending orders this oracle answers (set once).
    GainsTestDiamond public diamond;

    /// @notice The caller is not the owner, or the diamond is already set.
    error NotOwner();
    /// @notice The zero address is not allowed here.
    error ZeroAddress();

    constructor() {
        owner = msg.sender;
    }

    /// @notice Sets the diamond (once).
    function setDiamond(GainsTestDiamond diamond_) external {
        if (msg.sender != owner || address(diamond) != address(0)) revert NotOwner();
        if (address(diamond_) == address(0)) revert ZeroAddress();
        diamond = diamond_;
    }

    /// @notice Answers pending order `index` of `user` at `price` (1e10): the diamond's callback for
    ///         the order's type runs with open = high = low = current = `price`.
    function fulfill(address user, uint32 index, uint64 price) external {
        if (msg.sender != owner) revert NotOwner();
        IGains.Id memory id = IGains.Id(user, index);
        IGains.PendingOrder memory po = diamond.getPendingOrder(id);
        if (!po.isOpen) revert IGains.PendingOrderNotOpen();
        IGains.AggregatorAnswer memory a = IGains.AggregatorAnswer(id, price, price, price, price);
        GainsTradingFacet trading = GainsTradingFacet(address(diamond));
        if (po.orderType == IGains.PendingOrderType.MARKET_OPEN) {
            trading.openTradeMarketCallback(a);
        } else if (po.orderType == IGains.PendingOrderType.MARKET_CLOSE) {
            trading.closeTradeMarketCallback(a);
        } else if (po.orderType == IGains.PendingOrderType.MARKET_PARTIAL_CLOSE) {
            trading.decreasePositionSizeMarketCallback(a);
        } else if (po.orderType == IGains.PendingOrderType.UPDATE_LEVERAGE) {
            trading.updateLeverageCallback(a);
        } else {
            revert IGains.WrongOrderType();
        }
    }

    /// @notice Liquidates trade `index` of `trader` at `price` (1e10); reverts unless it is at or
    ///         past its liquidation price there.
    function liquidate(address trader, uint32 index, uint64 price) external {
        if (msg.sender != owner) revert NotOwner();
        GainsTradingFacet(address(diamond)).liquidateTrade(trader, index, price);
    }
}
