// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title TestUSDC
/// @notice Minimal ERC-20 with 6 decimals and an open `mint`, used as the collateral token of the
///         reference exchange in tests, on Anvil and on test networks. Not for production use.
contract TestUSDC {
    /// @notice Token name.
    string public constant name = "Test USD Coin";
    /// @notice Token symbol.
    string public constant symbol = "USDC";
    /// @notice Token decimals (6, like USDC).
    uint8 public constant decimals = 6;

    /// @notice Total amount of tokens in existence.
    uint256 public totalSupply;
    /// @notice Token balance of each holder.
    mapping(address => uint256) public balanceOf;
    /// @notice Remaining amount `spender` may move on behalf of `owner`.
    mapping(address => mapping(address => uint256)) public allowance;

    /// @notice Emitted on every balance movement (mint: `from` is zero).
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice Emitted when an allowance is set by `approve` (not on `transferFrom` spending).
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice The sender's balance is below the amount.
    error InsufficientBalance(uint256 balance, uint256 needed);
    /// @notice The spender's allowance is below the amount.
    error InsufficientAllowance(uint256 allowance, uint256 needed);
    /// @notice Tokens cannot be sent to or minted for the zero address.
    error ZeroAddress();

    /// @notice Mints `amount` tokens to `to`; anyone may call it (test token).
    /// @param to Recipient.
    /// @param amount Amount in token units (6 decimals).
    function mint(address to, uint256 amount) external {
        if (to == address(0)) revert ZeroAddress();
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Moves `amount` tokens from the sender to `to`.
    /// @return Always true (failures revert).
    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// @notice Lets `spender` move up to `amount` of the sender's tokens.
    /// @return Always true.
    function approve(address spender, uint256 amount) external returns (bool) {
        if (spender == address(0)) revert ZeroAddress();
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @notice Moves `amount` tokens from `from` to `to` using the sender's allowance
    ///         (an allowance of type(uint256).max is never decreased).
    /// @return Always true (failures revert).
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(allowed, amount);
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, amount);
    }
}
