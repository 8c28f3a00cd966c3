// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";
import {GmxDataStore, GmxRouter, GmxEventEmitter, GmxOrderVault} from "./GmxStores.sol";
import {GmxOrderHandler} from "./GmxOrderHandler.sol";
import {GmxBaseRouter, IGmxWNT} from "./GmxBaseRouter.sol";

/// @title GmxSubaccountRouter
/// @notice GMX's SubaccountRouter with the SDK's signatures: an account adds a subaccount and
///         limits it (an order-action count, an expiry, an optional WNT top-up of the
///         subaccount's gas per action), all kept in the DataStore under GMX's keys; the
///         subaccount then creates and cancels orders for the account. Every such action counts
///         one SUBACCOUNT_ORDER_ACTION; an order must pay only the account (receiver, and the
///         cancellation receiver when set); an increase order's collateral comes from the
///         account's wallet through the Router, the execution fee from what the subaccount sent
///         (sendWnt). Orders are created and cancelled by the same order handler as the
///         ExchangeRouter's. It must hold CONTROLLER (DataStore, EventEmitter, order handler)
///         and ROUTER_PLUGIN (Router.pluginTransfer). Not here: GMX's setIntegrationId (absent
///         from the SDK's ABI; a CONTROLLER can still set SUBACCOUNT_INTEGRATION_ID, and the
///         SUBACCOUNT_INTEGRATION_DISABLED check applies) and updateOrder (only market orders
///         exist here, and GMX cannot update those).
contract GmxSubaccountRouter is GmxBaseRouter {
    /// @notice The event emitter.
    GmxEventEmitter public immutable eventEmitter;
    /// @notice The order handler orders are created with (the ExchangeRouter's).
    GmxOrderHandler public immutable orderHandler;
    /// @notice The order vault increase orders' collateral is sent to.
    GmxOrderVault public immutable orderVault;

    constructor(GmxDataStore dataStore_, GmxRouter router_, GmxEventEmitter eventEmitter_, GmxOrderHandler handler_)
        GmxBaseRouter(dataStore_, router_)
    {
        eventEmitter = eventEmitter_;
        orderHandler = handler_;
        orderVault = handler_.orderVault();
    }

    /// @notice Native value comes only from the wrapped native token (the auto top-up's
    ///         withdraw).
    receive() external payable {
        if (msg.sender != address(_wnt())) revert IGmx.InvalidNativeTokenSender(msg.sender);
    }

    // --- the account's grant ---------------------------------------------------------------

    /// @notice Adds `subaccount` to the caller's SUBACCOUNT_LIST: it may act for the caller
    ///         within the limits the caller sets (none allowed until a max count and an expiry
    ///         are set).
    function addSubaccount(address subaccount) external payable nonReentrant {
        dataStore.addAddress(GmxKeys.subaccountListKey(msg.sender), subaccount);
        _emit("AddSubaccount", msg.sender, subaccount, "", 0, false, 0);
    }

    /// @notice Removes `subaccount` from the caller's SUBACCOUNT_LIST; its counts, expiry and
    ///         top-up amount stay in the DataStore.
    function removeSubaccount(address subaccount) external payable nonReentrant {
        dataStore.removeAddress(GmxKeys.subaccountListKey(msg.sender), subaccount);
        _emit("RemoveSubaccount", msg.sender, subaccount, "", 0, false, 0);
    }

    /// @notice Sets how many `actionType` actions `subaccount` may have taken for the caller in
    ///         all (MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT; compared with SUBACCOUNT_ACTION_COUNT,
    ///         which only grows).
    function setMaxAllowedSubaccountActionCount(address subaccount, bytes32 actionType, uint256 maxAllowedCount)
        external
        payable
        nonReentrant
    {
        dataStore.setUint(
            GmxKeys.subaccountActionKey(
                GmxKeys.MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT, msg.sender, subaccount, actionType
            ),
            maxAllowedCount
        );
        _emit(
            "SetMaxAllowedSubaccountActionCount",
            msg.sender,
            subaccount,
            "maxAllowedCount",
            maxAllowedCount,
            true,
            actionType
        );
    }

    /// @notice Sets until when (unix seconds, inclusive) `subaccount` may take `actionType`
    ///         actions for the caller (SUBACCOUNT_EXPIRES_AT).
    function setSubaccountExpiresAt(address subaccount, bytes32 actionType, uint256 expiresAt)
        external
        payable
        nonReentrant
    {
        dataStore.setUint(
            GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_EXPIRES_AT, msg.sender, subaccount, actionType), expiresAt
        );
        _emit("SetSubaccountExpiresAt", msg.sender, subaccount, "expiresAt", expiresAt, true, actionType);
    }

    /// @notice Sets the most WNT (wei) of the caller's that pays `subaccount` back, as native
    ///         value, for the gas and execution fee of each action (SUBACCOUNT_AUTO_TOP_UP_AMOUNT;
    ///         0: none). Paid only while the caller holds and has approved the Router that much.
    function setSubaccountAutoTopUpAmount(address subaccount, uint256 amount) external payable nonReentrant {
        dataStore.setUint(GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_AUTO_TOP_UP_AMOUNT, msg.sender, subaccount), amount);
        _emit("SetSubaccountAutoTopUpAmount", msg.sender, subaccount, "amount", amount, false, 0);
    }

    // --- the subaccount's actions ----------------------------------------------------------

    /// @notice The caller, a subaccount of `account`, creates an order for `account`: one order
    ///         action counted; `params` must pay only `account`; an increase (or swap) order's
    ///         initialCollateralDeltaAmount of initialCollateralToken is taken from `account`'s
    ///         wallet through the Router into the OrderVault; the execution fee is the WNT the
    ///         caller sent to the OrderVault before (sendWnt, in the same multicall). Then the
    ///         caller's gas is topped up from `account`'s WNT if the account set an amount.
    /// @return The order's key.
    function createOrder(address account, IGmx.CreateOrderParams calldata params)
        external
        payable
        nonReentrant
        returns (bytes32)
    {
        uint256 startingGas = gasleft();
        _handleSubaccountAction(account);
        address receiver = params.addresses.receiver;
        if (receiver != account) revert IGmx.InvalidReceiverForSubaccountOrder(receiver, account);
        address cancellationReceiver = params.addresses.cancellationReceiver;
        if (cancellationReceiver != address(0) && cancellationReceiver != account) {
            revert IGmx.InvalidCancellationReceiverForSubaccountOrder(cancellationReceiver, account);
        }
        IGmx.OrderType kind = params.orderType;
        if (
            kind == IGmx.OrderType.MarketSwap || kind == IGmx.OrderType.LimitSwap
                || kind == IGmx.OrderType.MarketIncrease || kind == IGmx.OrderType.LimitIncrease
                || kind == IGmx.OrderType.StopIncrease
        ) {
            router.pluginTransfer(
                params.addresses.initialCollateralToken,
                account,
                address(orderVault),
                params.numbers.initialCollateralDeltaAmount
            );
        }
        bytes32 key = orderHandler.createOrder(account, params);
        _autoTopUp(account, startingGas, params.numbers.executionFee);
        return key;
    }

    /// @notice The caller, a subaccount of the order's account, cancels the order (one order
    ///         action counted; allowed once the order is REQUEST_EXPIRATION_TIME old, as for the
    ///         account itself). The collateral and execution fee go back to the account.
    function cancelOrder(bytes32 key) external payable nonReentrant {
        uint256 startingGas = gasleft();
        address account = orderHandler.order(key).account;
        if (account == address(0)) revert IGmx.EmptyOrder();
        _handleSubaccountAction(account);
        orderHandler.cancelOrder(account, key);
        _autoTopUp(account, startingGas, 0);
    }

    // --- rules -----------------------------------------------------------------------------

    /// SubaccountRouter._handleSubaccountAction: the router not disabled, the grant's
    /// integration id not disabled, the caller in the account's list; then the action count
    /// incremented and checked against the expiry and the maximum.
    function _handleSubaccountAction(address account) private {
        bytes32 feature = GmxKeys.subaccountFeatureDisabledKey(address(this));
        if (dataStore.getBool(feature)) revert IGmx.DisabledFeature(feature);
        address subaccount = msg.sender;
        bytes32 integrationId =
            dataStore.getBytes32(GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_INTEGRATION_ID, account, subaccount));
        if (dataStore.getBool(GmxKeys.subaccountIntegrationDisabledKey(integrationId))) {
            revert IGmx.SubaccountIntegrationIdDisabled(integrationId);
        }
        if (!dataStore.containsAddress(GmxKeys.subaccountListKey(account), subaccount)) {
            revert IGmx.SubaccountNotAuthorized(account, subaccount);
        }
        bytes32 action = GmxKeys.SUBACCOUNT_ORDER_ACTION;
        uint256 count = dataStore.incrementUint(
            GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_ACTION_COUNT, account, subaccount, action), 1
        );
        uint256 expiresAt =
            dataStore.getUint(GmxKeys.subaccountActionKey(GmxKeys.SUBACCOUNT_EXPIRES_AT, account, subaccount, action));
        if (block.timestamp > expiresAt) {
            revert IGmx.SubaccountApprovalExpired(account, subaccount, expiresAt, block.timestamp);
        }
        uint256 maxCount = dataStore.getUint(
            GmxKeys.subaccountActionKey(GmxKeys.MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT, account, subaccount, action)
        );
        if (count > maxCount) revert IGmx.MaxSubaccountActionCountExceeded(account, subaccount, count, maxCount);
        _emit("IncrementSubaccountActionCount", account, subaccount, "nextValue", count, true, action);
    }

    /// SubaccountRouter._autoTopUpSubaccount: pays the caller back, as native value, for the
    /// native value this action used (gas so far at tx.gasprice, plus `executionFee`), at most
    /// the account's SUBACCOUNT_AUTO_TOP_UP_AMOUNT, from the account's WNT through the Router;
    /// nothing when the account holds or has approved less than that amount.
    function _autoTopUp(address account, uint256 startingGas, uint256 executionFee) private {
        address subaccount = msg.sender;
        uint256 amount =
            dataStore.getUint(GmxKeys.subaccountKey(GmxKeys.SUBACCOUNT_AUTO_TOP_UP_AMOUNT, account, subaccount));
        if (amount == 0) return;
        IGmxWNT wnt = _wnt();
        if (wnt.allowance(account, address(router)) < amount || wnt.balanceOf(account) < amount) return;
        uint256 used = (startingGas - gasleft()) * tx.gasprice + executionFee;
        if (used < amount) amount = used;
        router.pluginTransfer(address(wnt), account, address(this), amount);
        wnt.withdraw(amount);
        // TokenUtils.withdrawAndSendNativeToken: gas-limited; re-wrapped and sent as WNT when
        // the subaccount does not take native value
        uint256 gasLimit = dataStore.getUint(GmxKeys.NATIVE_TOKEN_TRANSFER_GAS_LIMIT);
        (bool ok,) = subaccount.call{value: amount, gas: gasLimit}("");
        if (!ok) {
            wnt.deposit{value: amount}();
            _sendWntTokens(wnt, subaccount, amount);
        }
        _emit("SubaccountAutoTopUp", account, subaccount, "amount", amount, false, 0);
    }

    /// An EventLog2 as SubaccountUtils emits them: topics account and subaccount, their address
    /// items, one uint item (when `uintKey` is set) and the action type (when `withAction`).
    function _emit(
        string memory name,
        address account,
        address subaccount,
        string memory uintKey,
        uint256 value,
        bool withAction,
        bytes32 actionType
    ) private {
        IGmx.EventLogData memory data;
        data.addressItems.items = new IGmx.AddressKeyValue[](2);
        data.addressItems.items[0] = IGmx.AddressKeyValue("account", account);
        data.addressItems.items[1] = IGmx.AddressKeyValue("subaccount", subaccount);
        if (bytes(uintKey).length > 0) {
            data.uintItems.items = new IGmx.UintKeyValue[](1);
            data.uintItems.items[0] = IGmx.UintKeyValue(uintKey, value);
        }
        if (withAction) {
            data.bytes32Items.items = new IGmx.Bytes32KeyValue[](1);
            data.bytes32Items.items[0] = IGmx.Bytes32KeyValue("actionType", actionType);
        }
        eventEmitter.emitEventLog2(
            name, bytes32(uint256(uint160(account))), bytes32(uint256(uint160(subaccount))), data
        );
    }
}
