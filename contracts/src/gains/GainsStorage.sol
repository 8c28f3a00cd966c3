// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGains} from "./IGains.sol";
import {IERC20} from "../interfaces/IERC20.sol";

/// @title GainsStorage
/// @notice The state of the Gains test deployment and the rules both of its parts use (the
///         liquidation price, fees, holding fee accumulators, pending order bookkeeping): the
///         diamond (GainsTestDiamond: administration, delegates, views) and its trading facet
///         (GainsTradingFacet: market orders and the oracle's callbacks, run by delegatecall in
///         the diamond's storage) inherit it, so both see one layout.
abstract contract GainsStorage {
    uint256 internal constant PRECISION = 1e10;
    uint256 internal constant PERCENT = 100 * PRECISION;
    uint256 internal constant LEVERAGE_PRECISION = 1e3;
    uint256 internal constant SLIPPAGE_PRECISION = 100e3;
    uint256 internal constant LEGACY_LIQ_THRESHOLD_P = 90 * PRECISION;
    uint256 internal constant MULTIPLIER_PRECISION = 1e18;

    struct Holding {
        uint256 borrowingRatePerSecondP;
        int256 fundingRatePerSecondP;
        uint256 accBorrowingFeeP;
        int256 accFundingFeeLongP;
        int256 accFundingFeeShortP;
        uint256 lastUpdateTs;
    }

    struct Settlement {
        uint256 positionSize;
        uint256 sizeDelta;
        int256 pnl;
        uint256 closingFee;
        int256 holding;
        int256 net;
        uint256 existingLiqPrice;
    }

    struct Executed {
        IGains.Id orderId;
        address user;
        uint32 index;
        IGains.Trade t;
        bool open;
        uint256 price;
        uint256 liqPrice;
        int256 percentProfit;
        uint256 sent;
    }

    /// @notice Account that lists collaterals and pairs and sets test parameters.
    address public owner;
    /// @notice Account whose answers execute pending orders (the test oracle).
    address public oracle;

    uint16 internal _timeoutBlocks;
    address internal _senderOverride;
    IGains.Collateral[] internal _collaterals;
    mapping(uint8 => uint256) internal _collateralPriceUsd;
    IGains.Pair[] internal _pairs;
    IGains.FeeGroup[] internal _fees;
    mapping(uint256 => IGains.GroupLiquidationParams) internal _groupLiq;
    mapping(uint256 => uint256) internal _minLeverage;
    mapping(uint256 => uint256) internal _maxLeverage;
    mapping(uint16 => uint16) internal _counterTradeFeeRateMultiplier;
    mapping(uint8 => mapping(uint16 => Holding)) internal _holding;
    mapping(address => mapping(uint32 => IGains.Trade)) internal _trades;
    mapping(address => mapping(uint32 => IGains.TradeInfo)) internal _tradeInfos;
    mapping(address => mapping(uint32 => IGains.GroupLiquidationParams)) internal _tradeLiq;
    mapping(address => mapping(uint32 => IGains.TradeFeesData)) internal _tradeFees;
    mapping(address => uint32) internal _tradeCount;
    mapping(address => mapping(uint32 => IGains.PendingOrder)) internal _pending;
    mapping(address => uint32) internal _pendingCount;
    // trader -> trade index -> pending order type -> pending order index + 1 (0: none)
    mapping(address => mapping(uint32 => mapping(IGains.PendingOrderType => uint32))) internal _tradePending;
    mapping(address => address) internal _delegates;

    modifier onlyOwner() {
        if (msg.sender != owner) revert IGains.NotAuthorized();
        _;
    }

    modifier onlyOracle() {
        if (msg.sender != oracle) revert IGains.NotAuthorized();
        _;
    }

    modifier notDelegated() {
        if (_senderOverride != address(0)) revert IGains.DelegatedActionNotAllowed();
        _;
    }


    /// @dev Gains' liquidation price (1e10) of the trade described by `input`; zero when the
    ///      formula gives zero or less.
    function _liqPriceOf(IGains.LiqPriceInput memory input) internal view returns (uint256) {
        if (input.collateral == 0 || input.leverage == 0 || input.openPrice == 0) revert IGains.InvalidAmount();
        uint256 positionSize = (input.collateral * input.leverage) / LEVERAGE_PRECISION;
        int256 feeCollateral = int256(
            _closingFee(input.pairIndex, input.collateralIndex, positionSize, input.isCounterTrade)
        ) + input.additionalFeeCollateral;
        IGains.ContractsVersion version = IGains.ContractsVersion.V10;
        if (!input.beforeOpened) {
            IGains.TradeHoldingFees memory h = _holdingFees(input.trader, input.index, input.currentPairPrice);
            IGains.TradeFeesData storage d = _tradeFees[input.trader][input.index];
            int256 realized = int256(d.realizedPnlCollateral) - int256(uint256(d.realizedTradingFeesCollateral));
            feeCollateral += ((h.totalFeeCollateral - realized) * int256(input.partialCloseMultiplier))
                / int256(MULTIPLIER_PRECISION);
            version = _tradeInfos[input.trader][input.index].contractsVersion;
        }
        uint256 threshold = _liqThresholdP(input.liquidationParams, input.leverage);
        int256 liqNegativePnl = int256((input.collateral * threshold) / PERCENT);
        int256 open = int256(uint256(input.openPrice));
        int256 distance = (open * (liqNegativePnl - feeCollateral) * int256(LEVERAGE_PRECISION))
            / (int256(input.collateral) * int256(input.leverage));
        if (version >= IGains.ContractsVersion.V9_2 && input.liquidationParams.maxLiqSpreadP > 0) {
            distance -= int256((uint256(input.openPrice) * _closingSpreadP(input.pairIndex, input.liquidationParams)) / PERCENT);
        }
        int256 price = input.long ? open - distance : open + distance;
        return price > 0 ? uint256(price) : 0;
    }

    // --- internals --------------------------------------------------------------------------------

    function _counterMultiplier(uint16 index) internal view returns (uint16) {
        uint16 m = _counterTradeFeeRateMultiplier[index];
        return m == 0 ? uint16(LEVERAGE_PRECISION) : m;
    }

    function _msgSender() internal view returns (address) {
        return _senderOverride == address(0) ? msg.sender : _senderOverride;
    }

    function _collateral(uint8 index) internal view returns (IGains.Collateral memory) {
        if (index == 0 || index >= _collaterals.length) revert IGains.InvalidCollateralIndex();
        return _collaterals[index];
    }

    function _pair(uint256 index) internal view returns (IGains.Pair memory) {
        if (index >= _pairs.length) revert IGains.PairNotListed();
        return _pairs[index];
    }

    function _checkLeverage(uint256 pairIndex, uint256 leverage) internal view {
        if (leverage < _minLeverage[pairIndex] || leverage > _maxLeverage[pairIndex]) revert IGains.WrongLeverage();
    }

    function _openTrade(address trader, uint32 index) internal view returns (IGains.Trade memory t) {
        t = _trades[trader][index];
        if (!t.isOpen) revert IGains.NoTrade();
    }

    function _openCount(address trader) internal view returns (uint256 count) {
        uint32 n = _tradeCount[trader];
        for (uint32 i; i < n; ++i) {
            if (_trades[trader][i].isOpen) ++count;
        }
    }

    function _checkNoPending(address trader, uint32 index) internal view {
        mapping(IGains.PendingOrderType => uint32) storage p = _tradePending[trader][index];
        if (p[IGains.PendingOrderType.MARKET_CLOSE] != 0) revert IGains.AlreadyBeingMarketClosed();
        if (p[IGains.PendingOrderType.MARKET_PARTIAL_CLOSE] != 0) {
            revert IGains.ConflictingPendingOrder(IGains.PendingOrderType.MARKET_PARTIAL_CLOSE);
        }
        if (p[IGains.PendingOrderType.UPDATE_LEVERAGE] != 0) {
            revert IGains.ConflictingPendingOrder(IGains.PendingOrderType.UPDATE_LEVERAGE);
        }
    }

    function _store(
        address trader,
        IGains.Trade memory t,
        IGains.PendingOrderType orderType,
        uint16 maxSlippageP,
        bool onTrade
    ) internal returns (IGains.Id memory id) {
        uint32 orderIndex = _pendingCount[trader]++;
        _pending[trader][orderIndex] = IGains.PendingOrder({
            trade: t,
            user: trader,
            index: orderIndex,
            isOpen: true,
            orderType: orderType,
            createdBlock: uint32(block.number),
            maxSlippageP: maxSlippageP
        });
        if (onTrade) _tradePending[trader][t.index][orderType] = orderIndex + 1;
        id = IGains.Id(trader, orderIndex);
    }

    function _answer(IGains.AggregatorAnswer memory a, IGains.PendingOrderType orderType)
        internal
        returns (IGains.PendingOrder memory po)
    {
        po = _pending[a.orderId.user][a.orderId.index];
        if (!po.isOpen) revert IGains.PendingOrderNotOpen();
        if (po.orderType != orderType) revert IGains.WrongOrderType();
        _closePending(a.orderId.user, a.orderId.index);
    }

    function _closePending(address trader, uint32 orderIndex) internal {
        IGains.PendingOrder storage po = _pending[trader][orderIndex];
        po.isOpen = false;
        if (po.orderType != IGains.PendingOrderType.MARKET_OPEN) {
            delete _tradePending[trader][po.trade.index][po.orderType];
        }
    }

    /// @dev Past the max slippage (1e3 per cent of the expected price), against the trader: an
    ///      open long or a closing short pays more, an open short or a closing long gets less.
    function _slipped(bool long, bool opening, uint256 expected, uint256 price, uint256 maxSlippageP)
        internal
        pure
        returns (bool)
    {
        bool buys = long == opening;
        if (buys) return price * SLIPPAGE_PRECISION > expected * (SLIPPAGE_PRECISION + maxSlippageP);
        return price * SLIPPAGE_PRECISION < expected * (SLIPPAGE_PRECISION - maxSlippageP);
    }

    function _positionSize(IGains.Trade memory t) internal pure returns (uint256) {
        return (uint256(t.collateralAmount) * t.leverage) / LEVERAGE_PRECISION;
    }

    function _closingFee(uint256 pairIndex, uint8 collateralIndex, uint256 positionSize, bool isCounterTrade)
        internal
        view
        returns (uint256)
    {
        IGains.FeeGroup memory fee = _fees[_pair(pairIndex).feeIndex];
        uint256 multiplier = isCounterTrade ? _counterMultiplier(uint16(pairIndex)) : LEVERAGE_PRECISION;
        uint256 basis = (positionSize * multiplier) / LEVERAGE_PRECISION;
        uint256 minBasis = (uint256(fee.minPositionSizeUsd) * 1e5 * _collateral(collateralIndex).precision)
            / _collateralPriceUsd[collateralIndex];
        if (basis < minBasis) basis = minBasis;
        return (basis * fee.totalPositionSizeFeeP) / PERCENT;
    }

    function _liqThresholdP(IGains.GroupLiquidationParams memory p, uint256 leverage) internal pure returns (uint256) {
        if (
            p.maxLiqSpreadP == 0 || p.startLiqThresholdP == 0 || p.endLiqThresholdP == 0 || p.startLeverage == 0
                || p.endLeverage == 0
        ) return LEGACY_LIQ_THRESHOLD_P;
        // inclusive at both ends, as Gains' getLiqPnlThresholdP since its fix for the division by
        // zero when startLeverage equals endLeverage
        if (leverage <= p.startLeverage) return p.startLiqThresholdP;
        if (leverage >= p.endLeverage) return p.endLiqThresholdP;
        return p.startLiqThresholdP
            - ((leverage - p.startLeverage) * (p.startLiqThresholdP - p.endLiqThresholdP))
                / (p.endLeverage - p.startLeverage);
    }

    function _closingSpreadP(uint256 pairIndex, IGains.GroupLiquidationParams memory p)
        internal
        view
        returns (uint256)
    {
        uint256 spread = _pair(pairIndex).spreadP / 2;
        return spread > p.maxLiqSpreadP ? p.maxLiqSpreadP : spread;
    }

    function _accrued(uint8 collateralIndex, uint16 pairIndex, uint64 price)
        internal
        view
        returns (uint256 borrowing, int256 fundingLong, int256 fundingShort)
    {
        Holding storage h = _holding[collateralIndex][pairIndex];
        uint256 elapsed = h.lastUpdateTs == 0 ? 0 : block.timestamp - h.lastUpdateTs;
        borrowing = h.accBorrowingFeeP + h.borrowingRatePerSecondP * elapsed * price;
        int256 funding = h.fundingRatePerSecondP * int256(elapsed) * int256(uint256(price));
        fundingLong = h.accFundingFeeLongP + funding;
        fundingShort = h.accFundingFeeShortP - funding;
    }

    function _sync(uint8 collateralIndex, uint16 pairIndex, uint64 price) internal {
        (uint256 b, int256 fl, int256 fs) = _accrued(collateralIndex, pairIndex, price);
        Holding storage h = _holding[collateralIndex][pairIndex];
        (h.accBorrowingFeeP, h.accFundingFeeLongP, h.accFundingFeeShortP) = (b, fl, fs);
        h.lastUpdateTs = block.timestamp;
    }

    function _holdingFees(address trader, uint32 index, uint64 price)
        internal
        view
        returns (IGains.TradeHoldingFees memory f)
    {
        IGains.Trade memory t = _trades[trader][index];
        if (!t.isOpen || t.openPrice == 0) return f;
        IGains.TradeFeesData memory d = _tradeFees[trader][index];
        (uint256 b, int256 fl, int256 fs) = _accrued(t.collateralIndex, t.pairIndex, price);
        uint256 size = _positionSize(t);
        uint256 divisor = uint256(t.openPrice) * PERCENT;
        f.borrowingFeeCollateral = (size * (b - d.initialAccBorrowingFeeP)) / divisor;
        f.fundingFeeCollateral = (int256(size) * ((t.long ? fl : fs) - d.initialAccFundingFeeP)) / int256(divisor);
        f.totalFeeCollateral = f.fundingFeeCollateral + int256(f.borrowingFeeCollateral);
    }

    function _liqPrice(address trader, uint32 index, uint64 price) internal view returns (uint256) {
        IGains.Trade memory t = _trades[trader][index];
        return _liqPriceOf(
            IGains.LiqPriceInput({
                collateralIndex: t.collateralIndex,
                trader: trader,
                pairIndex: t.pairIndex,
                index: index,
                openPrice: t.openPrice,
                long: t.long,
                collateral: t.collateralAmount,
                leverage: t.leverage,
                additionalFeeCollateral: 0,
                liquidationParams: _tradeLiq[trader][index],
                currentPairPrice: price,
                isCounterTrade: t.isCounterTrade,
                partialCloseMultiplier: MULTIPLIER_PRECISION,
                beforeOpened: false
            })
        );
    }

    function _liquidatable(IGains.Trade memory t, uint256 liqPrice, uint256 price) internal pure returns (bool) {
        return t.long ? price <= liqPrice : price >= liqPrice;
    }

    /// @dev The pnl of `sizeDelta` of trade `t` at `price`, its closing fee and its share of the
    ///      holding fees, and what they net to (collateral units, signed).
    function _settle(IGains.Trade memory t, address trader, uint256 sizeDelta, uint64 price)
        internal
        view
        returns (Settlement memory s)
    {
        s.positionSize = _positionSize(t);
        s.sizeDelta = sizeDelta;
        s.existingLiqPrice = _liqPrice(trader, t.index, price);
        int256 move = int256(uint256(price)) - int256(uint256(t.openPrice));
        s.pnl = (int256(sizeDelta) * (t.long ? move : -move)) / int256(uint256(t.openPrice));
        s.closingFee = _closingFee(t.pairIndex, t.collateralIndex, sizeDelta, t.isCounterTrade);
        s.holding = (_holdingFees(trader, t.index, price).totalFeeCollateral * int256(sizeDelta)) / int256(s.positionSize);
        s.net = s.pnl - int256(s.closingFee) - s.holding;
    }

    function _decrease(
        IGains.Trade memory t,
        address trader,
        IGains.Trade memory delta,
        uint64 price,
        IGains.DecreasePositionSizeValues memory v
    ) internal {
        _sync(t.collateralIndex, t.pairIndex, price);
        uint256 sizeDelta = delta.leverage > 0
            ? (uint256(t.collateralAmount) * delta.leverage) / LEVERAGE_PRECISION
            : (uint256(delta.collateralAmount) * t.leverage) / LEVERAGE_PRECISION;
        Settlement memory s = _settle(t, trader, sizeDelta, price);
        uint256 newCollateral = uint256(t.collateralAmount) - delta.collateralAmount;
        int256 sent = int256(uint256(delta.collateralAmount)) + s.net;
        if (sent < 0) {
            if (uint256(-sent) >= newCollateral) revert IGains.InsufficientCollateral();
            newCollateral -= uint256(-sent);
            sent = 0;
        }
        IGains.Trade storage stored = _trades[trader][t.index];
        stored.collateralAmount = uint120(newCollateral);
        stored.leverage = t.leverage - delta.leverage;
        if (sent > 0) _push(_collaterals[t.collateralIndex].collateral, trader, uint256(sent));
        v.positionSizeCollateralDelta = sizeDelta;
        v.existingPositionSizeCollateral = s.positionSize;
        v.partialRawPnlCollateral = s.pnl;
        v.partialNetPnlCollateral = s.net;
        v.closingFeeCollateral = s.closingFee;
        v.collateralSentToTrader = sent;
        v.newCollateralAmount = uint120(newCollateral);
        v.newLeverage = stored.leverage;
        v.newLiqPrice = _liqPrice(trader, t.index, price);
        v.priceImpact = _noImpact(price);
    }

    function _liquidate(address trader, uint32 index) internal {
        _removeTrade(trader, index);
        emit IGains.TradeClosed(trader, index, false);
    }

    function _removeTrade(address trader, uint32 index) internal {
        _trades[trader][index].isOpen = false;
        mapping(IGains.PendingOrderType => uint32) storage p = _tradePending[trader][index];
        IGains.PendingOrderType[3] memory kinds = [
            IGains.PendingOrderType.MARKET_CLOSE,
            IGains.PendingOrderType.MARKET_PARTIAL_CLOSE,
            IGains.PendingOrderType.UPDATE_LEVERAGE
        ];
        for (uint256 i; i < kinds.length; ++i) {
            uint32 at = p[kinds[i]];
            if (at == 0) continue;
            _pending[trader][at - 1].isOpen = false;
            delete p[kinds[i]];
            if (kinds[i] == IGains.PendingOrderType.UPDATE_LEVERAGE) {
                IGains.Trade memory po = _pending[trader][at - 1].trade;
                if (po.leverage < _trades[trader][index].leverage) {
                    _push(_collaterals[po.collateralIndex].collateral, trader, po.collateralAmount);
                }
            }
        }
    }

    function _emitExecuted(Executed memory e) internal {
        emit IGains.MarketExecuted(
            e.orderId,
            e.user,
            e.index,
            e.t,
            e.open,
            e.price,
            e.price,
            e.liqPrice,
            _noImpact(uint64(e.price)),
            e.percentProfit,
            e.sent,
            _collateralPriceUsd[e.t.collateralIndex]
        );
    }

    function _noImpact(uint64 price) internal pure returns (IGains.TradePriceImpact memory impact) {
        impact.priceAfterImpact = price;
    }

    function _pull(address token, address from, uint256 amount) internal {
        if (!IERC20(token).transferFrom(from, address(this), amount)) revert IGains.InsufficientCollateral();
    }

    function _push(address token, address to, uint256 amount) internal {
        if (!IERC20(token).transfer(to, amount)) revert IGains.InsufficientCollateral();
    }
}
