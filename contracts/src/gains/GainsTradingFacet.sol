// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGains} from "./IGains.sol";
import {GainsStorage} from "./GainsStorage.sol";

/// @title GainsTradingFacet
/// @notice The trading functions of the Gains test deployment (the diamond's facet for them):
///         market opens, closes, position size decreases and leverage updates stored as pending
///         orders, their cancellation after the timeout, and the oracle's callbacks that execute
///         or cancel them. Reached only through the diamond (GainsTestDiamond's fallback
///         delegatecalls here), in the diamond's storage; see GainsTestDiamond for the rules.
contract GainsTradingFacet is GainsStorage {
    /// @notice Stores a market open of `trade` (its openPrice is the expected price), taking its
    ///         collateral from the trader; the oracle's answer opens it.
    function openTrade(IGains.Trade memory trade, uint16 maxSlippageP, address) external {
        address trader = _msgSender();
        if (trade.tradeType != IGains.TradeType.TRADE) revert IGains.WrongOrderType();
        if (maxSlippageP == 0) revert IGains.MaxSlippageZero();
        if (trade.openPrice == 0) revert IGains.PriceZero();
        if (trade.collateralAmount == 0) revert IGains.InvalidAmount();
        IGains.Collateral memory c = _collateral(trade.collateralIndex);
        if (!c.isActive) revert IGains.CollateralNotActive();
        _pair(trade.pairIndex);
        _checkLeverage(trade.pairIndex, trade.leverage);
        trade.user = trader;
        trade.isOpen = false;
        _pull(c.collateral, trader, trade.collateralAmount);
        IGains.Id memory id = _store(trader, trade, IGains.PendingOrderType.MARKET_OPEN, maxSlippageP, false);
        emit IGains.MarketOrderInitiated(id, trader, trade.pairIndex, true);
    }

    /// @notice Stores a market close of trade `index` at about `expectedPrice` (within the trade's
    ///         max slippage); the oracle's answer closes it.
    function closeTradeMarket(uint32 index, uint64 expectedPrice) external {
        address trader = _msgSender();
        IGains.Trade memory t = _openTrade(trader, index);
        if (expectedPrice == 0) revert IGains.PriceZero();
        _checkNoPending(trader, index);
        t.openPrice = expectedPrice;
        IGains.Id memory id = _store(
            trader, t, IGains.PendingOrderType.MARKET_CLOSE, _tradeInfos[trader][index].maxSlippageP, true
        );
        emit IGains.MarketOrderInitiated(id, trader, t.pairIndex, false);
    }

    /// @notice Stores a decrease of trade `index`: by `collateralDelta` of collateral at the same
    ///         leverage, or by `leverageDelta` of leverage with the same collateral (exactly one is
    ///         non-zero), at about `expectedPrice`.
    function decreasePositionSize(uint32 index, uint120 collateralDelta, uint24 leverageDelta, uint64 expectedPrice)
        external
    {
        address trader = _msgSender();
        IGains.Trade memory t = _openTrade(trader, index);
        if (expectedPrice == 0) revert IGains.PriceZero();
        if ((collateralDelta == 0) == (leverageDelta == 0)) revert IGains.InvalidDecreasePositionSizeInput();
        if (collateralDelta >= t.collateralAmount || leverageDelta >= t.leverage) {
            revert IGains.InvalidDecreasePositionSizeInput();
        }
        if (leverageDelta > 0) _checkLeverage(t.pairIndex, t.leverage - leverageDelta);
        _checkNoPending(trader, index);
        uint16 pairIndex = t.pairIndex;
        t.collateralAmount = collateralDelta;
        t.leverage = leverageDelta;
        t.openPrice = expectedPrice;
        IGains.Id memory id = _store(
            trader, t, IGains.PendingOrderType.MARKET_PARTIAL_CLOSE, _tradeInfos[trader][index].maxSlippageP, true
        );
        emit IGains.PositionSizeUpdateInitiated(id, trader, pairIndex, index, false, collateralDelta, leverageDelta);
    }

    /// @notice Stores a leverage update of trade `index` to `newLeverage` at the same position
    ///         size: a decrease takes collateral * (leverage / newLeverage - 1) from the trader now
    ///         (returned if the order is cancelled); an increase frees collateral when executed.
    function updateLeverage(uint32 index, uint24 newLeverage) external {
        address trader = _msgSender();
        IGains.Trade memory t = _openTrade(trader, index);
        if (newLeverage == t.leverage) revert IGains.WrongLeverage();
        _checkLeverage(t.pairIndex, newLeverage);
        _checkNoPending(trader, index);
        bool isIncrease = newLeverage > t.leverage;
        uint256 newCollateral = (uint256(t.collateralAmount) * t.leverage) / newLeverage;
        uint256 delta = isIncrease ? t.collateralAmount - newCollateral : newCollateral - t.collateralAmount;
        if (delta == 0) revert IGains.WrongLeverage();
        if (!isIncrease) _pull(_collaterals[t.collateralIndex].collateral, trader, delta);
        uint16 pairIndex = t.pairIndex;
        t.leverage = newLeverage;
        t.collateralAmount = uint120(delta);
        IGains.Id memory id = _store(trader, t, IGains.PendingOrderType.UPDATE_LEVERAGE, 0, true);
        emit IGains.LeverageUpdateInitiated(id, trader, pairIndex, index, isIncrease, newLeverage);
    }

    /// @notice Closes the caller's pending order `orderIndex` left unanswered for
    ///         `getMarketOrdersTimeoutBlocks()` blocks, returning the collateral it holds.
    function cancelOrderAfterTimeout(uint32 orderIndex) external {
        address trader = _msgSender();
        IGains.PendingOrder storage po = _pending[trader][orderIndex];
        if (!po.isOpen) revert IGains.NoOrder();
        if (block.number < uint256(po.createdBlock) + _timeoutBlocks) revert IGains.WaitTimeout();
        IGains.PendingOrder memory order = po;
        _closePending(trader, orderIndex);
        uint256 refund;
        if (order.orderType == IGains.PendingOrderType.MARKET_OPEN) {
            refund = order.trade.collateralAmount;
        } else if (
            order.orderType == IGains.PendingOrderType.UPDATE_LEVERAGE
                && order.trade.leverage < _trades[trader][order.trade.index].leverage
        ) {
            refund = order.trade.collateralAmount;
        }
        IGains.Id memory id = IGains.Id(trader, orderIndex);
        emit IGains.ChainlinkCallbackTimeout(id, order.trade.pairIndex);
        if (refund > 0) {
            _push(_collaterals[order.trade.collateralIndex].collateral, trader, refund);
            emit IGains.CollateralReturnedAfterTimeout(id, order.trade.collateralIndex, trader, refund);
        }
    }

    // --- oracle callbacks -------------------------------------------------------------------------

    /// @notice The oracle's answer to a market open: opens the trade at `a.current` (the opening
    ///         fee taken from its collateral), or cancels it past the max slippage.
    function openTradeMarketCallback(IGains.AggregatorAnswer memory a) external onlyOracle {
        IGains.PendingOrder memory po = _answer(a, IGains.PendingOrderType.MARKET_OPEN);
        IGains.Trade memory t = po.trade;
        address trader = po.user;
        if (a.current == 0 || _slipped(t.long, true, t.openPrice, a.current, po.maxSlippageP)) {
            _push(_collaterals[t.collateralIndex].collateral, trader, t.collateralAmount);
            emit IGains.MarketOpenCanceled(
                a.orderId, trader, t.pairIndex, uint8(IGains.CancelReason.SLIPPAGE), t.collateralAmount
            );
            return;
        }
        uint32 index = _open(t, trader, a.current, po.maxSlippageP);
        _emitExecuted(
            Executed(a.orderId, trader, index, _trades[trader][index], true, a.current, _liqPrice(trader, index, a.current), 0, 0)
        );
    }

    /// @dev Stores trade `t` of `trader` opened at `price` (its opening fee taken from the
    ///      collateral) with its info, liquidation parameters and initial holding accumulators.
    function _open(IGains.Trade memory t, address trader, uint64 price, uint16 maxSlippageP)
        internal
        returns (uint32 index)
    {
        uint256 fee = _closingFee(t.pairIndex, t.collateralIndex, _positionSize(t), t.isCounterTrade);
        if (fee >= t.collateralAmount) revert IGains.InsufficientCollateral();
        _sync(t.collateralIndex, t.pairIndex, price);
        index = _tradeCount[trader]++;
        t.index = index;
        t.isOpen = true;
        t.openPrice = price;
        t.collateralAmount -= uint120(fee);
        t.positionSizeToken = uint160(
            (_positionSize(t) * _collateralPriceUsd[t.collateralIndex] * 1e18 * PRECISION)
                / (uint256(_collaterals[t.collateralIndex].precision) * 1e8 * price)
        );
        _trades[trader][index] = t;
        _tradeInfos[trader][index] = IGains.TradeInfo({
            createdBlock: uint32(block.number),
            tpLastUpdatedBlock: uint32(block.number),
            slLastUpdatedBlock: uint32(block.number),
            maxSlippageP: maxSlippageP,
            lastOiUpdateTs: uint48(block.timestamp),
            collateralPriceUsd: uint48(_collateralPriceUsd[t.collateralIndex]),
            contractsVersion: IGains.ContractsVersion.V10,
            lastPosIncreaseBlock: uint32(block.number),
            __placeholder: 0
        });
        _tradeLiq[trader][index] = _groupLiq[_pairs[t.pairIndex].groupIndex];
        Holding storage h = _holding[t.collateralIndex][t.pairIndex];
        IGains.TradeFeesData storage d = _tradeFees[trader][index];
        d.initialAccBorrowingFeeP = uint128(h.accBorrowingFeeP);
        d.initialAccFundingFeeP = int128(t.long ? h.accFundingFeeLongP : h.accFundingFeeShortP);
    }

    /// @notice The oracle's answer to a market close: closes the trade at `a.current` and pays
    ///         the trader collateral + pnl - closing fee - holding fees (at least zero); cancels past
    ///         the max slippage; liquidates a trade past its liquidation price.
    function closeTradeMarketCallback(IGains.AggregatorAnswer memory a) external onlyOracle {
        IGains.PendingOrder memory po = _answer(a, IGains.PendingOrderType.MARKET_CLOSE);
        address trader = po.user;
        IGains.Trade memory t = _trades[trader][po.trade.index];
        IGains.CancelReason reason = IGains.CancelReason.NONE;
        if (!t.isOpen) {
            reason = IGains.CancelReason.NO_TRADE;
        } else if (a.current == 0 || _slipped(t.long, false, po.trade.openPrice, a.current, po.maxSlippageP)) {
            reason = IGains.CancelReason.SLIPPAGE;
        } else if (_liquidatable(t, _liqPrice(trader, t.index, a.current), a.current)) {
            reason = IGains.CancelReason.LIQ_REACHED;
            _liquidate(trader, t.index);
        }
        if (reason != IGains.CancelReason.NONE) {
            emit IGains.MarketCloseCanceled(a.orderId, trader, t.pairIndex, po.trade.index, reason);
            return;
        }
        Settlement memory s = _settle(t, trader, _positionSize(t), a.current);
        int256 value = int256(uint256(t.collateralAmount)) + s.net;
        uint256 sent = value > 0 ? uint256(value) : 0;
        int256 percentProfit = (s.pnl * int256(PERCENT)) / int256(uint256(t.collateralAmount));
        _removeTrade(trader, t.index);
        if (sent > 0) _push(_collaterals[t.collateralIndex].collateral, trader, sent);
        t.isOpen = false;
        _emitExecuted(Executed(a.orderId, trader, t.index, t, false, a.current, s.existingLiqPrice, percentProfit, sent));
        emit IGains.TradeClosed(trader, t.index, s.pnl > 0);
    }

    /// @notice The oracle's answer to a position size decrease: closes part of the trade at
    ///         `a.current` (the part's pnl less its closing fee and holding fees settled at once:
    ///         paid to the trader, or taken from the collateral); cancelled past the max slippage
    ///         or the liquidation price.
    function decreasePositionSizeMarketCallback(IGains.AggregatorAnswer memory a) external onlyOracle {
        IGains.PendingOrder memory po = _answer(a, IGains.PendingOrderType.MARKET_PARTIAL_CLOSE);
        address trader = po.user;
        IGains.Trade memory t = _trades[trader][po.trade.index];
        IGains.DecreasePositionSizeValues memory v;
        v.isLeverageUpdate = po.trade.leverage > 0;
        IGains.CancelReason reason = IGains.CancelReason.NONE;
        if (!t.isOpen) {
            reason = IGains.CancelReason.NO_TRADE;
        } else if (a.current == 0 || _slipped(t.long, false, po.trade.openPrice, a.current, po.maxSlippageP)) {
            reason = IGains.CancelReason.SLIPPAGE;
        } else {
            v.existingLiqPrice = _liqPrice(trader, t.index, a.current);
            if (_liquidatable(t, v.existingLiqPrice, a.current)) reason = IGains.CancelReason.LIQ_REACHED;
        }
        if (reason == IGains.CancelReason.NONE) {
            _decrease(t, trader, po.trade, a.current, v);
        }
        emit IGains.PositionSizeDecreaseExecuted(
            a.orderId,
            reason,
            t.collateralIndex,
            trader,
            t.pairIndex,
            po.trade.index,
            t.long,
            a.current,
            _collateralPriceUsd[t.collateralIndex],
            po.trade.collateralAmount,
            po.trade.leverage,
            v
        );
    }

    /// @notice The oracle's answer to a leverage update: sets the new leverage and collateral at
    ///         the same position size (an increase pays the freed collateral out), unless the trade
    ///         is gone or past its liquidation price at `a.current` (then a decrease's collateral
    ///         goes back to the trader).
    function updateLeverageCallback(IGains.AggregatorAnswer memory a) external onlyOracle {
        IGains.PendingOrder memory po = _answer(a, IGains.PendingOrderType.UPDATE_LEVERAGE);
        IGains.Trade memory t = _trades[po.user][po.trade.index];
        (IGains.CancelReason reason, IGains.UpdateLeverageValues memory v) = _updateLeverage(po, t, a.current);
        _emitLeverage(a.orderId, po, t, reason, a.current, v);
    }

    function _updateLeverage(IGains.PendingOrder memory po, IGains.Trade memory t, uint64 price)
        internal
        returns (IGains.CancelReason reason, IGains.UpdateLeverageValues memory v)
    {
        address trader = po.user;
        bool isIncrease = po.trade.leverage > t.leverage;
        if (!t.isOpen) {
            reason = IGains.CancelReason.NO_TRADE;
        } else if (price == 0) {
            reason = IGains.CancelReason.SLIPPAGE;
        } else {
            v.existingLiqPrice = _liqPrice(trader, t.index, price);
            if (_liquidatable(t, v.existingLiqPrice, price)) reason = IGains.CancelReason.LIQ_REACHED;
        }
        uint256 delta = po.trade.collateralAmount;
        address token = _collaterals[po.trade.collateralIndex].collateral;
        if (reason != IGains.CancelReason.NONE) {
            if (!isIncrease) _push(token, trader, delta);
            return (reason, v);
        }
        uint256 newCollateral = isIncrease ? t.collateralAmount - delta : t.collateralAmount + delta;
        IGains.Trade storage stored = _trades[trader][t.index];
        stored.collateralAmount = uint120(newCollateral);
        stored.leverage = po.trade.leverage;
        v.newLeverage = po.trade.leverage;
        v.newCollateralAmount = newCollateral;
        v.newEffectiveLeverage = po.trade.leverage;
        v.newLiqPrice = _liqPrice(trader, t.index, price);
        if (isIncrease) {
            if (_liquidatable(stored, v.newLiqPrice, price)) revert IGains.InsufficientCollateral();
            _push(token, trader, delta);
        }
    }

    function _emitLeverage(
        IGains.Id memory id,
        IGains.PendingOrder memory po,
        IGains.Trade memory t,
        IGains.CancelReason reason,
        uint64 price,
        IGains.UpdateLeverageValues memory v
    ) internal {
        emit IGains.LeverageUpdateExecuted(
            id,
            po.trade.leverage > t.leverage,
            reason,
            t.collateralIndex,
            po.user,
            t.pairIndex,
            po.trade.index,
            price,
            po.trade.collateralAmount,
            v
        );
    }

    /// @notice The test deployment's stand-in for Gains' liquidation triggers: liquidates trade
    ///         `index` of `trader` at `price` when it is at or past its liquidation price (the
    ///         collateral stays with the contract).
    function liquidateTrade(address trader, uint32 index, uint64 price) external onlyOracle {
        IGains.Trade memory t = _openTrade(trader, index);
        if (price == 0) revert IGains.PriceZero();
        if (!_liquidatable(t, _liqPrice(trader, index, price), price)) revert IGains.NotAuthorized();
        _liquidate(trader, index);
    }
}
