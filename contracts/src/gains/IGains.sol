// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IGains
/// @notice The Gains Network gTrade (GNSMultiCollatDiamond, contracts v10) types, events and errors
///         the keeper touches, field for field in the order of the diamond's ABI as the
///         Gains SDK (npm package gainsnetwork/sdk, 1.8.7) ships it: every function of our test deployment that uses them
///         has the ABI of the diamond's function of the same name.
///         Precisions: prices 1e10, leverage 1e3, percentages (`...P`) 1e10 per cent, collateral
///         in the collateral token's own decimals, collateral USD prices 1e8.
interface IGains {
    /// @notice ITradingStorage.TradeType.
    enum TradeType {
        TRADE,
        LIMIT,
        STOP
    }

    /// @notice ITradingStorage.PendingOrderType.
    enum PendingOrderType {
        MARKET_OPEN,
        MARKET_CLOSE,
        LIMIT_OPEN,
        STOP_OPEN,
        TP_CLOSE,
        SL_CLOSE,
        LIQ_CLOSE,
        UPDATE_LEVERAGE,
        MARKET_PARTIAL_OPEN,
        MARKET_PARTIAL_CLOSE
    }

    /// @notice ITradingCallbacks.CancelReason.
    enum CancelReason {
        NONE,
        PAUSED,
        MARKET_CLOSED,
        SLIPPAGE,
        TP_REACHED,
        SL_REACHED,
        EXPOSURE_LIMITS,
        PRICE_IMPACT,
        MAX_LEVERAGE,
        NO_TRADE,
        WRONG_TRADE,
        NOT_HIT,
        LIQ_REACHED,
        COUNTER_TRADE_CANCELED
    }

    /// @notice ITradingStorage.ContractsVersion.
    enum ContractsVersion {
        BEFORE_V9_2,
        V9_2,
        V10
    }

    /// @notice IPairsStorage.FeedCalculation: the pair price is feed1, 1 / feed1, or feed1 / feed2.
    enum FeedCalculation {
        DEFAULT,
        INVERT,
        COMBINE
    }

    /// @notice ITradingStorage.Id: a trade or pending order of `user`.
    struct Id {
        address user;
        uint32 index;
    }

    /// @notice ITradingStorage.Trade.
    struct Trade {
        address user;
        uint32 index;
        uint16 pairIndex;
        uint24 leverage;
        bool long;
        bool isOpen;
        uint8 collateralIndex;
        TradeType tradeType;
        uint120 collateralAmount;
        uint64 openPrice;
        uint64 tp;
        uint64 sl;
        bool isCounterTrade;
        uint160 positionSizeToken;
        uint24 __placeholder;
    }

    /// @notice ITradingStorage.TradeInfo.
    struct TradeInfo {
        uint32 createdBlock;
        uint32 tpLastUpdatedBlock;
        uint32 slLastUpdatedBlock;
        uint16 maxSlippageP;
        uint48 lastOiUpdateTs;
        uint48 collateralPriceUsd;
        ContractsVersion contractsVersion;
        uint32 lastPosIncreaseBlock;
        uint8 __placeholder;
    }

    /// @notice ITradingStorage.PendingOrder.
    struct PendingOrder {
        Trade trade;
        address user;
        uint32 index;
        bool isOpen;
        PendingOrderType orderType;
        uint32 createdBlock;
        uint16 maxSlippageP;
    }

    /// @notice ITradingStorage.Collateral.
    struct Collateral {
        address collateral;
        bool isActive;
        uint88 __placeholder;
        uint128 precision;
        uint128 precisionDelta;
    }

    /// @notice IPairsStorage.GroupLiquidationParams.
    struct GroupLiquidationParams {
        uint40 maxLiqSpreadP;
        uint40 startLiqThresholdP;
        uint40 endLiqThresholdP;
        uint24 startLeverage;
        uint24 endLeverage;
    }

    /// @notice IPairsStorage.Feed.
    struct Feed {
        address feed1;
        address feed2;
        FeedCalculation feedCalculation;
        uint256 maxDeviationP;
    }

    /// @notice IPairsStorage.Pair.
    struct Pair {
        string from;
        string to;
        Feed feed;
        uint256 spreadP;
        uint256 groupIndex;
        uint256 feeIndex;
    }

    /// @notice IPairsStorage.FeeGroup (`totalPositionSizeFeeP`: 1e10 per cent of the position size;
    ///         `minPositionSizeUsd`: 1e3).
    struct FeeGroup {
        uint40 totalPositionSizeFeeP;
        uint40 totalLiqCollateralFeeP;
        uint40 oraclePositionSizeFeeP;
        uint32 minPositionSizeUsd;
        uint104 __placeholder;
    }

    /// @notice IFundingFees.TradeFeesData.
    struct TradeFeesData {
        uint128 realizedTradingFeesCollateral;
        int128 realizedPnlCollateral;
        uint128 manuallyRealizedNegativePnlCollateral;
        uint128 alreadyTransferredNegativePnlCollateral;
        uint128 virtualAvailableCollateralInDiamond;
        uint128 __placeholder;
        int128 initialAccFundingFeeP;
        uint128 initialAccBorrowingFeeP;
    }

    /// @notice IFundingFees.TradeHoldingFees.
    struct TradeHoldingFees {
        int256 fundingFeeCollateral;
        uint256 borrowingFeeCollateral;
        uint256 borrowingFeeCollateral_old;
        int256 totalFeeCollateral;
    }

    /// @notice IBorrowingFees.LiqPriceInput.
    struct LiqPriceInput {
        uint8 collateralIndex;
        address trader;
        uint16 pairIndex;
        uint32 index;
        uint64 openPrice;
        bool long;
        uint256 collateral;
        uint256 leverage;
        int256 additionalFeeCollateral;
        GroupLiquidationParams liquidationParams;
        uint64 currentPairPrice;
        bool isCounterTrade;
        uint256 partialCloseMultiplier;
        bool beforeOpened;
    }

    /// @notice ITradingCallbacks.AggregatorAnswer: the oracle's answer to a pending order.
    struct AggregatorAnswer {
        Id orderId;
        uint64 open;
        uint64 high;
        uint64 low;
        uint64 current;
    }

    /// @notice ITradingCommonUtils.TradePriceImpact.
    struct TradePriceImpact {
        uint256 positionSizeToken;
        int256 fixedSpreadP;
        int256 cumulVolPriceImpactP;
        int256 skewPriceImpactP;
        int256 totalPriceImpactP;
        uint64 priceAfterImpact;
    }

    /// @notice IUpdatePositionSize.DecreasePositionSizeValues.
    struct DecreasePositionSizeValues {
        bool isLeverageUpdate;
        uint256 positionSizeCollateralDelta;
        uint256 existingPositionSizeCollateral;
        uint256 existingLiqPrice;
        uint256 newLiqPrice;
        TradePriceImpact priceImpact;
        int256 existingPnlPercent;
        int256 partialRawPnlCollateral;
        int256 partialNetPnlCollateral;
        int256 pnlToRealizeCollateral;
        uint256 closingFeeCollateral;
        uint256 totalAvailableCollateralInDiamond;
        int256 availableCollateralInDiamond;
        int256 collateralSentToTrader;
        uint120 newCollateralAmount;
        uint24 newLeverage;
    }

    /// @notice IUpdateLeverage.UpdateLeverageValues.
    struct UpdateLeverageValues {
        uint256 newLeverage;
        uint256 newCollateralAmount;
        uint256 existingLiqPrice;
        uint256 newLiqPrice;
        uint256 govFeeCollateral;
        uint256 newEffectiveLeverage;
        uint256 totalTradeAvailableCollateralInDiamond;
        uint256 availableCollateralInDiamond;
    }

    // --- events -------------------------------------------------------------------------------

    /// @notice A market open or close order was stored, waiting for the oracle.
    event MarketOrderInitiated(Id orderId, address indexed trader, uint16 indexed pairIndex, bool open);
    /// @notice A leverage update was stored, waiting for the oracle.
    event LeverageUpdateInitiated(
        Id orderId,
        address indexed trader,
        uint256 indexed pairIndex,
        uint256 indexed index,
        bool isIncrease,
        uint256 newLeverage
    );
    /// @notice A position size update was stored, waiting for the oracle.
    event PositionSizeUpdateInitiated(
        Id orderId,
        address indexed trader,
        uint256 indexed pairIndex,
        uint256 indexed index,
        bool isIncrease,
        uint256 collateralDelta,
        uint256 leverageDelta
    );
    /// @notice A market open or close executed at the oracle's price.
    event MarketExecuted(
        Id orderId,
        address indexed user,
        uint32 indexed index,
        Trade t,
        bool open,
        uint256 oraclePrice,
        uint256 marketPrice,
        uint256 liqPrice,
        TradePriceImpact priceImpact,
        int256 percentProfit,
        uint256 amountSentToTrader,
        uint256 collateralPriceUsd
    );
    /// @notice A market open was cancelled by its callback; the collateral went back.
    event MarketOpenCanceled(
        Id orderId, address indexed trader, uint256 indexed pairIndex, uint8 cancelReason, uint256 collateralReturned
    );
    /// @notice A market close was cancelled by its callback; the trade stays open (or, with
    ///         LIQ_REACHED, was liquidated).
    event MarketCloseCanceled(
        Id orderId, address indexed trader, uint256 indexed pairIndex, uint256 indexed index, CancelReason cancelReason
    );
    /// @notice A position size decrease was executed (`cancelReason` NONE) or cancelled.
    event PositionSizeDecreaseExecuted(
        Id orderId,
        CancelReason cancelReason,
        uint8 indexed collateralIndex,
        address indexed trader,
        uint256 pairIndex,
        uint256 indexed index,
        bool long,
        uint256 oraclePrice,
        uint256 collateralPriceUsd,
        uint256 collateralDelta,
        uint256 leverageDelta,
        DecreasePositionSizeValues values
    );
    /// @notice A leverage update was executed (`cancelReason` NONE) or cancelled.
    event LeverageUpdateExecuted(
        Id orderId,
        bool isIncrease,
        CancelReason cancelReason,
        uint8 indexed collateralIndex,
        address indexed trader,
        uint256 pairIndex,
        uint256 indexed index,
        uint256 oraclePrice,
        uint256 collateralDelta,
        UpdateLeverageValues values
    );
    /// @notice A pending market order was closed unanswered after the timeout.
    event ChainlinkCallbackTimeout(Id pendingOrderId, uint256 indexed pairIndex);
    /// @notice Collateral held by an order that timed out went back to the trader.
    event CollateralReturnedAfterTimeout(
        Id pendingOrderId, uint8 indexed collateralIndex, address indexed trader, uint256 collateralAmount
    );
    /// @notice A trade was closed (by the trader or by liquidation).
    event TradeClosed(address indexed user, uint32 indexed index, bool isPnlPositive);

    // --- errors ---------------------------------------------------------------------------------

    /// @notice The caller may not do this.
    error NotAuthorized();
    /// @notice The zero address is not allowed here.
    error ZeroAddress();
    /// @notice The collateral index is not listed.
    error InvalidCollateralIndex();
    /// @notice The collateral is listed but not active.
    error CollateralNotActive();
    /// @notice The pair is not listed.
    error PairNotListed();
    /// @notice The trader has no open trade at that index.
    error NoTrade();
    /// @notice No open pending order at that index.
    error NoOrder();
    /// @notice The market order timeout has not passed yet.
    error WaitTimeout();
    /// @notice The trade already has a pending order of this type.
    error ConflictingPendingOrder(PendingOrderType orderType);
    /// @notice A market close of the trade is already pending.
    error AlreadyBeingMarketClosed();
    /// @notice The leverage is outside the pair's bounds, or unchanged.
    error WrongLeverage();
    /// @notice A decrease must change exactly one of collateral and leverage.
    error InvalidDecreasePositionSizeInput();
    /// @notice The caller is not the trader's trading delegate.
    error DelegateNotApproved();
    /// @notice That call cannot be made through delegatedTradingAction.
    error DelegatedActionNotAllowed();
    /// @notice A price of zero.
    error PriceZero();
    /// @notice The maximum slippage must not be zero.
    error MaxSlippageZero();
    /// @notice The amount is zero or out of range.
    error InvalidAmount();
    /// @notice The pending order is of another type than this callback handles.
    error WrongOrderType();
    /// @notice The pending order was already answered or closed.
    error PendingOrderNotOpen();
    /// @notice Not enough collateral for this.
    error InsufficientCollateral();
}
