// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";
import {GmxRoleStore, GmxRoleAuth, GmxDataStore, GmxEventEmitter, GmxOrderVault, IGmxToken} from "./GmxStores.sol";

/// @title GmxOrderHandler
/// @notice The test deployment's orders and positions. Orders are created through the
///         ExchangeRouter (a CONTROLLER) and executed or cancelled by an ORDER_KEEPER at the prices
///         it passes, like GMX's keepers with oracle prices, or executed in a simulation that
///         always reverts (the ExchangeRouter's simulateExecuteLatestOrder). Market increase and
///         decrease only; no price impact, funding or borrowing; the position fee exists in the
///         liquidation test and the Reader's figures only. An execution GMX would refuse (a
///         decrease worse than its acceptable price, a result PositionUtils.validatePosition
///         rejects) reverts with GMX's error, which cancels the order. Positions hold their
///         collateral here; profits are paid from this contract's balance, which tests fund.
contract GmxOrderHandler is GmxRoleAuth {
    /// @notice A stored order (GMX's Order.Props without its arrays, which are always empty here).
    struct StoredOrder {
        address account;
        address receiver;
        address cancellationReceiver;
        address market;
        address collateralToken;
        IGmx.OrderType orderType;
        bool isLong;
        bool shouldUnwrapNativeToken;
        bool autoCancel;
        uint256 sizeDeltaUsd;
        uint256 collateralDeltaAmount;
        uint256 acceptablePrice;
        uint256 executionFee;
        uint256 minOutputAmount;
        uint256 updatedAtTime;
    }

    /// @notice A stored position.
    struct StoredPosition {
        address account;
        address market;
        address collateralToken;
        bool isLong;
        uint256 sizeInUsd;
        uint256 sizeInTokens;
        uint256 collateralAmount;
        uint256 increasedAtTime;
        uint256 decreasedAtTime;
    }

    /// @notice The data store.
    GmxDataStore public immutable dataStore;
    /// @notice The event emitter.
    GmxEventEmitter public immutable eventEmitter;
    /// @notice The order vault.
    GmxOrderVault public immutable orderVault;

    uint256 private _nonce;
    mapping(bytes32 => StoredOrder) private _orders;
    mapping(bytes32 => StoredPosition) private _positions;
    mapping(address => bytes32[]) private _accountPositions;
    mapping(bytes32 => uint256) private _positionIndex; // position + 1 in its account's list
    mapping(address => IGmx.MarketProps) private _markets;
    address[] private _marketList;

    /// @notice An execution reverted without data (out of gas): the order is left as it is.
    error ExecutionRevertedWithoutReason(bytes32 key);

    constructor(GmxRoleStore roleStore_, GmxDataStore dataStore_, GmxEventEmitter eventEmitter_, GmxOrderVault vault_)
        GmxRoleAuth(roleStore_)
    {
        dataStore = dataStore_;
        eventEmitter = eventEmitter_;
        orderVault = vault_;
    }

    // --- markets ---------------------------------------------------------------------------

    /// @notice Lists a market (controller only).
    function addMarket(address marketToken, address indexToken, address longToken, address shortToken)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
    {
        if (_markets[marketToken].marketToken == address(0)) _marketList.push(marketToken);
        _markets[marketToken] = IGmx.MarketProps(marketToken, indexToken, longToken, shortToken);
    }

    /// @notice A market's tokens (zeros when unknown).
    function market(address marketToken) external view returns (IGmx.MarketProps memory) {
        return _markets[marketToken];
    }

    /// @notice The listed markets in [start, end).
    function marketsAt(uint256 start, uint256 end) external view returns (IGmx.MarketProps[] memory out) {
        if (end > _marketList.length) end = _marketList.length;
        if (start >= end) return new IGmx.MarketProps[](0);
        out = new IGmx.MarketProps[](end - start);
        for (uint256 i = start; i < end; ++i) {
            out[i - start] = _markets[_marketList[i]];
        }
    }

    // --- views -----------------------------------------------------------------------------

    /// @notice A stored order (zeros when there is none).
    function order(bytes32 key) external view returns (StoredOrder memory) {
        return _orders[key];
    }

    /// @notice A stored position (zeros when there is none).
    function position(bytes32 key) external view returns (StoredPosition memory) {
        return _positions[key];
    }

    /// @notice An account's position keys in [start, end).
    function accountPositionKeys(address account, uint256 start, uint256 end) external view returns (bytes32[] memory) {
        bytes32[] storage keys = _accountPositions[account];
        if (end > keys.length) end = keys.length;
        if (start >= end) return new bytes32[](0);
        bytes32[] memory out = new bytes32[](end - start);
        for (uint256 i = start; i < end; ++i) {
            out[i - start] = keys[i];
        }
        return out;
    }

    /// @notice NonceUtils.getCurrentKey: the key of the order created last (the zero nonce's key
    ///         before any).
    function latestOrderKey() external view returns (bytes32) {
        return keccak256(abi.encode(address(dataStore), _nonce));
    }

    /// @notice PositionUtils.isPositionLiquidatable with GMX's order of tests: below
    ///         MIN_COLLATERAL_USD (when `shouldValidateMinCollateralUsd`; the info's
    ///         minCollateralUsd is 0 otherwise), not positive, or below the market's
    ///         MIN_COLLATERAL_FACTOR (MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION when `forLiquidation`)
    ///         of sizeInUsd. The remaining collateral is the collateral at its min price, plus the
    ///         pnl at the conservative index price (a long's min, a short's max), less the
    ///         position fee of closing it.
    function isPositionLiquidatable(
        bytes32 positionKey_,
        IGmx.MarketPrices memory prices,
        bool shouldValidateMinCollateralUsd,
        bool forLiquidation
    ) public view returns (bool, string memory, IGmx.IsPositionLiquidatableInfo memory info) {
        StoredPosition memory p = _positions[positionKey_];
        if (p.sizeInUsd == 0) revert IGmx.EmptyPosition();
        uint256 collateralPrice = _collateralPriceMin(p.market, p.collateralToken, prices);
        uint256 feeFactor = dataStore.getUint(GmxKeys.positionFeeFactorKey(p.market, false));
        uint256 feeAmount = GmxKeys.applyFactor(p.sizeInUsd, feeFactor) / collateralPrice;
        uint256 price = p.isLong ? prices.indexTokenPrice.min : prices.indexTokenPrice.max;
        int256 value = int256(p.sizeInTokens * price);
        int256 cost = int256(p.sizeInUsd);
        int256 pnl = p.isLong ? value - cost : cost - value;
        info.remainingCollateralUsd =
            int256(p.collateralAmount * collateralPrice) + pnl - int256(feeAmount * collateralPrice);
        bytes32 factorKey =
            forLiquidation ? GmxKeys.MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION : GmxKeys.MIN_COLLATERAL_FACTOR;
        uint256 factor = dataStore.getUint(GmxKeys.marketKey(factorKey, p.market));
        info.minCollateralUsdForLeverage = int256(GmxKeys.applyFactor(p.sizeInUsd, factor));
        if (shouldValidateMinCollateralUsd) {
            info.minCollateralUsd = int256(dataStore.getUint(GmxKeys.MIN_COLLATERAL_USD));
            if (info.remainingCollateralUsd < info.minCollateralUsd) return (true, "min collateral", info);
        }
        if (info.remainingCollateralUsd <= 0) return (true, "< 0", info);
        if (info.remainingCollateralUsd < info.minCollateralUsdForLeverage) {
            return (true, "min collateral for leverage", info);
        }
        return (false, "", info);
    }

    /// @notice PositionUtils.getPositionKey.
    function positionKey(address account, address market_, address collateralToken, bool isLong)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(account, market_, collateralToken, isLong));
    }

    // --- orders ----------------------------------------------------------------------------

    /// @notice Creates an order for `account` from what was sent to the vault (controller only,
    ///         i.e. the ExchangeRouter). Mirrors OrderUtils.createOrder for market orders.
    function createOrder(address account, IGmx.CreateOrderParams calldata p)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
        returns (bytes32 key)
    {
        bool increase = p.orderType == IGmx.OrderType.MarketIncrease;
        if (!increase && p.orderType != IGmx.OrderType.MarketDecrease) {
            revert IGmx.OrderTypeCannotBeCreated(uint256(p.orderType));
        }
        IGmx.MarketProps memory m = _markets[p.addresses.market];
        if (m.marketToken == address(0)) revert IGmx.EmptyMarket();
        address collateral = p.addresses.initialCollateralToken;
        if (collateral != m.longToken && collateral != m.shortToken) {
            revert IGmx.InvalidCollateralTokenForMarket(m.marketToken, collateral);
        }
        address wnt = dataStore.getAddress(GmxKeys.WNT);
        uint256 wntAmount = orderVault.recordTransferIn(wnt);
        uint256 fee = p.numbers.executionFee;
        uint256 collateralAmount;
        if (increase && collateral == wnt) {
            if (wntAmount < fee) revert IGmx.InsufficientWntAmountForExecutionFee(wntAmount, fee);
            collateralAmount = wntAmount - fee;
        } else {
            if (wntAmount < fee) revert IGmx.InsufficientWntAmountForExecutionFee(wntAmount, fee);
            fee = wntAmount;
            if (increase) collateralAmount = orderVault.recordTransferIn(collateral);
        }
        uint256 minFee = estimateExecutionGasLimit(increase) * tx.gasprice;
        if (fee < minFee) revert IGmx.InsufficientExecutionFee(minFee, fee);
        key = keccak256(abi.encode(address(dataStore), ++_nonce));
        _orders[key] = StoredOrder({
            account: account,
            receiver: p.addresses.receiver,
            cancellationReceiver: p.addresses.cancellationReceiver == address(0)
                ? account
                : p.addresses.cancellationReceiver,
            market: m.marketToken,
            collateralToken: collateral,
            orderType: p.orderType,
            isLong: p.isLong,
            shouldUnwrapNativeToken: p.shouldUnwrapNativeToken,
            autoCancel: p.autoCancel,
            sizeDeltaUsd: p.numbers.sizeDeltaUsd,
            collateralDeltaAmount: increase ? collateralAmount : p.numbers.initialCollateralDeltaAmount,
            acceptablePrice: p.numbers.acceptablePrice,
            executionFee: fee,
            minOutputAmount: p.numbers.minOutputAmount,
            updatedAtTime: block.timestamp
        });
        dataStore.addBytes32(GmxKeys.ORDER_LIST, key);
        dataStore.addBytes32(GmxKeys.accountOrderListKey(account), key);
        _emitCreated(key, _orders[key]);
    }

    /// @notice GasUtils: the gas limit an order's execution fee must cover (no swaps or callback).
    function estimateExecutionGasLimit(bool increase) public view returns (uint256) {
        uint256 base = dataStore.getUint(GmxKeys.ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1)
            + dataStore.getUint(GmxKeys.ESTIMATED_GAS_FEE_PER_ORACLE_PRICE) * 3;
        uint256 estimated = dataStore.getUint(GmxKeys.orderGasLimitKey(increase));
        return base + GmxKeys.applyFactor(estimated, dataStore.getUint(GmxKeys.ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR));
    }

    /// @notice The account's cancel (controller only, from the ExchangeRouter): allowed once the
    ///         order is REQUEST_EXPIRATION_TIME old, like GMX's market orders.
    function cancelOrder(address account, bytes32 key) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        StoredOrder memory o = _orders[key];
        if (o.account == address(0)) revert IGmx.EmptyOrder();
        if (o.account != account) revert IGmx.Unauthorized(account, "account for cancelOrder");
        uint256 expiration = dataStore.getUint(GmxKeys.REQUEST_EXPIRATION_TIME);
        uint256 age = block.timestamp - o.updatedAtTime;
        if (age < expiration) revert IGmx.RequestNotYetCancellable(age, expiration, "Order");
        _cancel(key, o, "USER_INITIATED_CANCEL", bytes("USER_INITIATED_CANCEL"));
    }

    /// @notice Cancels an order as GMX's keepers do when it cannot execute (order keeper only).
    function cancelOrderByKeeper(bytes32 key, string calldata reason)
        external
        onlyRole(GmxKeys.ORDER_KEEPER, "ORDER_KEEPER")
    {
        StoredOrder memory o = _orders[key];
        if (o.account == address(0)) revert IGmx.EmptyOrder();
        _cancel(key, o, reason, bytes(reason));
    }

    /// @notice Executes an order at `prices` (order keeper only); the execution fee goes to the
    ///         keeper as WNT. An order that cannot execute is cancelled instead, as GMX cancels a
    ///         market order: its OrderCancelled event carries the error in `reasonBytes`.
    function executeOrder(bytes32 key, IGmx.MarketPrices calldata prices)
        external
        onlyRole(GmxKeys.ORDER_KEEPER, "ORDER_KEEPER")
    {
        StoredOrder memory o = _orders[key];
        if (o.account == address(0)) revert IGmx.EmptyOrder();
        try this.doExecuteOrder(key, prices, msg.sender) {}
        catch (bytes memory reasonBytes) {
            if (reasonBytes.length == 0) revert ExecutionRevertedWithoutReason(key);
            _cancel(key, o, "", reasonBytes);
        }
    }

    /// @notice The execution executeOrder tries (this contract only): reverts with GMX's error
    ///         when the order cannot execute, undoing what it did.
    function doExecuteOrder(bytes32 key, IGmx.MarketPrices calldata prices, address keeper) external {
        if (msg.sender != address(this)) revert IGmx.Unauthorized(msg.sender, "SELF");
        _execute(key, prices, keeper);
    }

    /// @notice OrderHandler.simulateExecuteOrder (controller only: the ExchangeRouter's
    ///         simulateExecuteLatestOrder): executes the order at the given prices and oracle
    ///         timestamps, then reverts EndOfOracleSimulation; an order that cannot execute
    ///         reverts with the error that would cancel it. Prices and timestamps are checked as
    ///         GMX checks them for market orders.
    function simulateExecuteOrder(bytes32 key, IGmx.SimulatePricesParams calldata params)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
    {
        StoredOrder memory o = _orders[key];
        if (o.account == address(0)) revert IGmx.EmptyOrder();
        IGmx.MarketPrices memory prices = _simulatedPrices(o.market, params);
        if (params.minTimestamp < o.updatedAtTime) {
            revert IGmx.OracleTimestampsAreSmallerThanRequired(params.minTimestamp, o.updatedAtTime);
        }
        uint256 expiration = dataStore.getUint(GmxKeys.REQUEST_EXPIRATION_TIME);
        if (params.maxTimestamp > o.updatedAtTime + expiration) {
            revert IGmx.OracleTimestampsAreLargerThanRequestExpirationTime(
                params.maxTimestamp, o.updatedAtTime, expiration
            );
        }
        _execute(key, prices, msg.sender);
        revert IGmx.EndOfOracleSimulation();
    }

    function _execute(bytes32 key, IGmx.MarketPrices memory prices, address keeper) private {
        StoredOrder memory o = _orders[key];
        if (o.orderType == IGmx.OrderType.MarketIncrease) {
            _increase(o, prices);
        } else {
            uint256 price = o.isLong ? prices.indexTokenPrice.min : prices.indexTokenPrice.max;
            if (o.isLong ? price < o.acceptablePrice : price > o.acceptablePrice) {
                revert IGmx.OrderNotFulfillableAtAcceptablePrice(price, o.acceptablePrice);
            }
            _decrease(o, prices, price);
        }
        _remove(key, o.account);
        orderVault.transferOut(dataStore.getAddress(GmxKeys.WNT), keeper, o.executionFee);
        _emitSimple("OrderExecuted", key, o.account, "", "");
    }

    /// OracleUtils.SimulatePricesParams -> the market's prices (Oracle.getPrimaryPrice).
    function _simulatedPrices(address market_, IGmx.SimulatePricesParams calldata params)
        private
        view
        returns (IGmx.MarketPrices memory prices)
    {
        if (params.primaryTokens.length != params.primaryPrices.length) {
            revert IGmx.InvalidPrimaryPricesForSimulation(params.primaryTokens.length, params.primaryPrices.length);
        }
        IGmx.MarketProps memory m = _markets[market_];
        prices.indexTokenPrice = _primaryPrice(m.indexToken, params);
        prices.longTokenPrice = _primaryPrice(m.longToken, params);
        prices.shortTokenPrice = _primaryPrice(m.shortToken, params);
    }

    function _primaryPrice(address token, IGmx.SimulatePricesParams calldata params)
        private
        pure
        returns (IGmx.PriceProps memory)
    {
        for (uint256 i; i < params.primaryTokens.length; ++i) {
            if (params.primaryTokens[i] == token) {
                IGmx.PriceProps memory price = params.primaryPrices[i];
                if (price.min == 0 || price.max == 0) break;
                return price;
            }
        }
        revert IGmx.EmptyPrimaryPrice(token);
    }

    /// PositionUtils.validatePosition.
    function _validatePosition(
        bytes32 pk,
        IGmx.MarketPrices memory prices,
        bool shouldValidateMinPositionSize,
        bool shouldValidateMinCollateralUsd,
        bool forLiquidation
    ) private view {
        if (shouldValidateMinPositionSize) {
            uint256 minSize = dataStore.getUint(GmxKeys.MIN_POSITION_SIZE_USD);
            uint256 size = _positions[pk].sizeInUsd;
            if (size < minSize) revert IGmx.MinPositionSize(size, minSize);
        }
        (bool liquidatable, string memory reason, IGmx.IsPositionLiquidatableInfo memory info) =
            isPositionLiquidatable(pk, prices, shouldValidateMinCollateralUsd, forLiquidation);
        if (liquidatable) {
            revert IGmx.LiquidatablePosition(
                reason, info.remainingCollateralUsd, info.minCollateralUsd, info.minCollateralUsdForLeverage
            );
        }
    }

    function _increase(StoredOrder memory o, IGmx.MarketPrices memory prices) private {
        bytes32 pk = positionKey(o.account, o.market, o.collateralToken, o.isLong);
        StoredPosition storage p = _positions[pk];
        if (p.account == address(0)) {
            p.account = o.account;
            p.market = o.market;
            p.collateralToken = o.collateralToken;
            p.isLong = o.isLong;
            _accountPositions[o.account].push(pk);
            _positionIndex[pk] = _accountPositions[o.account].length;
        }
        orderVault.transferOut(o.collateralToken, address(this), o.collateralDeltaAmount);
        p.collateralAmount += o.collateralDeltaAmount;
        if (o.sizeDeltaUsd > 0) {
            uint256 price = o.isLong ? prices.indexTokenPrice.max : prices.indexTokenPrice.min;
            uint256 tokens = o.isLong ? o.sizeDeltaUsd / price : (o.sizeDeltaUsd + price - 1) / price;
            p.sizeInUsd += o.sizeDeltaUsd;
            p.sizeInTokens += tokens;
        }
        if (p.sizeInUsd == 0) revert IGmx.EmptyPosition();
        p.increasedAtTime = block.timestamp;
        // IncreasePositionUtils: a collateral deposit (no size) must leave the position safe from
        // liquidation, at the liquidation factor
        _validatePosition(pk, prices, true, true, o.sizeDeltaUsd == 0);
    }

    function _decrease(StoredOrder memory o, IGmx.MarketPrices memory prices, uint256 price) private {
        bytes32 pk = positionKey(o.account, o.market, o.collateralToken, o.isLong);
        StoredPosition storage p = _positions[pk];
        if (p.sizeInUsd == 0) revert IGmx.EmptyPosition();
        uint256 sizeDelta = o.sizeDeltaUsd;
        if (sizeDelta > p.sizeInUsd) revert IGmx.InvalidDecreaseOrderSize(sizeDelta, p.sizeInUsd);
        if (p.sizeInUsd - sizeDelta < dataStore.getUint(GmxKeys.MIN_POSITION_SIZE_USD)) sizeDelta = p.sizeInUsd;
        uint256 tokensDelta = sizeDelta == p.sizeInUsd ? p.sizeInTokens : p.sizeInTokens * sizeDelta / p.sizeInUsd;
        int256 value = int256(tokensDelta * price);
        int256 cost = int256(sizeDelta);
        int256 pnlUsd = p.isLong ? value - cost : cost - value;
        uint256 collateralPrice = _collateralPriceMin(p.market, p.collateralToken, prices);
        int256 pnlTokens = pnlUsd >= 0
            ? pnlUsd / int256(collateralPrice)
            : -((-pnlUsd + int256(collateralPrice) - 1) / int256(collateralPrice));
        int256 collateral = int256(p.collateralAmount) + pnlTokens;
        if (collateral < 0) collateral = 0;
        p.decreasedAtTime = block.timestamp;
        if (sizeDelta == p.sizeInUsd) {
            address account = p.account;
            _deletePosition(pk, account);
            _pay(o.collateralToken, o.receiver, uint256(collateral));
        } else {
            p.sizeInUsd -= sizeDelta;
            p.sizeInTokens -= tokensDelta;
            p.collateralAmount = uint256(collateral);
            // DecreasePositionUtils: what stays open must not be liquidatable
            _validatePosition(pk, prices, false, false, false);
        }
    }

    function _collateralPriceMin(address market_, address token, IGmx.MarketPrices memory prices)
        private
        view
        returns (uint256)
    {
        return token == _markets[market_].longToken ? prices.longTokenPrice.min : prices.shortTokenPrice.min;
    }

    function _pay(address token, address receiver, uint256 amount) private {
        if (amount == 0) return;
        if (!IGmxToken(token).transfer(receiver, amount)) revert IGmx.TokenTransferError(token, receiver, amount);
    }

    function _deletePosition(bytes32 pk, address account) private {
        bytes32[] storage keys = _accountPositions[account];
        uint256 at = _positionIndex[pk];
        bytes32 last = keys[keys.length - 1];
        keys[at - 1] = last;
        _positionIndex[last] = at;
        keys.pop();
        delete _positionIndex[pk];
        delete _positions[pk];
    }

    function _cancel(bytes32 key, StoredOrder memory o, string memory reason, bytes memory reasonBytes) private {
        _remove(key, o.account);
        if (o.orderType == IGmx.OrderType.MarketIncrease) {
            orderVault.transferOut(o.collateralToken, o.cancellationReceiver, o.collateralDeltaAmount);
        }
        orderVault.transferOut(dataStore.getAddress(GmxKeys.WNT), o.account, o.executionFee);
        _emitSimple("OrderCancelled", key, o.account, reason, reasonBytes);
    }

    function _remove(bytes32 key, address account) private {
        delete _orders[key];
        dataStore.removeBytes32(GmxKeys.ORDER_LIST, key);
        dataStore.removeBytes32(GmxKeys.accountOrderListKey(account), key);
    }

    // --- events ----------------------------------------------------------------------------

    function _emitCreated(bytes32 key, StoredOrder storage o) private {
        IGmx.EventLogData memory data;
        data.addressItems.items = new IGmx.AddressKeyValue[](3);
        data.addressItems.items[0] = IGmx.AddressKeyValue("account", o.account);
        data.addressItems.items[1] = IGmx.AddressKeyValue("market", o.market);
        data.addressItems.items[2] = IGmx.AddressKeyValue("initialCollateralToken", o.collateralToken);
        data.uintItems.items = new IGmx.UintKeyValue[](4);
        data.uintItems.items[0] = IGmx.UintKeyValue("orderType", uint256(o.orderType));
        data.uintItems.items[1] = IGmx.UintKeyValue("sizeDeltaUsd", o.sizeDeltaUsd);
        data.uintItems.items[2] = IGmx.UintKeyValue("initialCollateralDeltaAmount", o.collateralDeltaAmount);
        data.uintItems.items[3] = IGmx.UintKeyValue("executionFee", o.executionFee);
        data.boolItems.items = new IGmx.BoolKeyValue[](1);
        data.boolItems.items[0] = IGmx.BoolKeyValue("isLong", o.isLong);
        data.bytes32Items.items = new IGmx.Bytes32KeyValue[](1);
        data.bytes32Items.items[0] = IGmx.Bytes32KeyValue("key", key);
        eventEmitter.emitEventLog2("OrderCreated", key, bytes32(uint256(uint160(o.account))), data);
    }

    function _emitSimple(
        string memory name,
        bytes32 key,
        address account,
        string memory reason,
        bytes memory reasonBytes
    ) private {
        IGmx.EventLogData memory data;
        data.bytes32Items.items = new IGmx.Bytes32KeyValue[](1);
        data.bytes32Items.items[0] = IGmx.Bytes32KeyValue("key", key);
        data.addressItems.items = new IGmx.AddressKeyValue[](1);
        data.addressItems.items[0] = IGmx.AddressKeyValue("account", account);
        if (bytes(reason).length > 0 || reasonBytes.length > 0) {
            data.stringItems.items = new IGmx.StringKeyValue[](1);
            data.stringItems.items[0] = IGmx.StringKeyValue("reason", reason);
            data.bytesItems.items = new IGmx.BytesKeyValue[](1);
            data.bytesItems.items[0] = IGmx.BytesKeyValue("reasonBytes", reasonBytes);
        }
        eventEmitter.emitEventLog2(name, key, bytes32(uint256(uint160(account))), data);
    }
}
