// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PerpExchange} from "./PerpExchange.sol";
import {MarketParams, MarketState, Position, Health} from "./PerpTypes.sol";
import {PerpMath} from "./PerpMath.sol";

/// @title PerpLens: batch-reading views of a PerpExchange
/// @notice Stateless views for keepers: positions and accounts with the values accrued at the current
///         block, markets, the pool, and quotes. Units as in PerpExchange (USD 6 decimals, sizes and
///         prices 18 decimals, rates WAD). A market whose feed is stale or invalid does not make a batch
///         revert: its entries have priceValid = false, markPrice 0, accrued values 0 and are never
///         flagged liquidatable (the exchange would refuse to act on them anyway). Quotes do revert.
contract PerpLens {
    /// @notice A position with its values at the current block.
    struct PositionView {
        /// exchange.positionKey (isolated) or exchange.crossPositionKey (cross).
        bytes32 key;
        /// Stored fields.
        Position position;
        /// False when the market's price could not be read (the fields below are then 0/false).
        bool priceValid;
        /// Mark price (18 decimals).
        uint256 markPrice;
        /// Accrued unsettled funding (6 decimals, signed, positive = owed; rounded up).
        int256 pendingFunding;
        /// Unrealized pnl at the mark (6 decimals, signed, rounded down).
        int256 pnl;
        /// Close fee at the mark (6 decimals, rounded up).
        uint256 closeFee;
        /// collateral + pnl - pendingFunding - closeFee (6 decimals, signed). For a cross position the
        /// collateral term is 0: this is its contribution to the account's equity.
        int256 equity;
        /// Maintenance margin at the mark (6 decimals, rounded up).
        uint256 maintenanceMargin;
        /// Initial margin at the mark (6 decimals, rounded up).
        uint256 initialMargin;
        /// Isolated: equity < maintenanceMargin. Cross: the account is liquidatable.
        bool liquidatable;
    }

    /// @notice A market's configuration and state at the current block.
    struct MarketView {
        uint256 marketId;
        MarketParams params;
        /// Stored state (funding indexes as of state.lastFundingTime).
        MarketState state;
        /// False when the price could not be read (price 0; indexes then as stored).
        bool priceValid;
        /// Mark price (18 decimals).
        uint256 price;
        /// Current funding rate per second (WAD, signed, positive = longs pay).
        int256 fundingRate;
        /// Long funding index accrued to now (18 decimals).
        int256 longFundingIndex;
        /// Short funding index accrued to now (18 decimals).
        int256 shortFundingIndex;
    }

    /// @notice Open interest and funding of one market.
    struct MarketPool {
        uint256 marketId;
        /// Total long size (18 decimals).
        uint256 longOI;
        /// Total short size (18 decimals).
        uint256 shortOI;
        /// Current funding rate per second (WAD, signed, positive = longs pay).
        int256 fundingRate;
    }

    /// @notice The pool and every market's open interest.
    struct PoolState {
        /// exchange.poolAmount() (6 decimals).
        uint256 totalLiquidity;
        /// LP shares outstanding (18 decimals).
        uint256 totalShares;
        /// exchange.reservedAmount() (6 decimals).
        uint256 reserved;
        MarketPool[] markets;
    }

    /// @notice A cross account at the current block (6 decimals).
    struct CrossAccountView {
        address account;
        /// Cross balance.
        uint256 balance;
        /// balance + sum(pnl - pendingFunding - closeFee) of its positions.
        int256 equity;
        /// Sum of the positions' maintenance margins.
        uint256 maintenanceMargin;
        /// Sum of the positions' initial margins.
        uint256 initialMargin;
        /// False when a position's market price could not be read.
        bool priceValid;
        /// priceValid and has positions and equity < maintenanceMargin.
        bool liquidatable;
        PositionView[] positions;
    }

    /// @notice The cost of a trade executed now.
    struct Quote {
        /// Mark price (18 decimals).
        uint256 markPrice;
        /// Fill price including impact (18 decimals).
        uint256 executionPrice;
        /// Price impact in USD (6 decimals, signed, positive = cost to the trader, rounded up).
        int256 priceImpactUsd;
        /// Open fee (increase) or close fee (decrease) on the executed notional (6 decimals).
        uint256 fee;
    }

    /// @notice The exchange read by this lens.
    PerpExchange public immutable exchange;

    /// @param exchange_ The exchange to read.
    constructor(PerpExchange exchange_) {
        exchange = exchange_;
    }

    /// @notice A position (isolated or cross) by key with its values at the current block; size 0 and
    ///         zeroed values when there is none.
    function getPosition(bytes32 key) public view returns (PositionView memory v) {
        v.key = key;
        v.position = exchange.positions(key);
        if (v.position.size == 0) return v;
        MarketView memory m = getMarket(v.position.marketId);
        if (!m.priceValid) return v;
        Position memory p = v.position;
        Health memory h = PerpMath.health(p, m.params, p.isLong ? m.longFundingIndex : m.shortFundingIndex, m.price);
        v.priceValid = true;
        v.markPrice = m.price;
        v.pendingFunding = h.pendingFunding;
        v.pnl = h.pnl;
        v.closeFee = h.closeFee;
        v.equity = h.equity;
        v.maintenanceMargin = h.maintenanceMargin;
        v.initialMargin = h.initialMargin;
        v.liquidatable = p.isCross ? exchange.isCrossLiquidatable(p.account) : h.equity < int256(h.maintenanceMargin);
    }

    /// @notice getPosition for each key.
    function getPositions(bytes32[] calldata keys) external view returns (PositionView[] memory views) {
        views = new PositionView[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            views[i] = getPosition(keys[i]);
        }
    }

    /// @notice All open positions of `account`: its isolated positions, then its cross positions.
    function getAccountPositions(address account) external view returns (PositionView[] memory views) {
        bytes32[] memory isolated = exchange.isolatedPositionKeys(account);
        bytes32[] memory cross = exchange.crossPositionKeys(account);
        views = new PositionView[](isolated.length + cross.length);
        for (uint256 i = 0; i < isolated.length; ++i) {
            views[i] = getPosition(isolated[i]);
        }
        for (uint256 i = 0; i < cross.length; ++i) {
            views[isolated.length + i] = getPosition(cross[i]);
        }
    }

    /// @notice A cross account with its positions, all at the current block.
    function getCrossAccount(address account) external view returns (CrossAccountView memory v) {
        bytes32[] memory keys = exchange.crossPositionKeys(account);
        v.account = account;
        v.balance = exchange.crossBalance(account);
        v.equity = int256(v.balance);
        v.priceValid = true;
        v.positions = new PositionView[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            PositionView memory p = getPosition(keys[i]);
            v.positions[i] = p;
            v.priceValid = v.priceValid && p.priceValid;
            v.equity += p.equity;
            v.maintenanceMargin += p.maintenanceMargin;
            v.initialMargin += p.initialMargin;
        }
        v.liquidatable = v.priceValid && keys.length != 0 && v.equity < int256(v.maintenanceMargin);
    }

    /// @notice A market's configuration, state, price, funding rate and indexes accrued to now.
    function getMarket(uint256 marketId) public view returns (MarketView memory v) {
        v.marketId = marketId;
        v.params = exchange.marketParams(marketId);
        v.state = exchange.marketState(marketId);
        v.fundingRate = PerpMath.fundingRate(v.params, v.state.longOI, v.state.shortOI);
        v.longFundingIndex = v.state.longFundingIndex;
        v.shortFundingIndex = v.state.shortFundingIndex;
        try exchange.getPrice(marketId) returns (uint256 price) {
            v.priceValid = true;
            v.price = price;
            (v.longFundingIndex, v.shortFundingIndex) =
                PerpMath.accruedIndexes(v.params, v.state, price, block.timestamp);
        } catch {}
    }

    /// @notice getMarket for every market.
    function getMarkets() external view returns (MarketView[] memory views) {
        views = new MarketView[](exchange.marketCount());
        for (uint256 i = 0; i < views.length; ++i) {
            views[i] = getMarket(i);
        }
    }

    /// @notice The pool's liquidity, shares and reserve, and each market's open interest and funding rate.
    function getPoolState() external view returns (PoolState memory s) {
        s.totalLiquidity = exchange.poolAmount();
        s.totalShares = exchange.totalShares();
        s.reserved = exchange.reservedAmount();
        s.markets = new MarketPool[](exchange.marketCount());
        for (uint256 i = 0; i < s.markets.length; ++i) {
            MarketParams memory params = exchange.marketParams(i);
            MarketState memory state = exchange.marketState(i);
            s.markets[i] = MarketPool({
                marketId: i,
                longOI: state.longOI,
                shortOI: state.shortOI,
                fundingRate: PerpMath.fundingRate(params, state.longOI, state.shortOI)
            });
        }
    }

    /// @notice What opening or increasing a position by `sizeDelta` would cost now (ignores OI caps,
    ///         reserve and margin checks). Reverts like exchange.getPrice on a bad price.
    function quoteIncrease(uint256 marketId, bool isLong, uint256 sizeDelta) external view returns (Quote memory) {
        return _quote(marketId, isLong, sizeDelta, true);
    }

    /// @notice What decreasing a position by `sizeDelta` would cost now (the close fee at the fill
    ///         price; equity counts the close fee at the mark and no impact).
    function quoteDecrease(uint256 marketId, bool isLong, uint256 sizeDelta) external view returns (Quote memory) {
        return _quote(marketId, isLong, sizeDelta, false);
    }

    function _quote(uint256 marketId, bool isLong, uint256 sizeDelta, bool increase)
        private
        view
        returns (Quote memory q)
    {
        MarketParams memory params = exchange.marketParams(marketId);
        MarketState memory state = exchange.marketState(marketId);
        bool buying = isLong == increase;
        q.markPrice = exchange.getPrice(marketId);
        q.executionPrice = PerpMath.fillPrice(
            params, state.longOI, state.shortOI, q.markPrice, buying ? int256(sizeDelta) : -int256(sizeDelta)
        );
        q.priceImpactUsd = PerpMath.impactUsd(buying, sizeDelta, q.markPrice, q.executionPrice);
        q.fee = PerpMath.onNotional(sizeDelta, q.executionPrice, increase ? params.openFeeRate : params.closeFeeRate);
    }
}
