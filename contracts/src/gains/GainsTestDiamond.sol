// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGains} from "./IGains.sol";
import {GainsStorage} from "./GainsStorage.sol";

/// @title GainsTestDiamond
/// @notice A Gains Network gTrade-compatible test deployment: the functions of
///         GNSMultiCollatDiamond (contracts v10) the keeper touches, with the diamond's ABI (see
///         IGains), and the rules behind them. Like Gains' diamond, one address serves them all:
///         administration, delegates and views here, trading and the oracle's callbacks in
///         GainsTradingFacet, reached through the fallback (GainsStorage holds the shared state). Market orders (open, close, position size
///         decrease, leverage update) are stored as pending orders and executed later, when the
///         oracle answers through the callbacks; a pending order the oracle never answers can be
///         cancelled by its trader after `getMarketOrdersTimeoutBlocks()` blocks. A trader may
///         name one trading delegate, which acts for the trader through `delegatedTradingAction`
///         (the trader pays and receives; the delegate only signs).
///
///         Liquidation follows Gains: a trade is liquidated when the price reaches
///         `getTradeLiquidationPrice`, where the distance from the open price is
///         openPrice * (collateral * liqThresholdP - fees) / (collateral * leverage), less the
///         closing spread (half the pair spread, at most maxLiqSpreadP) when the trade's
///         liquidation parameters set one; fees = the closing fee on the position size (at least
///         the fee group's minimum position size) plus pending holding fees less realized pnl.
///         liqThresholdP runs linearly from startLiqThresholdP at startLeverage to
///         endLiqThresholdP at endLeverage (90% when the parameters are unset).
///
///         Holding fees: per collateral and pair, a borrowing rate and a signed funding rate per
///         second (1e10 per cent), accrued like Gains' v10 accumulators (rate * seconds * pair
///         price, 1e20) and charged on the position size over the open price.
///
///         What is simpler than Gains: no opening spread or price impact (trades open and close
///         at the oracle's price), no limit or stop orders, no open-interest caps, no vault (the
///         contract holds the collateral and pays profits from its own balance), realized pnl of
///         a partial decrease is settled at once (paid out, or taken from the collateral), and
///         liquidations are made by the oracle (`liquidateTrade`) instead of Gains' trigger bots.
///         Test-only administration (listing collaterals and pairs, prices, rates) is the owner's.
contract GainsTestDiamond is GainsStorage {
    /// @notice The facet the trading functions and callbacks are delegated to.
    address public immutable tradingFacet;

    /// @param oracle_ The account (the test oracle contract) whose answers execute pending orders.
    /// @param tradingFacet_ The GainsTradingFacet the trading functions run in.
    constructor(address oracle_, address tradingFacet_) {
        if (oracle_ == address(0) || tradingFacet_ == address(0)) revert IGains.ZeroAddress();
        tradingFacet = tradingFacet_;
        owner = msg.sender;
        oracle = oracle_;
        _timeoutBlocks = 30;
        _collaterals.push(); // Gains numbers collaterals from 1
    }

    // --- test administration ----------------------------------------------------------------------

    /// @notice Lists `token` (with `decimals`) as a collateral at `priceUsd` (1e8); returns its index.
    function listCollateral(address token, uint8 decimals, uint256 priceUsd) external onlyOwner returns (uint8) {
        if (token == address(0)) revert IGains.ZeroAddress();
        if (decimals > 18 || priceUsd == 0) revert IGains.InvalidAmount();
        _collaterals.push(
            IGains.Collateral({
                collateral: token,
                isActive: true,
                __placeholder: 0,
                precision: uint128(10 ** decimals),
                precisionDelta: uint128(10 ** (18 - decimals))
            })
        );
        uint8 index = uint8(_collaterals.length - 1);
        _collateralPriceUsd[index] = priceUsd;
        return index;
    }

    /// @notice Sets collateral `index`'s USD price (1e8).
    function setCollateralPriceUsd(uint8 index, uint256 priceUsd) external onlyOwner {
        _collateral(index);
        if (priceUsd == 0) revert IGains.InvalidAmount();
        _collateralPriceUsd[index] = priceUsd;
    }

    /// @notice Lists a pair with its own fee group and liquidation parameters (group index = pair
    ///         index) and leverage bounds (1e3); returns the pair's index.
    function listPair(
        IGains.Pair memory pair,
        IGains.FeeGroup memory fee,
        IGains.GroupLiquidationParams memory liq,
        uint256 minLeverage,
        uint256 maxLeverage
    ) external onlyOwner returns (uint256) {
        if (minLeverage == 0 || maxLeverage < minLeverage || maxLeverage > type(uint24).max) {
            revert IGains.WrongLeverage();
        }
        uint256 index = _pairs.length;
        pair.groupIndex = index;
        pair.feeIndex = _fees.length;
        _pairs.push(pair);
        _fees.push(fee);
        _groupLiq[index] = liq;
        _minLeverage[index] = minLeverage;
        _maxLeverage[index] = maxLeverage;
        return index;
    }

    /// @notice Sets group `index`'s liquidation parameters (for trades opened afterwards).
    function setGroupLiquidationParams(uint256 index, IGains.GroupLiquidationParams memory params) external onlyOwner {
        if (index >= _pairs.length) revert IGains.PairNotListed();
        _groupLiq[index] = params;
    }

    /// @notice Sets the fee multipliers (1e3) of counter trades on `pairIndices`.
    function setPairCounterTradeFeeRateMultipliers(uint16[] calldata pairIndices, uint16[] calldata values)
        external
        onlyOwner
    {
        if (pairIndices.length != values.length) revert IGains.InvalidAmount();
        for (uint256 i; i < pairIndices.length; ++i) {
            _counterTradeFeeRateMultiplier[pairIndices[i]] = values[i];
        }
    }

    /// @notice Sets the borrowing and funding rates per second (1e10 per cent) of a collateral's
    ///         pair, accruing what the old rates owe up to now at `currentPairPrice` first.
    function setHoldingRates(
        uint8 collateralIndex,
        uint16 pairIndex,
        uint256 borrowingRatePerSecondP,
        int256 fundingRatePerSecondP,
        uint64 currentPairPrice
    ) external onlyOwner {
        _collateral(collateralIndex);
        _pair(pairIndex);
        _sync(collateralIndex, pairIndex, currentPairPrice);
        Holding storage h = _holding[collateralIndex][pairIndex];
        h.borrowingRatePerSecondP = borrowingRatePerSecondP;
        h.fundingRatePerSecondP = fundingRatePerSecondP;
    }

    /// @notice Sets how many blocks a pending market order waits before its trader may cancel it.
    function updateMarketOrdersTimeoutBlocks(uint16 valueBlocks) external onlyOwner {
        if (valueBlocks == 0) revert IGains.InvalidAmount();
        _timeoutBlocks = valueBlocks;
    }

    /// @notice Moves the oracle role.
    function setOracle(address oracle_) external onlyOwner {
        if (oracle_ == address(0)) revert IGains.ZeroAddress();
        oracle = oracle_;
    }
    // --- trading delegates ----------------------------------------------------------------------

    /// @notice Names `delegate` as the caller's trading delegate (replacing any other).
    function setTradingDelegate(address delegate) external notDelegated {
        if (delegate == address(0)) revert IGains.ZeroAddress();
        _delegates[msg.sender] = delegate;
    }

    /// @notice Removes the caller's trading delegate.
    function removeTradingDelegate() external notDelegated {
        delete _delegates[msg.sender];
    }

    /// @notice The trading delegate of `trader` (zero: none).
    function getTradingDelegate(address trader) external view returns (address) {
        return _delegates[trader];
    }

    /// @notice Runs `callData` (a trading call of this contract) as `trader`; the caller must be
    ///         `trader`'s delegate. The call's collateral comes from, and its proceeds go to,
    ///         `trader`. Returns the call's return data; reverts with its revert data.
    function delegatedTradingAction(address trader, bytes calldata callData)
        external
        notDelegated
        returns (bytes memory)
    {
        if (_delegates[trader] != msg.sender || trader == address(0)) revert IGains.DelegateNotApproved();
        _senderOverride = trader;
        (bool ok, bytes memory result) = address(this).delegatecall(callData);
        _senderOverride = address(0);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }
    // --- views ------------------------------------------------------------------------------------

    /// @notice The open trades of `trader`, in index order.
    function getTrades(address trader) external view returns (IGains.Trade[] memory out) {
        uint32 n = _tradeCount[trader];
        out = new IGains.Trade[](_openCount(trader));
        uint256 k;
        for (uint32 i; i < n; ++i) {
            if (_trades[trader][i].isOpen) out[k++] = _trades[trader][i];
        }
    }

    /// @notice The TradeInfo of each open trade of `trader`, in the order of getTrades.
    function getTradeInfos(address trader) external view returns (IGains.TradeInfo[] memory out) {
        uint32 n = _tradeCount[trader];
        out = new IGains.TradeInfo[](_openCount(trader));
        uint256 k;
        for (uint32 i; i < n; ++i) {
            if (_trades[trader][i].isOpen) out[k++] = _tradeInfos[trader][i];
        }
    }

    /// @notice The liquidation parameters of each open trade of `trader`, in the order of getTrades.
    function getTradesLiquidationParams(address trader)
        external
        view
        returns (IGains.GroupLiquidationParams[] memory out)
    {
        uint32 n = _tradeCount[trader];
        out = new IGains.GroupLiquidationParams[](_openCount(trader));
        uint256 k;
        for (uint32 i; i < n; ++i) {
            if (_trades[trader][i].isOpen) out[k++] = _tradeLiq[trader][i];
        }
    }

    /// @notice Trade `index` of `trader` (isOpen false once closed).
    function getTrade(address trader, uint32 index) external view returns (IGains.Trade memory) {
        return _trades[trader][index];
    }

    /// @notice TradeInfo of trade `index` of `trader`.
    function getTradeInfo(address trader, uint32 index) external view returns (IGains.TradeInfo memory) {
        return _tradeInfos[trader][index];
    }

    /// @notice The liquidation parameters trade `index` of `trader` was opened with.
    function getTradeLiquidationParams(address trader, uint32 index)
        external
        view
        returns (IGains.GroupLiquidationParams memory)
    {
        return _tradeLiq[trader][index];
    }

    /// @notice The fee bookkeeping of trade `index` of `trader`.
    function getTradeFeesData(address trader, uint32 index) external view returns (IGains.TradeFeesData memory) {
        return _tradeFees[trader][index];
    }

    /// @notice The holding fees trade `index` of `trader` owes now, at `currentPairPrice` (1e10).
    function getTradePendingHoldingFeesCollateral(address trader, uint32 index, uint64 currentPairPrice)
        external
        view
        returns (IGains.TradeHoldingFees memory tradeHoldingFees)
    {
        return _holdingFees(trader, index, currentPairPrice);
    }

    /// @notice Gains' liquidation price (1e10) of the trade described by `input`; zero when the
    ///         formula gives zero or less (see the contract's notice for the rule).
    function getTradeLiquidationPrice(IGains.LiqPriceInput memory input) external view returns (uint256) {
        return _liqPriceOf(input);
    }

    /// @notice The pending order `orderId`.
    function getPendingOrder(IGains.Id memory orderId) external view returns (IGains.PendingOrder memory) {
        return _pending[orderId.user][orderId.index];
    }

    /// @notice The open pending orders of `user`.
    function getPendingOrders(address user) external view returns (IGains.PendingOrder[] memory out) {
        uint32 n = _pendingCount[user];
        uint256 open;
        for (uint32 i; i < n; ++i) {
            if (_pending[user][i].isOpen) ++open;
        }
        out = new IGains.PendingOrder[](open);
        uint256 k;
        for (uint32 i; i < n; ++i) {
            if (_pending[user][i].isOpen) out[k++] = _pending[user][i];
        }
    }

    /// @notice Blocks a pending market order waits before its trader may cancel it.
    function getMarketOrdersTimeoutBlocks() external view returns (uint16) {
        return _timeoutBlocks;
    }

    /// @notice Collateral `index` (index 0 is not a collateral).
    function getCollateral(uint8 index) external view returns (IGains.Collateral memory) {
        return _collaterals[index];
    }

    /// @notice Every listed collateral, from index 1.
    function getCollaterals() external view returns (IGains.Collateral[] memory out) {
        out = new IGains.Collateral[](_collaterals.length - 1);
        for (uint256 i = 1; i < _collaterals.length; ++i) {
            out[i - 1] = _collaterals[i];
        }
    }

    /// @notice How many collaterals are listed.
    function getCollateralsCount() external view returns (uint8) {
        return uint8(_collaterals.length - 1);
    }

    /// @notice Collateral `index`'s USD price (1e8).
    function getCollateralPriceUsd(uint8 index) external view returns (uint256) {
        _collateral(index);
        return _collateralPriceUsd[index];
    }

    /// @notice Pair `index`.
    function pairs(uint256 index) external view returns (IGains.Pair memory) {
        return _pair(index);
    }

    /// @notice How many pairs are listed.
    function pairsCount() external view returns (uint256) {
        return _pairs.length;
    }

    /// @notice Fee group `index`.
    function fees(uint256 index) external view returns (IGains.FeeGroup memory) {
        return _fees[index];
    }

    /// @notice Pair `index`'s fee on the position size (1e10 per cent).
    function pairTotalPositionSizeFeeP(uint256 index) external view returns (uint256) {
        return _fees[_pair(index).feeIndex].totalPositionSizeFeeP;
    }

    /// @notice Pair `index`'s minimum leverage (1e3).
    function pairMinLeverage(uint256 index) external view returns (uint256) {
        _pair(index);
        return _minLeverage[index];
    }

    /// @notice Pair `index`'s maximum leverage (1e3).
    function pairMaxLeverage(uint256 index) external view returns (uint256) {
        _pair(index);
        return _maxLeverage[index];
    }

    /// @notice Pair `index`'s spread (1e10 per cent; the same for every trader here).
    function pairSpreadP(address, uint256 index) external view returns (uint256) {
        return _pair(index).spreadP;
    }

    /// @notice Group `index`'s liquidation parameters (a pair's, here).
    function getPairLiquidationParams(uint256 index) external view returns (IGains.GroupLiquidationParams memory) {
        _pair(index);
        return _groupLiq[_pairs[index].groupIndex];
    }

    /// @notice The fee multiplier (1e3) of counter trades on pair `index` (1000 when unset).
    function getPairCounterTradeFeeRateMultiplier(uint16 index) external view returns (uint16) {
        return _counterMultiplier(index);
    }

    /// @notice Every other call (the trading functions and callbacks) runs in the trading facet,
    ///         in this contract's storage, like a diamond's facets.
    fallback() external {
        address facet = tradingFacet;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), facet, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
