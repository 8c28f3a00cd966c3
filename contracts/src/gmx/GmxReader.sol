// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";
import {GmxDataStore} from "./GmxStores.sol";
import {GmxOrderHandler} from "./GmxOrderHandler.sol";

/// @title GmxReader
/// @notice Reader's views with GMX's signatures and return shapes, over the test order handler
///         (the `dataStore` argument is read for DataStore values, as GMX's Reader does). No price
///         impact, funding or borrowing exist here: their fields are zero.
contract GmxReader {
    /// @notice The order handler holding markets, orders and positions.
    GmxOrderHandler public immutable handler;

    constructor(GmxOrderHandler handler_) {
        handler = handler_;
    }

    /// @notice Reader.getMarket.
    function getMarket(address, address key) external view returns (IGmx.MarketProps memory) {
        return handler.market(key);
    }

    /// @notice Reader.getMarkets.
    function getMarkets(address, uint256 start, uint256 end) external view returns (IGmx.MarketProps[] memory) {
        return handler.marketsAt(start, end);
    }

    /// @notice Reader.getPosition.
    function getPosition(address, bytes32 key) public view returns (IGmx.PositionProps memory props) {
        GmxOrderHandler.StoredPosition memory p = handler.position(key);
        props.addresses = IGmx.PositionAddresses(p.account, p.market, p.collateralToken);
        props.numbers.sizeInUsd = p.sizeInUsd;
        props.numbers.sizeInTokens = p.sizeInTokens;
        props.numbers.collateralAmount = p.collateralAmount;
        props.numbers.increasedAtTime = p.increasedAtTime;
        props.numbers.decreasedAtTime = p.decreasedAtTime;
        props.flags.isLong = p.isLong;
    }

    /// @notice Reader.getAccountPositions.
    function getAccountPositions(address dataStore, address account, uint256 start, uint256 end)
        external
        view
        returns (IGmx.PositionProps[] memory out)
    {
        bytes32[] memory keys = handler.accountPositionKeys(account, start, end);
        out = new IGmx.PositionProps[](keys.length);
        for (uint256 i; i < keys.length; ++i) {
            out[i] = getPosition(dataStore, keys[i]);
        }
    }

    /// @notice Reader.getPositionInfo: the position, the fees of closing `sizeDeltaUsd` of it (the
    ///         whole size with `usePositionSizeAsSizeDeltaUsd`) and its pnl at the conservative
    ///         price (a long's at the min, a short's at the max).
    function getPositionInfo(
        address dataStore,
        address,
        bytes32 positionKey,
        IGmx.MarketPrices memory prices,
        uint256 sizeDeltaUsd,
        address,
        bool usePositionSizeAsSizeDeltaUsd
    ) public view returns (IGmx.PositionInfo memory info) {
        info.positionKey = positionKey;
        info.position = getPosition(dataStore, positionKey);
        IGmx.PositionProps memory p = info.position;
        if (p.numbers.sizeInUsd == 0) revert IGmx.EmptyPosition();
        if (usePositionSizeAsSizeDeltaUsd) sizeDeltaUsd = p.numbers.sizeInUsd;
        IGmx.PriceProps memory collateralPrice = _collateralPrice(p, prices);
        uint256 feeFactor = GmxDataStore(dataStore).getUint(GmxKeys.positionFeeFactorKey(p.addresses.market, false));
        uint256 feeAmount = GmxKeys.applyFactor(sizeDeltaUsd, feeFactor) / collateralPrice.min;
        info.fees.collateralTokenPrice = collateralPrice;
        info.fees.positionFeeFactor = feeFactor;
        info.fees.positionFeeAmount = feeAmount;
        info.fees.totalCostAmountExcludingFunding = feeAmount;
        info.fees.totalCostAmount = feeAmount;
        uint256 price = p.flags.isLong ? prices.indexTokenPrice.min : prices.indexTokenPrice.max;
        info.executionPriceResult.executionPrice = price;
        int256 pnl = _pnl(p, price) * int256(sizeDeltaUsd) / int256(p.numbers.sizeInUsd);
        info.basePnlUsd = pnl;
        info.uncappedBasePnlUsd = pnl;
        info.pnlAfterPriceImpactUsd = pnl;
    }

    /// @notice Reader.getAccountOrders: the account's pending orders with their keys.
    function getAccountOrders(address dataStore, address account, uint256 start, uint256 end)
        external
        view
        returns (IGmx.OrderInfo[] memory out)
    {
        bytes32[] memory keys =
            GmxDataStore(dataStore).getBytes32ValuesAt(GmxKeys.accountOrderListKey(account), start, end);
        out = new IGmx.OrderInfo[](keys.length);
        for (uint256 i; i < keys.length; ++i) {
            out[i].orderKey = keys[i];
            out[i].order = getOrder(dataStore, keys[i]);
        }
    }

    /// @notice Reader.getOrder.
    function getOrder(address, bytes32 key) public view returns (IGmx.OrderProps memory o) {
        GmxOrderHandler.StoredOrder memory s = handler.order(key);
        o.addresses.account = s.account;
        o.addresses.receiver = s.receiver;
        o.addresses.cancellationReceiver = s.cancellationReceiver;
        o.addresses.market = s.market;
        o.addresses.initialCollateralToken = s.collateralToken;
        o.numbers.orderType = s.orderType;
        o.numbers.sizeDeltaUsd = s.sizeDeltaUsd;
        o.numbers.initialCollateralDeltaAmount = s.collateralDeltaAmount;
        o.numbers.acceptablePrice = s.acceptablePrice;
        o.numbers.executionFee = s.executionFee;
        o.numbers.minOutputAmount = s.minOutputAmount;
        o.numbers.updatedAtTime = s.updatedAtTime;
        o.flags.isLong = s.isLong;
        o.flags.shouldUnwrapNativeToken = s.shouldUnwrapNativeToken;
        o.flags.autoCancel = s.autoCancel;
    }

    /// @notice Reader.isPositionLiquidatable: the order handler's test (PositionUtils), which
    ///         executions validate positions with, over the handler's data store.
    function isPositionLiquidatable(
        address,
        address,
        bytes32 positionKey,
        IGmx.MarketProps memory,
        IGmx.MarketPrices memory prices,
        bool shouldValidateMinCollateralUsd,
        bool forLiquidation
    ) external view returns (bool, string memory, IGmx.IsPositionLiquidatableInfo memory) {
        return handler.isPositionLiquidatable(positionKey, prices, shouldValidateMinCollateralUsd, forLiquidation);
    }

    function _collateralPrice(IGmx.PositionProps memory p, IGmx.MarketPrices memory prices)
        private
        view
        returns (IGmx.PriceProps memory)
    {
        IGmx.MarketProps memory m = handler.market(p.addresses.market);
        return p.addresses.collateralToken == m.longToken ? prices.longTokenPrice : prices.shortTokenPrice;
    }

    function _pnl(IGmx.PositionProps memory p, uint256 price) private pure returns (int256) {
        int256 value = int256(p.numbers.sizeInTokens * price);
        int256 cost = int256(p.numbers.sizeInUsd);
        return p.flags.isLong ? value - cost : cost - value;
    }
}
