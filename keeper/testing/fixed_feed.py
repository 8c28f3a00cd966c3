"""A Chainlink-compatible price feed that answers whatever its storage holds.

`keeper.testing.helpers.replace_feed` installs its runtime code (anvil_setCode) over a feed
on a fork and writes the answer into its storage, so `latestRoundData` returns a chosen
answer with a fresh `updatedAt` while decimals and description stay what they were.

RUNTIME is SOURCE compiled by solc 0.8.30 (optimizer on, 200 runs, evmVersion paris, no
metadata); tests/integration/testing/test_helpers.py checks that when solc is at hand.
"""

from __future__ import annotations

from typing import Final

# Storage slots of FixedFeed.
ANSWER_SLOT: Final = 0
UPDATED_AT_SLOT: Final = 1
ROUND_SLOT: Final = 2
DECIMALS_SLOT: Final = 3
DESCRIPTION_SLOT: Final = 4

SOURCE: Final = """\
// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// Chainlink-compatible feed that answers what its storage holds; installed with anvil_setCode
/// over a feed's code on a fork. Slots: 0 answer, 1 updatedAt, 2 round id, 3 decimals,
/// 4 description.
contract FixedFeed {
    int256 internal answer;
    uint256 internal updatedAt;
    uint256 internal round;
    uint256 internal decimals_;
    string internal description_;

    function decimals() external view returns (uint8) {
        return uint8(decimals_);
    }

    function description() external view returns (string memory) {
        return description_;
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return (uint80(round), answer, updatedAt, updatedAt, uint80(round));
    }

    function getRoundData(uint80 id)
        external
        view
        returns (uint80, int256, uint256, uint256, uint80)
    {
        require(id == uint80(round), "No data present");
        return (id, answer, updatedAt, updatedAt, id);
    }

    function latestAnswer() external view returns (int256) {
        return answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return updatedAt;
    }

    function latestRound() external view returns (uint256) {
        return round;
    }
}
"""

RUNTIME: Final = (
    "608060405234801561001057600080fd5b50600436106100885760003560e01c80637284e4161161005b5780"
    "637284e416146100c85780638205bf6a146100dd5780639a6fc8f5146100e5578063feaf968c1461012f5760"
    "0080fd5b8063313ce5671461008d57806350d25bcd146100a757806354fd4d50146100b9578063668a0f0214"
    "6100c0575b600080fd5b60035460405160ff90911681526020015b60405180910390f35b6000545b60405190"
    "815260200161009e565b60046100ab565b6002546100ab565b6100d061013f565b60405161009e919061024e"
    "565b6001546100ab565b6100f86100f336600461029c565b6101d1565b6040805169ffffffffffffffffffff"
    "968716815260208101959095528401929092526060830152909116608082015260a00161009e565b60025460"
    "005460015480836100f8565b60606004805461014e906102cf565b80601f0160208091040260200160405190"
    "81016040528092919081815260200182805461017a906102cf565b80156101c75780601f1061019c57610100"
    "8083540402835291602001916101c7565b820191906000526020600020905b81548152906001019060200180"
    "83116101aa57829003601f168201915b5050505050905090565b600080600080600060025469ffffffffffff"
    "ffffffff168669ffffffffffffffffffff16146102385760405162461bcd60e51b815260206004820152600f"
    "60248201526e139bc819185d18481c1c995cd95b9d608a1b604482015260640160405180910390fd5b505060"
    "0054600154949590949350839250859150565b602081526000825180602084015260005b8181101561027c57"
    "6020818601810151604086840101520161025f565b506000604082850101526040601f19601f830116840101"
    "91505092915050565b6000602082840312156102ae57600080fd5b813569ffffffffffffffffffff81168114"
    "6102c857600080fd5b9392505050565b600181811c908216806102e357607f821691505b6020821081036103"
    "0357634e487b7160e01b600052602260045260246000fd5b5091905056"
)
