// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {MarketParams, MarketState, Position, Health} from "./PerpTypes.sol";

/// @title PerpMath
/// @notice Pure margin, funding and price-impact math shared by PerpExchange and PerpLens.
///         Every rounding goes against the trader: costs and losses up, gains down.
library PerpMath {
    /// @notice 1e18 fixed point.
    uint256 internal constant WAD = 1e18;
    /// @notice size (1e18) * price (1e18) / USD_SCALE = USD in collateral units (1e6).
    uint256 internal constant USD_SCALE = 1e30;

    /// @notice a * b / d rounded up.
    function mulDivUp(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        uint256 product = a * b;
        return product == 0 ? 0 : (product - 1) / d + 1;
    }

    /// @notice a / b rounded towards negative infinity (b > 0).
    function divFloor(int256 a, int256 b) internal pure returns (int256 q) {
        q = a / b;
        if (a % b != 0 && a < 0) q -= 1;
    }

    /// @notice a / b rounded towards positive infinity (b > 0).
    function divCeil(int256 a, int256 b) internal pure returns (int256 q) {
        q = a / b;
        if (a % b != 0 && a > 0) q += 1;
    }

    /// @notice Notional in USD (6 decimals) of `size` at `price`, rounded up.
    function notional(uint256 size, uint256 price) internal pure returns (uint256) {
        return mulDivUp(size, price, USD_SCALE);
    }

    /// @notice `rate` (WAD) of the notional of `size` at `price`, rounded up (fees and margins).
    function onNotional(uint256 size, uint256 price, uint256 rate) internal pure returns (uint256) {
        return mulDivUp(notional(size, price), rate, WAD);
    }

    /// @notice Pnl in USD of `size` entered at `entryPrice` and valued at `price`, rounded down.
    function pnl(bool isLong, uint256 size, uint256 entryPrice, uint256 price) internal pure returns (int256) {
        int256 diff = isLong ? int256(price) - int256(entryPrice) : int256(entryPrice) - int256(price);
        return divFloor(int256(size) * diff, int256(USD_SCALE));
    }

    /// @notice Funding owed in USD by `size` between two index values, rounded up (signed).
    function fundingOwed(uint256 size, int256 indexNow, int256 indexThen) internal pure returns (int256) {
        return divCeil(int256(size) * (indexNow - indexThen), int256(USD_SCALE));
    }

    /// @notice Funding rate per second (WAD, signed; positive = longs pay shorts):
    ///         fundingFactor * (longOI - shortOI) / (longOI + shortOI), capped at +-maxFundingRate.
    function fundingRate(MarketParams memory params, uint256 longOI, uint256 shortOI)
        internal
        pure
        returns (int256 rate)
    {
        uint256 total = longOI + shortOI;
        if (total == 0) return 0;
        rate = int256(uint256(params.fundingFactor)) * (int256(longOI) - int256(shortOI)) / int256(total);
        int256 cap = int256(uint256(params.maxFundingRate));
        if (rate > cap) rate = cap;
        else if (rate < -cap) rate = -cap;
    }

    /// @notice Funding per unit of long size accrued over `elapsed` seconds at `rate` and `price`
    ///         (USD per base token, 18 decimals, signed, truncated towards zero).
    function fundingIndexDelta(int256 rate, uint256 price, uint256 elapsed) internal pure returns (int256) {
        return rate * int256(price) * int256(elapsed) / int256(WAD);
    }

    /// @notice The funding indexes (long, short) accrued up to `timestamp` at `price`, without storing.
    function accruedIndexes(MarketParams memory params, MarketState memory state, uint256 price, uint256 timestamp)
        internal
        pure
        returns (int256 longIndex, int256 shortIndex)
    {
        int256 delta = fundingIndexDelta(
            fundingRate(params, state.longOI, state.shortOI), price, timestamp - state.lastFundingTime
        );
        return (state.longFundingIndex + delta, state.shortFundingIndex - delta);
    }

    /// @notice Execution price of a trade changing the skew (longOI - shortOI) by `skewDelta`
    ///         (positive = buying: long increase or short decrease). The premium is linear in the skew:
    ///         fill = mark * (1 + impactFactor * (skewBefore + skewAfter) / 2 / 1e18), premium capped at
    ///         +-maxImpactRate; rounded up for buys and down for sells.
    function fillPrice(MarketParams memory params, uint256 longOI, uint256 shortOI, uint256 price, int256 skewDelta)
        internal
        pure
        returns (uint256)
    {
        if (params.impactFactor == 0 || skewDelta == 0) return price;
        int256 skew = int256(longOI) - int256(shortOI);
        int256 numerator = (2 * skew + skewDelta) * int256(uint256(params.impactFactor));
        int256 premium = skewDelta > 0 ? divCeil(numerator, int256(2 * WAD)) : divFloor(numerator, int256(2 * WAD));
        int256 cap = int256(uint256(params.maxImpactRate));
        if (premium > cap) premium = cap;
        else if (premium < -cap) premium = -cap;
        uint256 factor = uint256(int256(WAD) + premium);
        return skewDelta > 0 ? mulDivUp(price, factor, WAD) : price * factor / WAD;
    }

    /// @notice Price impact in USD of trading `size` at `fill` instead of `price` (signed; positive =
    ///         cost to the trader), rounded up.
    function impactUsd(bool buying, uint256 size, uint256 price, uint256 fill) internal pure returns (int256) {
        int256 diff = buying ? int256(fill) - int256(price) : int256(price) - int256(fill);
        return divCeil(int256(size) * diff, int256(USD_SCALE));
    }

    /// @notice Size-weighted average entry after adding `sizeDelta` at `fill`; rounded up for longs,
    ///         down for shorts.
    function averageEntry(bool isLong, uint256 size, uint256 entryPrice, uint256 sizeDelta, uint256 fill)
        internal
        pure
        returns (uint256)
    {
        uint256 total = size + sizeDelta;
        uint256 weighted = size * entryPrice + sizeDelta * fill;
        return isLong ? mulDivUp(weighted, 1, total) : weighted / total;
    }

    /// @notice Margin figures of `p` at `price` with the side's current funding `index`.
    function health(Position memory p, MarketParams memory params, int256 index, uint256 price)
        internal
        pure
        returns (Health memory h)
    {
        h.pnl = pnl(p.isLong, p.size, p.entryPrice, price);
        h.pendingFunding = fundingOwed(p.size, index, p.fundingIndex);
        h.closeFee = onNotional(p.size, price, params.closeFeeRate);
        h.equity = int256(p.collateral) + h.pnl - h.pendingFunding - int256(h.closeFee);
        h.maintenanceMargin = onNotional(p.size, price, params.maintenanceMarginRate);
        h.initialMargin = onNotional(p.size, price, params.initialMarginRate);
    }
}
