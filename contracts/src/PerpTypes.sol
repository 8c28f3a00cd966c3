// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// Units (see PerpExchange): USD amounts in collateral units (6 decimals); sizes in base-token units
// (18 decimals); prices in USD per base token (18 decimals); rates as WAD (1e18 = 100%).

/// @notice Configuration of a market, set by the owner.
struct MarketParams {
    /// Chainlink-compatible feed of the mark price (decimals <= 18).
    address feed;
    /// Maximum age in seconds of the feed's answer (updatedAt) before prices are refused.
    uint32 maxStaleness;
    /// Initial margin rate on notional at the mark (WAD; 1 / max leverage).
    uint64 initialMarginRate;
    /// Maintenance margin rate on notional at the mark (WAD); < initialMarginRate.
    uint64 maintenanceMarginRate;
    /// Open fee rate on executed notional (WAD).
    uint64 openFeeRate;
    /// Close fee rate on executed notional (WAD); equity counts it at the mark.
    uint64 closeFeeRate;
    /// Liquidation fee rate on notional at the mark (WAD), paid to the liquidator, capped by what remains.
    uint64 liquidationFeeRate;
    /// Funding rate per second at full skew (WAD per second).
    uint64 fundingFactor;
    /// Cap of |funding rate| (WAD per second).
    uint64 maxFundingRate;
    /// Pool liquidity reserved per USD of open notional at entry (WAD); opens need reserve <= pool.
    uint64 reserveFactor;
    /// Price premium per unit of skew: premium(skew) = skew * impactFactor / 1e18 (WAD per 1e18 size).
    uint64 impactFactor;
    /// Cap of |price impact| as a fraction of the mark (WAD, <= 0.5e18).
    uint64 maxImpactRate;
    /// Maximum total long size (base-token units, 18 decimals).
    uint128 maxLongOI;
    /// Maximum total short size (base-token units, 18 decimals).
    uint128 maxShortOI;
}

/// @notice Running state of a market.
struct MarketState {
    /// Total long size, isolated and cross (18 decimals).
    uint256 longOI;
    /// Total short size, isolated and cross (18 decimals).
    uint256 shortOI;
    /// Cumulative funding paid per unit of long size (USD per base token, 18 decimals; signed,
    /// negative = received).
    int256 longFundingIndex;
    /// Cumulative funding paid per unit of short size (same units); always -longFundingIndex.
    int256 shortFundingIndex;
    /// Timestamp of the last funding accrual.
    uint256 lastFundingTime;
    /// Sum over open positions of size * entryPrice (36 decimals), the basis of the pool reserve.
    uint256 entryNotional;
    /// Sum over long positions of size * funding index at last settlement (36 decimals, signed).
    int256 longFundingBase;
    /// Sum over short positions of size * funding index at last settlement (36 decimals, signed).
    int256 shortFundingBase;
}

/// @notice A position, isolated (margin = its collateral) or cross (margin = the account's balance).
struct Position {
    /// Owner.
    address account;
    /// Long or short.
    bool isLong;
    /// Cross-margin position (collateral is then always 0).
    bool isCross;
    /// Market id.
    uint256 marketId;
    /// Size (base-token units, 18 decimals); 0 means no position.
    uint256 size;
    /// Collateral (6 decimals); isolated only.
    uint256 collateral;
    /// Size-weighted average execution price (18 decimals).
    uint256 entryPrice;
    /// The side's cumulative funding index at the last settlement (18 decimals, signed).
    int256 fundingIndex;
    /// Timestamp of the last change.
    uint256 lastUpdated;
}

/// @notice What an account lets one operator do on its behalf (PerpExchange.approveOperator): top up,
///         reduce, close and withdraw, with every payout going to the account.
struct OperatorGrant {
    /// Unix time (seconds) after which the grant is refused; usable while block.timestamp <= expiresAt.
    uint64 expiresAt;
    /// Operator calls left; every successful *For call uses one (0: no grant, revoked or used up).
    uint64 actionsLeft;
    /// Collateral (token units, 6 decimals) the operator may still pull from the account's wallet.
    uint128 topUpLeft;
}

/// @notice Margin figures of one position at a mark price (6 decimals unless said).
struct Health {
    /// Unrealized pnl at the mark, rounded down (signed).
    int256 pnl;
    /// Accrued unsettled funding, rounded up (signed; positive = owed by the position).
    int256 pendingFunding;
    /// Close fee at the mark, rounded up.
    uint256 closeFee;
    /// collateral + pnl - pendingFunding - closeFee (signed; for cross positions collateral is 0).
    int256 equity;
    /// maintenanceMarginRate * notional at the mark, rounded up.
    uint256 maintenanceMargin;
    /// initialMarginRate * notional at the mark, rounded up.
    uint256 initialMargin;
}
