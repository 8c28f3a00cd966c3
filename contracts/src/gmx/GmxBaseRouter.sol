// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";
import {GmxDataStore, GmxRouter} from "./GmxStores.sol";

/// @notice The wrapped native token's calls the routers make.
interface IGmxWNT {
    function deposit() external payable;
    function withdraw(uint256 amount) external;
    function transfer(address to, uint256 amount) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
    function allowance(address owner, address spender) external view returns (uint256);
}

/// @title GmxBaseRouter
/// @notice GMX's BaseRouter and PayableMulticall, shared by the ExchangeRouter and the
///         SubaccountRouter: multicall, sendWnt and sendTokens with GMX's signatures, and a
///         reentrancy guard.
abstract contract GmxBaseRouter {
    /// @notice The data store (its WNT entry names the wrapped native token).
    GmxDataStore public immutable dataStore;
    /// @notice The router users approve.
    GmxRouter public immutable router;

    bool private transient _entered;

    /// @notice A call of a multicall reverted without data.
    error MulticallFailed(uint256 index);
    /// @notice A guarded function was entered again before it returned.
    error ReentrantCall();

    constructor(GmxDataStore dataStore_, GmxRouter router_) {
        dataStore = dataStore_;
        router = router_;
    }

    modifier nonReentrant() {
        if (_entered) revert ReentrantCall();
        _entered = true;
        _;
        _entered = false;
    }

    /// @notice PayableMulticall: delegatecalls each entry to this contract, reverting with the
    ///         first failure's data.
    function multicall(bytes[] calldata data) external payable returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i; i < data.length; ++i) {
            (bool ok, bytes memory out) = address(this).delegatecall(data[i]);
            if (!ok) {
                if (out.length == 0) revert MulticallFailed(i);
                assembly ("memory-safe") {
                    revert(add(out, 32), mload(out))
                }
            }
            results[i] = out;
        }
    }

    /// @notice Wraps `amount` of native value (from what was sent) and sends it to `receiver`.
    function sendWnt(address receiver, uint256 amount) external payable nonReentrant {
        IGmxWNT wnt = _wnt();
        wnt.deposit{value: amount}();
        _sendWntTokens(wnt, receiver, amount);
    }

    /// @notice Moves `amount` of `token` the caller approved to the Router to `receiver`.
    function sendTokens(address token, address receiver, uint256 amount) external payable nonReentrant {
        router.pluginTransfer(token, msg.sender, receiver, amount);
    }

    function _wnt() internal view returns (IGmxWNT) {
        return IGmxWNT(dataStore.getAddress(GmxKeys.WNT));
    }

    function _sendWntTokens(IGmxWNT wnt, address receiver, uint256 amount) internal {
        if (!wnt.transfer(receiver, amount)) revert IGmx.TokenTransferError(address(wnt), receiver, amount);
    }
}
