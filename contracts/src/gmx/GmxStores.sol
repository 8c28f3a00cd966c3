// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IGmx, GmxKeys} from "./IGmx.sol";

/// @title GmxRoleStore
/// @notice RoleStore.hasRole with GMX's signature; the deployer holds ROLE_ADMIN and grants roles.
contract GmxRoleStore {
    mapping(address account => mapping(bytes32 role => bool)) private _roles;

    /// @notice Deployer becomes the role admin.
    constructor() {
        _roles[msg.sender][GmxKeys.ROLE_ADMIN] = true;
    }

    /// @notice Whether `account` holds `roleKey`.
    function hasRole(address account, bytes32 roleKey) external view returns (bool) {
        return _roles[account][roleKey];
    }

    /// @notice Grants `roleKey` to `account` (role admin only).
    function grantRole(address account, bytes32 roleKey) external {
        if (!_roles[msg.sender][GmxKeys.ROLE_ADMIN]) revert IGmx.Unauthorized(msg.sender, "ROLE_ADMIN");
        _roles[account][roleKey] = true;
    }

    /// @notice Revokes `roleKey` from `account` (role admin only).
    function revokeRole(address account, bytes32 roleKey) external {
        if (!_roles[msg.sender][GmxKeys.ROLE_ADMIN]) revert IGmx.Unauthorized(msg.sender, "ROLE_ADMIN");
        _roles[account][roleKey] = false;
    }
}

/// @notice Access by role, against a GmxRoleStore.
abstract contract GmxRoleAuth {
    /// @notice The role store.
    GmxRoleStore public immutable roleStore;

    constructor(GmxRoleStore roleStore_) {
        roleStore = roleStore_;
    }

    modifier onlyRole(bytes32 role, string memory name) {
        if (!roleStore.hasRole(msg.sender, role)) revert IGmx.Unauthorized(msg.sender, name);
        _;
    }
}

/// @title GmxDataStore
/// @notice DataStore's getters and bytes32 sets with GMX's signatures; CONTROLLERs set values.
contract GmxDataStore is GmxRoleAuth {
    mapping(bytes32 => uint256) private _uints;
    mapping(bytes32 => int256) private _ints;
    mapping(bytes32 => address) private _addresses;
    mapping(bytes32 => bool) private _bools;
    mapping(bytes32 => bytes32) private _bytes32s;
    mapping(bytes32 => bytes32[]) private _sets;
    mapping(bytes32 => mapping(bytes32 => uint256)) private _setIndex; // position + 1
    mapping(bytes32 => mapping(address => bool)) private _addressSets;

    constructor(GmxRoleStore roleStore_) GmxRoleAuth(roleStore_) {}

    /// @notice A uint value.
    function getUint(bytes32 key) external view returns (uint256) {
        return _uints[key];
    }

    /// @notice An int value.
    function getInt(bytes32 key) external view returns (int256) {
        return _ints[key];
    }

    /// @notice An address value.
    function getAddress(bytes32 key) external view returns (address) {
        return _addresses[key];
    }

    /// @notice A bool value.
    function getBool(bytes32 key) external view returns (bool) {
        return _bools[key];
    }

    /// @notice A bytes32 value.
    function getBytes32(bytes32 key) external view returns (bytes32) {
        return _bytes32s[key];
    }

    /// @notice Whether the set `setKey` holds `value`.
    function containsBytes32(bytes32 setKey, bytes32 value) external view returns (bool) {
        return _setIndex[setKey][value] != 0;
    }

    /// @notice Whether the address set `setKey` holds `value` (GMX keeps subaccounts there).
    function containsAddress(bytes32 setKey, address value) external view returns (bool) {
        return _addressSets[setKey][value];
    }

    /// @notice The size of the set `setKey`.
    function getBytes32Count(bytes32 setKey) external view returns (uint256) {
        return _sets[setKey].length;
    }

    /// @notice The values of set `setKey` in [start, end) (end capped at the size).
    function getBytes32ValuesAt(bytes32 setKey, uint256 start, uint256 end) external view returns (bytes32[] memory) {
        bytes32[] storage set = _sets[setKey];
        if (end > set.length) end = set.length;
        if (start >= end) return new bytes32[](0);
        bytes32[] memory out = new bytes32[](end - start);
        for (uint256 i = start; i < end; ++i) {
            out[i - start] = set[i];
        }
        return out;
    }

    /// @notice Adds `value` to the address set `setKey` (controller only).
    function addAddress(bytes32 setKey, address value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _addressSets[setKey][value] = true;
    }

    /// @notice Removes `value` from the address set `setKey` (controller only).
    function removeAddress(bytes32 setKey, address value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        delete _addressSets[setKey][value];
    }

    /// @notice Sets a uint value (controller only).
    function setUint(bytes32 key, uint256 value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _uints[key] = value;
    }

    /// @notice DataStore.incrementUint: adds `value` to a uint value (controller only); the sum.
    function incrementUint(bytes32 key, uint256 value)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
        returns (uint256)
    {
        return _uints[key] += value;
    }

    /// @notice Sets an int value (controller only).
    function setInt(bytes32 key, int256 value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _ints[key] = value;
    }

    /// @notice Sets an address value (controller only).
    function setAddress(bytes32 key, address value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _addresses[key] = value;
    }

    /// @notice Sets a bool value (controller only).
    function setBool(bytes32 key, bool value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _bools[key] = value;
    }

    /// @notice Sets a bytes32 value (controller only).
    function setBytes32(bytes32 key, bytes32 value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        _bytes32s[key] = value;
    }

    /// @notice Adds `value` to the set `setKey` (controller only; no-op when present).
    function addBytes32(bytes32 setKey, bytes32 value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        if (_setIndex[setKey][value] != 0) return;
        _sets[setKey].push(value);
        _setIndex[setKey][value] = _sets[setKey].length;
    }

    /// @notice Removes `value` from the set `setKey` (controller only; no-op when absent).
    function removeBytes32(bytes32 setKey, bytes32 value) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") {
        uint256 at = _setIndex[setKey][value];
        if (at == 0) return;
        bytes32[] storage set = _sets[setKey];
        bytes32 last = set[set.length - 1];
        set[at - 1] = last;
        _setIndex[setKey][last] = at;
        set.pop();
        delete _setIndex[setKey][value];
    }
}

/// @title GmxEventEmitter
/// @notice EventEmitter's EventLog1 / EventLog2 with GMX's shapes; CONTROLLERs emit.
contract GmxEventEmitter is GmxRoleAuth {
    /// @notice GMX's one-topic event.
    event EventLog1(
        address msgSender,
        string eventName,
        string indexed eventNameHash,
        bytes32 indexed topic1,
        IGmx.EventLogData eventData
    );
    /// @notice GMX's two-topic event (OrderCreated, OrderExecuted, OrderCancelled).
    event EventLog2(
        address msgSender,
        string eventName,
        string indexed eventNameHash,
        bytes32 indexed topic1,
        bytes32 indexed topic2,
        IGmx.EventLogData eventData
    );

    constructor(GmxRoleStore roleStore_) GmxRoleAuth(roleStore_) {}

    /// @notice Emits EventLog1 (controller only).
    function emitEventLog1(string memory eventName, bytes32 topic1, IGmx.EventLogData memory eventData)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
    {
        emit EventLog1(msg.sender, eventName, eventName, topic1, eventData);
    }

    /// @notice Emits EventLog2 (controller only).
    function emitEventLog2(string memory eventName, bytes32 topic1, bytes32 topic2, IGmx.EventLogData memory eventData)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
    {
        emit EventLog2(msg.sender, eventName, eventName, topic1, topic2, eventData);
    }
}

/// @notice The ERC-20 calls the GMX test deployment makes.
interface IGmxToken {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title GmxWNT
/// @notice A WETH9-style wrapped native token (18 decimals).
contract GmxWNT {
    /// @notice Token name.
    string public constant name = "Wrapped Ether";
    /// @notice Token symbol.
    string public constant symbol = "WETH";
    /// @notice Token decimals.
    uint8 public constant decimals = 18;
    /// @notice Balances.
    mapping(address => uint256) public balanceOf;
    /// @notice Allowances.
    mapping(address => mapping(address => uint256)) public allowance;

    /// @notice ERC-20 Transfer.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20 Approval.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice A balance or allowance is short.
    error InsufficientFunds(uint256 available, uint256 needed);
    /// @notice Sending native value failed.
    error NativeTransferFailed(address to, uint256 amount);

    /// @notice Wraps the value sent.
    function deposit() public payable {
        balanceOf[msg.sender] += msg.value;
        emit Transfer(address(0), msg.sender, msg.value);
    }

    receive() external payable {
        deposit();
    }

    /// @notice Unwraps `amount` to the caller.
    function withdraw(uint256 amount) external {
        uint256 balance = balanceOf[msg.sender];
        if (balance < amount) revert InsufficientFunds(balance, amount);
        balanceOf[msg.sender] = balance - amount;
        emit Transfer(msg.sender, address(0), amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert NativeTransferFailed(msg.sender, amount);
    }

    /// @notice Total supply: the native value held.
    function totalSupply() external view returns (uint256) {
        return address(this).balance;
    }

    /// @notice ERC-20 approve.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @notice ERC-20 transfer.
    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    /// @notice ERC-20 transferFrom.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (from != msg.sender) {
            uint256 allowed = allowance[from][msg.sender];
            if (allowed != type(uint256).max) {
                if (allowed < amount) revert InsufficientFunds(allowed, amount);
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _move(from, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientFunds(balance, amount);
        balanceOf[from] = balance - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}

/// @title GmxOrderVault
/// @notice OrderVault: holds what orders bring; records transfers in like GMX's StrictBank.
contract GmxOrderVault is GmxRoleAuth {
    mapping(address token => uint256) private _recorded;

    constructor(GmxRoleStore roleStore_) GmxRoleAuth(roleStore_) {}

    /// @notice The amount of `token` received since the last record (controller only).
    function recordTransferIn(address token) external onlyRole(GmxKeys.CONTROLLER, "CONTROLLER") returns (uint256) {
        uint256 balance = IGmxToken(token).balanceOf(address(this));
        uint256 received = balance - _recorded[token];
        _recorded[token] = balance;
        return received;
    }

    /// @notice Sends `amount` of `token` to `receiver` (controller only).
    function transferOut(address token, address receiver, uint256 amount)
        external
        onlyRole(GmxKeys.CONTROLLER, "CONTROLLER")
    {
        if (amount == 0) return;
        if (!IGmxToken(token).transfer(receiver, amount)) revert IGmx.TokenTransferError(token, receiver, amount);
        _recorded[token] = IGmxToken(token).balanceOf(address(this));
    }
}

/// @title GmxRouter
/// @notice Router.pluginTransfer: moves tokens users approved to the Router, for ROUTER_PLUGINs.
contract GmxRouter is GmxRoleAuth {
    constructor(GmxRoleStore roleStore_) GmxRoleAuth(roleStore_) {}

    /// @notice Moves `amount` of `token` from `account` to `receiver` (router plugins only).
    function pluginTransfer(address token, address account, address receiver, uint256 amount)
        external
        onlyRole(GmxKeys.ROUTER_PLUGIN, "ROUTER_PLUGIN")
    {
        if (!IGmxToken(token).transferFrom(account, receiver, amount)) {
            revert IGmx.TokenTransferError(token, receiver, amount);
        }
    }
}
