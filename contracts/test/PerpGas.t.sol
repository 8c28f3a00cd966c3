// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {BaseTest} from "./Base.t.sol";

/// Gas of the main operations in a typical sequence, each from cold storage as in its own
/// transaction, logged with -vv: `forge test --match-contract PerpGasTest -vv`. Figures are execution
/// gas of the call (without the 21,000 base cost, calldata and storage refunds).
contract PerpGasTest is BaseTest {
    /// Storage of the contracts is cold again, as in a new transaction.
    function _cool() internal {
        vm.cool(address(ex));
        vm.cool(address(usdc));
        vm.cool(address(feed));
    }

    function _log(string memory what) internal {
        emit log_named_uint(what, vm.lastCallGas().gasTotalUsed);
    }

    function test_GasTypicalSequence() public {
        open(bob, false, 10_000e6, 1e18); // the market is in use
        skip(60);
        setPrice(2000e8);
        vm.startPrank(alice);
        _cool();
        ex.openPosition(ETH, true, 250e6, 1e18);
        _log("openPosition (new)");
        _cool();
        ex.openPosition(ETH, true, 250e6, 1e18);
        _log("openPosition (increase)");
        _cool();
        ex.addMargin(ETH, true, 100e6);
        _log("addMargin");
        _cool();
        ex.removeMargin(ETH, true, 50e6);
        _log("removeMargin");
        _cool();
        ex.decreasePosition(ETH, true, 0.5e18);
        _log("decreasePosition (partial)");
        _cool();
        ex.closePosition(ETH, true);
        _log("closePosition");
        ex.openPosition(ETH, true, 250e6, 1e18);
        vm.stopPrank();
        setPrice(1800e8);
        vm.prank(keeper);
        _cool();
        ex.liquidate(alice, ETH, true);
        _log("liquidate");
        vm.startPrank(alice);
        _cool();
        ex.depositCross(1000e6);
        _log("depositCross");
        _cool();
        ex.openCross(ETH, true, 1e18);
        _log("openCross (new)");
        _cool();
        ex.openCross(ETH, false, 1e18);
        _log("openCross (second position)");
        _cool();
        ex.decreaseCross(ETH, true, 0.5e18);
        _log("decreaseCross (partial)");
        _cool();
        ex.closeCross(ETH, true);
        _log("closeCross");
        _cool();
        ex.withdrawCross(100e6);
        _log("withdrawCross (one position)");
        ex.openCross(ETH, true, 3e18);
        vm.stopPrank();
        setPrice(1500e8);
        vm.prank(keeper);
        _cool();
        ex.liquidateCross(alice);
        _log("liquidateCross (two positions)");
        skip(60);
        setPrice(1500e8);
        _cool();
        ex.updateFunding(ETH);
        _log("updateFunding");
    }
}
