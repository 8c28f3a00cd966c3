// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";

/// @title PriceFeed
/// @notice A Chainlink-compatible price feed (8 decimals) whose answer is pushed by an oracle account.
///         Every `setAnswer` starts a new round with startedAt = updatedAt = block.timestamp and
///         answeredInRound = roundId. Rounds are numbered from 1.
contract PriceFeed is AggregatorV3Interface {
    struct Round {
        int256 answer;
        uint64 updatedAt;
    }

    /// @notice Decimals of every answer.
    uint8 public constant override decimals = 8;
    /// @notice Version of this feed implementation.
    uint256 public constant override version = 1;

    /// @notice Account that may change the oracle and transfer ownership.
    address public owner;
    /// @notice Account that may push answers.
    address public oracle;
    /// @notice Id of the latest round (0 before the first answer).
    uint80 public latestRound;

    string private _description;
    mapping(uint80 => Round) private _rounds;

    /// @notice A new answer was pushed.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    /// @notice The oracle role moved.
    event OracleSet(address indexed oracle);
    /// @notice Ownership moved.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice The caller is not the owner.
    error NotOwner();
    /// @notice The caller is not the oracle.
    error NotOracle();
    /// @notice The zero address is not allowed here.
    error ZeroAddress();
    /// @notice The round does not exist (or no answer was pushed yet).
    error NoDataPresent();

    /// @param description_ Feed description, e.g. "ETH / USD".
    /// @param oracle_ Initial oracle account.
    constructor(string memory description_, address oracle_) {
        if (oracle_ == address(0)) revert ZeroAddress();
        _description = description_;
        owner = msg.sender;
        oracle = oracle_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit OracleSet(oracle_);
    }

    /// @notice Feed description.
    function description() external view override returns (string memory) {
        return _description;
    }

    /// @notice Sets the oracle account (owner only).
    function setOracle(address oracle_) external {
        if (msg.sender != owner) revert NotOwner();
        if (oracle_ == address(0)) revert ZeroAddress();
        oracle = oracle_;
        emit OracleSet(oracle_);
    }

    /// @notice Transfers ownership (owner only).
    function transferOwnership(address newOwner) external {
        if (msg.sender != owner) revert NotOwner();
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Pushes a new answer (8 decimals) as a new round (oracle only). Any value is accepted;
    ///         consumers decide what a valid price is.
    function setAnswer(int256 answer) external {
        if (msg.sender != oracle) revert NotOracle();
        uint80 roundId = latestRound + 1;
        latestRound = roundId;
        _rounds[roundId] = Round({answer: answer, updatedAt: uint64(block.timestamp)});
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    /// @notice Data of round `roundId`; reverts NoDataPresent for unknown rounds.
    function getRoundData(uint80 roundId) external view override returns (uint80, int256, uint256, uint256, uint80) {
        return _round(roundId);
    }

    /// @notice Data of the latest round; reverts NoDataPresent before the first answer.
    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        return _round(latestRound);
    }

    function _round(uint80 roundId) private view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _rounds[roundId];
        if (r.updatedAt == 0) revert NoDataPresent();
        return (roundId, r.answer, r.updatedAt, r.updatedAt, roundId);
    }
}
