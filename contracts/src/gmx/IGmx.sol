// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IGmx
/// @notice The GMX v2 types the keeper touches, field for field in GMX's order (gmx-synthetics
///         commit 0ab9d8fe5c79608cb95ba5b3e1a48c73d0d26023): the ABI of every function of our test
///         deployment that uses them is the ABI of the GMX function of the same name.
interface IGmx {
    /// @notice Order.OrderType.
    enum OrderType {
        MarketSwap,
        LimitSwap,
        MarketIncrease,
        LimitIncrease,
        MarketDecrease,
        LimitDecrease,
        StopLossDecrease,
        Liquidation,
        StopIncrease
    }

    /// @notice Order.DecreasePositionSwapType.
    enum DecreasePositionSwapType {
        NoSwap,
        SwapPnlTokenToCollateralToken,
        SwapCollateralTokenToPnlToken
    }

    /// @notice Price.Props: USD (1e30) per smallest token unit.
    struct PriceProps {
        uint256 min;
        uint256 max;
    }

    /// @notice MarketUtils.MarketPrices.
    struct MarketPrices {
        PriceProps indexTokenPrice;
        PriceProps longTokenPrice;
        PriceProps shortTokenPrice;
    }

    /// @notice Market.Props.
    struct MarketProps {
        address marketToken;
        address indexToken;
        address longToken;
        address shortToken;
    }

    /// @notice Position.Addresses.
    struct PositionAddresses {
        address account;
        address market;
        address collateralToken;
    }

    /// @notice Position.Numbers.
    struct PositionNumbers {
        uint256 sizeInUsd;
        uint256 sizeInTokens;
        uint256 collateralAmount;
        int256 pendingImpactAmount;
        uint256 borrowingFactor;
        uint256 fundingFeeAmountPerSize;
        uint256 longTokenClaimableFundingAmountPerSize;
        uint256 shortTokenClaimableFundingAmountPerSize;
        uint256 increasedAtTime;
        uint256 decreasedAtTime;
    }

    /// @notice Position.Flags.
    struct PositionFlags {
        bool isLong;
    }

    /// @notice Position.Props.
    struct PositionProps {
        PositionAddresses addresses;
        PositionNumbers numbers;
        PositionFlags flags;
    }

    /// @notice PositionPricingUtils.PositionReferralFees.
    struct PositionReferralFees {
        bytes32 referralCode;
        address affiliate;
        address trader;
        uint256 totalRebateFactor;
        uint256 affiliateRewardFactor;
        uint256 adjustedAffiliateRewardFactor;
        uint256 traderDiscountFactor;
        uint256 totalRebateAmount;
        uint256 traderDiscountAmount;
        uint256 affiliateRewardAmount;
    }

    /// @notice PositionPricingUtils.PositionProFees.
    struct PositionProFees {
        uint256 traderTier;
        uint256 traderDiscountFactor;
        uint256 traderDiscountAmount;
    }

    /// @notice PositionPricingUtils.PositionFundingFees.
    struct PositionFundingFees {
        uint256 fundingFeeAmount;
        uint256 claimableLongTokenAmount;
        uint256 claimableShortTokenAmount;
        uint256 latestFundingFeeAmountPerSize;
        uint256 latestLongTokenClaimableFundingAmountPerSize;
        uint256 latestShortTokenClaimableFundingAmountPerSize;
    }

    /// @notice PositionPricingUtils.PositionBorrowingFees.
    struct PositionBorrowingFees {
        uint256 borrowingFeeUsd;
        uint256 borrowingFeeAmount;
        uint256 borrowingFeeReceiverFactor;
        uint256 borrowingFeeAmountForFeeReceiver;
    }

    /// @notice PositionPricingUtils.PositionUiFees.
    struct PositionUiFees {
        address uiFeeReceiver;
        uint256 uiFeeReceiverFactor;
        uint256 uiFeeAmount;
    }

    /// @notice PositionPricingUtils.PositionLiquidationFees.
    struct PositionLiquidationFees {
        uint256 liquidationFeeUsd;
        uint256 liquidationFeeAmount;
        uint256 liquidationFeeReceiverFactor;
        uint256 liquidationFeeAmountForFeeReceiver;
    }

    /// @notice PositionPricingUtils.PositionFees.
    struct PositionFees {
        PositionReferralFees referral;
        PositionProFees pro;
        PositionFundingFees funding;
        PositionBorrowingFees borrowing;
        PositionUiFees ui;
        PositionLiquidationFees liquidation;
        PriceProps collateralTokenPrice;
        uint256 positionFeeFactor;
        uint256 protocolFeeAmount;
        uint256 positionFeeReceiverFactor;
        uint256 feeReceiverAmount;
        uint256 feeAmountForPool;
        uint256 positionFeeAmountForPool;
        uint256 positionFeeAmount;
        uint256 totalCostAmountExcludingFunding;
        uint256 totalCostAmount;
        uint256 totalDiscountAmount;
    }

    /// @notice ReaderPricingUtils.ExecutionPriceResult.
    struct ExecutionPriceResult {
        int256 priceImpactUsd;
        uint256 executionPrice;
        bool balanceWasImproved;
        int256 proportionalPendingImpactUsd;
        int256 totalImpactUsd;
        uint256 priceImpactDiffUsd;
    }

    /// @notice ReaderPositionUtils.PositionInfo.
    struct PositionInfo {
        bytes32 positionKey;
        PositionProps position;
        PositionFees fees;
        ExecutionPriceResult executionPriceResult;
        int256 basePnlUsd;
        int256 uncappedBasePnlUsd;
        int256 pnlAfterPriceImpactUsd;
    }

    /// @notice Order.Addresses.
    struct OrderAddresses {
        address account;
        address receiver;
        address cancellationReceiver;
        address callbackContract;
        address uiFeeReceiver;
        address market;
        address initialCollateralToken;
        address[] swapPath;
    }

    /// @notice Order.Numbers.
    struct OrderNumbers {
        OrderType orderType;
        DecreasePositionSwapType decreasePositionSwapType;
        uint256 sizeDeltaUsd;
        uint256 initialCollateralDeltaAmount;
        uint256 triggerPrice;
        uint256 acceptablePrice;
        uint256 executionFee;
        uint256 callbackGasLimit;
        uint256 minOutputAmount;
        uint256 updatedAtTime;
        uint256 validFromTime;
        uint256 srcChainId;
    }

    /// @notice Order.Flags.
    struct OrderFlags {
        bool isLong;
        bool shouldUnwrapNativeToken;
        bool isFrozen;
        bool autoCancel;
    }

    /// @notice Order.Props.
    struct OrderProps {
        OrderAddresses addresses;
        OrderNumbers numbers;
        OrderFlags flags;
        bytes32[] _dataList;
    }

    /// @notice ReaderUtils.OrderInfo.
    struct OrderInfo {
        bytes32 orderKey;
        OrderProps order;
    }

    /// @notice PositionUtils.IsPositionLiquidatableInfo.
    struct IsPositionLiquidatableInfo {
        int256 remainingCollateralUsd;
        int256 minCollateralUsd;
        int256 minCollateralUsdForLeverage;
    }

    /// @notice IBaseOrderUtils.CreateOrderParamsAddresses.
    struct CreateOrderParamsAddresses {
        address receiver;
        address cancellationReceiver;
        address callbackContract;
        address uiFeeReceiver;
        address market;
        address initialCollateralToken;
        address[] swapPath;
    }

    /// @notice IBaseOrderUtils.CreateOrderParamsNumbers.
    struct CreateOrderParamsNumbers {
        uint256 sizeDeltaUsd;
        uint256 initialCollateralDeltaAmount;
        uint256 triggerPrice;
        uint256 acceptablePrice;
        uint256 executionFee;
        uint256 callbackGasLimit;
        uint256 minOutputAmount;
        uint256 validFromTime;
    }

    /// @notice IBaseOrderUtils.CreateOrderParams.
    struct CreateOrderParams {
        CreateOrderParamsAddresses addresses;
        CreateOrderParamsNumbers numbers;
        OrderType orderType;
        DecreasePositionSwapType decreasePositionSwapType;
        bool isLong;
        bool shouldUnwrapNativeToken;
        bool autoCancel;
        bytes32 referralCode;
        bytes32[] dataList;
    }

    /// @notice OracleUtils.SimulatePricesParams: the prices and oracle timestamps an order is
    ///         executed with by ExchangeRouter.simulateExecuteLatestOrder.
    struct SimulatePricesParams {
        address[] primaryTokens;
        PriceProps[] primaryPrices;
        uint256 minTimestamp;
        uint256 maxTimestamp;
    }

    /// @notice EventUtils key-value items, one pair of structs per value type.
    struct AddressKeyValue {
        string key;
        address value;
    }

    struct AddressArrayKeyValue {
        string key;
        address[] value;
    }

    struct AddressItems {
        AddressKeyValue[] items;
        AddressArrayKeyValue[] arrayItems;
    }

    struct UintKeyValue {
        string key;
        uint256 value;
    }

    struct UintArrayKeyValue {
        string key;
        uint256[] value;
    }

    struct UintItems {
        UintKeyValue[] items;
        UintArrayKeyValue[] arrayItems;
    }

    struct IntKeyValue {
        string key;
        int256 value;
    }

    struct IntArrayKeyValue {
        string key;
        int256[] value;
    }

    struct IntItems {
        IntKeyValue[] items;
        IntArrayKeyValue[] arrayItems;
    }

    struct BoolKeyValue {
        string key;
        bool value;
    }

    struct BoolArrayKeyValue {
        string key;
        bool[] value;
    }

    struct BoolItems {
        BoolKeyValue[] items;
        BoolArrayKeyValue[] arrayItems;
    }

    struct Bytes32KeyValue {
        string key;
        bytes32 value;
    }

    struct Bytes32ArrayKeyValue {
        string key;
        bytes32[] value;
    }

    struct Bytes32Items {
        Bytes32KeyValue[] items;
        Bytes32ArrayKeyValue[] arrayItems;
    }

    struct BytesKeyValue {
        string key;
        bytes value;
    }

    struct BytesArrayKeyValue {
        string key;
        bytes[] value;
    }

    struct BytesItems {
        BytesKeyValue[] items;
        BytesArrayKeyValue[] arrayItems;
    }

    struct StringKeyValue {
        string key;
        string value;
    }

    struct StringArrayKeyValue {
        string key;
        string[] value;
    }

    struct StringItems {
        StringKeyValue[] items;
        StringArrayKeyValue[] arrayItems;
    }

    /// @notice EventUtils.EventLogData.
    struct EventLogData {
        AddressItems addressItems;
        UintItems uintItems;
        IntItems intItems;
        BoolItems boolItems;
        Bytes32Items bytes32Items;
        BytesItems bytesItems;
        StringItems stringItems;
    }

    /// @notice Errors.Unauthorized: `msgSender` lacks `role`.
    error Unauthorized(address msgSender, string role);
    /// @notice Errors.InsufficientExecutionFee.
    error InsufficientExecutionFee(uint256 minExecutionFee, uint256 executionFee);
    /// @notice Errors.InsufficientWntAmountForExecutionFee.
    error InsufficientWntAmountForExecutionFee(uint256 wntAmount, uint256 executionFee);
    /// @notice Errors.EmptyOrder.
    error EmptyOrder();
    /// @notice Errors.EmptyPosition.
    error EmptyPosition();
    /// @notice Errors.EmptyMarket.
    error EmptyMarket();
    /// @notice Errors.OrderTypeCannotBeCreated.
    error OrderTypeCannotBeCreated(uint256 orderType);
    /// @notice Errors.RequestNotYetCancellable.
    error RequestNotYetCancellable(uint256 requestAge, uint256 requestExpirationAge, string requestType);
    /// @notice Errors.OrderNotUpdatable: market orders cannot be updated.
    error OrderNotUpdatable(uint256 orderType);
    /// @notice Errors.InvalidDecreaseOrderSize.
    error InvalidDecreaseOrderSize(uint256 sizeDeltaUsd, uint256 positionSizeInUsd);
    /// @notice Errors.InvalidCollateralTokenForMarket.
    error InvalidCollateralTokenForMarket(address market, address token);
    /// @notice Errors.TokenTransferError.
    error TokenTransferError(address token, address receiver, uint256 amount);
    /// @notice Errors.EndOfOracleSimulation: a simulated execution went through to its end.
    error EndOfOracleSimulation();
    /// @notice Errors.InvalidPrimaryPricesForSimulation: one price per token is needed.
    error InvalidPrimaryPricesForSimulation(uint256 primaryTokensLength, uint256 primaryPricesLength);
    /// @notice Errors.EmptyPrimaryPrice: no price was given for `token`.
    error EmptyPrimaryPrice(address token);
    /// @notice Errors.OracleTimestampsAreSmallerThanRequired: prices older than the order or
    ///         the position's last change.
    error OracleTimestampsAreSmallerThanRequired(uint256 minOracleTimestamp, uint256 expectedTimestamp);
    /// @notice Errors.OracleTimestampsAreLargerThanRequestExpirationTime: prices later than the
    ///         order's expiry.
    error OracleTimestampsAreLargerThanRequestExpirationTime(
        uint256 maxOracleTimestamp, uint256 requestTimestamp, uint256 requestExpirationTime
    );
    /// @notice Errors.OrderNotFulfillableAtAcceptablePrice.
    error OrderNotFulfillableAtAcceptablePrice(uint256 price, uint256 acceptablePrice);
    /// @notice Errors.LiquidatablePosition: PositionUtils.validatePosition refused the result.
    error LiquidatablePosition(
        string reason, int256 remainingCollateralUsd, int256 minCollateralUsd, int256 minCollateralUsdForLeverage
    );
    /// @notice Errors.MinPositionSize.
    error MinPositionSize(uint256 positionSizeInUsd, uint256 minPositionSizeUsd);
    /// @notice Errors.DisabledFeature: the feature's DataStore flag (`key`) is set.
    error DisabledFeature(bytes32 key);
    /// @notice Errors.InvalidNativeTokenSender: only the wrapped native token sends value.
    error InvalidNativeTokenSender(address msgSender);
    /// @notice Errors.InvalidReceiverForSubaccountOrder: a subaccount's order pays only the account.
    error InvalidReceiverForSubaccountOrder(address receiver, address expectedReceiver);
    /// @notice Errors.InvalidCancellationReceiverForSubaccountOrder: likewise for what a cancel
    ///         refunds (zero means the account).
    error InvalidCancellationReceiverForSubaccountOrder(
        address cancellationReceiver, address expectedCancellationReceiver
    );
    /// @notice Errors.SubaccountNotAuthorized: `subaccount` is not in `account`'s SUBACCOUNT_LIST.
    error SubaccountNotAuthorized(address account, address subaccount);
    /// @notice Errors.MaxSubaccountActionCountExceeded: the action would be the `count`th of at
    ///         most `maxCount`.
    error MaxSubaccountActionCountExceeded(address account, address subaccount, uint256 count, uint256 maxCount);
    /// @notice Errors.SubaccountApprovalExpired: the grant ended at `deadline`.
    error SubaccountApprovalExpired(address account, address subaccount, uint256 deadline, uint256 currentTimestamp);
    /// @notice Errors.SubaccountIntegrationIdDisabled: the grant's integration id is disabled.
    error SubaccountIntegrationIdDisabled(bytes32 integrationId);
}

/// @title GmxKeys
/// @notice The DataStore keys of GMX's Keys.sol that the test deployment uses.
library GmxKeys {
    bytes32 internal constant WNT = keccak256(abi.encode("WNT"));
    bytes32 internal constant MIN_COLLATERAL_USD = keccak256(abi.encode("MIN_COLLATERAL_USD"));
    bytes32 internal constant MIN_POSITION_SIZE_USD = keccak256(abi.encode("MIN_POSITION_SIZE_USD"));
    bytes32 internal constant MIN_COLLATERAL_FACTOR = keccak256(abi.encode("MIN_COLLATERAL_FACTOR"));
    bytes32 internal constant MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION =
        keccak256(abi.encode("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION"));
    bytes32 internal constant MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS =
        keccak256(abi.encode("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS"));
    bytes32 internal constant POSITION_FEE_FACTOR = keccak256(abi.encode("POSITION_FEE_FACTOR"));
    bytes32 internal constant REQUEST_EXPIRATION_TIME = keccak256(abi.encode("REQUEST_EXPIRATION_TIME"));
    bytes32 internal constant ORDER_LIST = keccak256(abi.encode("ORDER_LIST"));
    bytes32 internal constant ACCOUNT_ORDER_LIST = keccak256(abi.encode("ACCOUNT_ORDER_LIST"));
    bytes32 internal constant ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1 =
        keccak256(abi.encode("ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1"));
    bytes32 internal constant ESTIMATED_GAS_FEE_PER_ORACLE_PRICE =
        keccak256(abi.encode("ESTIMATED_GAS_FEE_PER_ORACLE_PRICE"));
    bytes32 internal constant ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR =
        keccak256(abi.encode("ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR"));
    bytes32 internal constant INCREASE_ORDER_GAS_LIMIT = keccak256(abi.encode("INCREASE_ORDER_GAS_LIMIT"));
    bytes32 internal constant DECREASE_ORDER_GAS_LIMIT = keccak256(abi.encode("DECREASE_ORDER_GAS_LIMIT"));
    bytes32 internal constant ROUTER_PLUGIN = keccak256(abi.encode("ROUTER_PLUGIN"));
    bytes32 internal constant CONTROLLER = keccak256(abi.encode("CONTROLLER"));
    bytes32 internal constant ORDER_KEEPER = keccak256(abi.encode("ORDER_KEEPER"));
    bytes32 internal constant ROLE_ADMIN = keccak256(abi.encode("ROLE_ADMIN"));
    bytes32 internal constant NATIVE_TOKEN_TRANSFER_GAS_LIMIT =
        keccak256(abi.encode("NATIVE_TOKEN_TRANSFER_GAS_LIMIT"));
    bytes32 internal constant SUBACCOUNT_LIST = keccak256(abi.encode("SUBACCOUNT_LIST"));
    bytes32 internal constant SUBACCOUNT_FEATURE_DISABLED = keccak256(abi.encode("SUBACCOUNT_FEATURE_DISABLED"));
    bytes32 internal constant MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT =
        keccak256(abi.encode("MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT"));
    bytes32 internal constant SUBACCOUNT_EXPIRES_AT = keccak256(abi.encode("SUBACCOUNT_EXPIRES_AT"));
    bytes32 internal constant SUBACCOUNT_ACTION_COUNT = keccak256(abi.encode("SUBACCOUNT_ACTION_COUNT"));
    bytes32 internal constant SUBACCOUNT_AUTO_TOP_UP_AMOUNT = keccak256(abi.encode("SUBACCOUNT_AUTO_TOP_UP_AMOUNT"));
    /// @notice The action type SubaccountRouter counts createOrder, updateOrder and cancelOrder as.
    bytes32 internal constant SUBACCOUNT_ORDER_ACTION = keccak256(abi.encode("SUBACCOUNT_ORDER_ACTION"));
    bytes32 internal constant SUBACCOUNT_INTEGRATION_ID = keccak256(abi.encode("SUBACCOUNT_INTEGRATION_ID"));
    bytes32 internal constant SUBACCOUNT_INTEGRATION_DISABLED =
        keccak256(abi.encode("SUBACCOUNT_INTEGRATION_DISABLED"));
    uint256 internal constant FLOAT_PRECISION = 1e30;

    /// @notice keccak256(abi.encode(name, market)): a per-market key.
    function marketKey(bytes32 name, address market) internal pure returns (bytes32) {
        return keccak256(abi.encode(name, market));
    }

    /// @notice Keys.positionFeeFactorKey(market, forPositiveImpact).
    function positionFeeFactorKey(address market, bool forPositiveImpact) internal pure returns (bytes32) {
        return keccak256(abi.encode(POSITION_FEE_FACTOR, market, forPositiveImpact));
    }

    /// @notice Keys.increaseOrderGasLimitKey() / decreaseOrderGasLimitKey().
    function orderGasLimitKey(bool increase) internal pure returns (bytes32) {
        return increase ? INCREASE_ORDER_GAS_LIMIT : DECREASE_ORDER_GAS_LIMIT;
    }

    /// @notice Keys.accountOrderListKey(account).
    function accountOrderListKey(address account) internal pure returns (bytes32) {
        return keccak256(abi.encode(ACCOUNT_ORDER_LIST, account));
    }

    /// @notice Keys.subaccountListKey(account): the account's subaccounts (an address set).
    function subaccountListKey(address account) internal pure returns (bytes32) {
        return keccak256(abi.encode(SUBACCOUNT_LIST, account));
    }

    /// @notice Keys.subaccountFeatureDisabledKey(module).
    function subaccountFeatureDisabledKey(address module) internal pure returns (bytes32) {
        return keccak256(abi.encode(SUBACCOUNT_FEATURE_DISABLED, module));
    }

    /// @notice Keys.maxAllowedSubaccountActionCountKey / subaccountExpiresAtKey /
    ///         subaccountActionCountKey: `name` is MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT,
    ///         SUBACCOUNT_EXPIRES_AT or SUBACCOUNT_ACTION_COUNT.
    function subaccountActionKey(bytes32 name, address account, address subaccount, bytes32 actionType)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(name, account, subaccount, actionType));
    }

    /// @notice Keys.subaccountAutoTopUpAmountKey / subaccountIntegrationIdKey: `name` is
    ///         SUBACCOUNT_AUTO_TOP_UP_AMOUNT or SUBACCOUNT_INTEGRATION_ID.
    function subaccountKey(bytes32 name, address account, address subaccount) internal pure returns (bytes32) {
        return keccak256(abi.encode(name, account, subaccount));
    }

    /// @notice Keys.subaccountIntegrationDisabledKey(integrationId).
    function subaccountIntegrationDisabledKey(bytes32 integrationId) internal pure returns (bytes32) {
        return keccak256(abi.encode(SUBACCOUNT_INTEGRATION_DISABLED, integrationId));
    }

    /// @notice Precision.applyFactor.
    function applyFactor(uint256 value, uint256 factor) internal pure returns (uint256) {
        return value * factor / FLOAT_PRECISION;
    }
}
