// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title GmxMockOracleProvider
/// @notice An oracle provider with GMX v2's IOracleProvider interface that returns the price the
///         caller passes: `data` is abi.encode(uint256 min, uint256 max). Fork tests put its runtime
///         code at a real provider's address (anvil_setCode) to execute orders at chosen prices.
///         It reads no storage, so it works under any address's storage.
contract GmxMockOracleProvider {
    /// @notice OracleUtils.ValidatedPrice.
    struct ValidatedPrice {
        address token;
        uint256 min;
        uint256 max;
        uint256 timestamp;
        address provider;
    }

    /// @notice The price in `data` for `token`, stamped with the block's time.
    function getOraclePrice(address token, bytes memory data) external view returns (ValidatedPrice memory) {
        (uint256 min, uint256 max) = abi.decode(data, (uint256, uint256));
        return ValidatedPrice(token, min, max, block.timestamp, address(this));
    }

    /// @notice Timestamps are not adjusted.
    function shouldAdjustTimestamp() external pure returns (bool) {
        return false;
    }

    /// @notice Not the Chainlink on-chain provider (so GMX checks it against the reference feed).
    function isChainlinkOnChainProvider() external pure returns (bool) {
        return false;
    }
}
