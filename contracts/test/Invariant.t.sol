// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {TestUSDC} from "../src/TestUSDC.sol";
import {PriceFeed} from "../src/PriceFeed.sol";
import {PerpExchange} from "../src/PerpExchange.sol";
import {PerpMath} from "../src/PerpMath.sol";
import {IERC20} from "../src/interfaces/IERC20.sol";
import {MarketParams, MarketState, Position, Health} from "../src/PerpTypes.sol";

/// Drives LPs, isolated and cross traders, liquidators, price moves and time over two markets
/// (the second with price impact), and records any breach of the post-conditions it checks itself.
contract Handler is Test {
    PerpExchange internal ex;
    TestUSDC internal usdc;
    PriceFeed[2] internal feeds;
    int256[2] internal answers;

    address[3] internal traders;
    address[2] internal lps;
    address internal keeper;

    /// Post-condition breaches (must stay empty).
    string[] public breaches;
    /// Successful calls per action, for the log.
    mapping(bytes32 => uint256) public calls;

    constructor(PerpExchange ex_, TestUSDC usdc_, PriceFeed[2] memory feeds_, address oracle) {
        ex = ex_;
        usdc = usdc_;
        feeds = feeds_;
        answers = [int256(2000e8), int256(30_000e8)];
        for (uint256 i = 0; i < 3; ++i) {
            traders[i] = makeAddr(string.concat("trader", vm.toString(i)));
            _fund(traders[i]);
        }
        for (uint256 i = 0; i < 2; ++i) {
            lps[i] = makeAddr(string.concat("lp", vm.toString(i)));
            _fund(lps[i]);
        }
        keeper = makeAddr("keeper");
        vm.label(oracle, "oracle");
        oracle_ = oracle;
    }

    address internal oracle_;

    function breachCount() external view returns (uint256) {
        return breaches.length;
    }

    function allTraders() external view returns (address[3] memory) {
        return traders;
    }

    // ------------------------------------------------------------ LPs

    function deposit(uint256 who, uint256 amount) external {
        address lp = lps[who % 2];
        amount = _bound(amount, 1e6, 200_000e6);
        vm.prank(lp);
        try ex.deposit(amount) {
            calls["deposit"]++;
        } catch {}
    }

    function withdraw(uint256 who, uint256 fraction) external {
        address lp = lps[who % 2];
        uint256 shares = ex.lpShares(lp) * _bound(fraction, 1, 100) / 100;
        uint256 poolBefore = ex.poolAmount();
        vm.prank(lp);
        try ex.withdraw(shares) returns (uint256 amount) {
            calls["withdraw"]++;
            if (ex.poolAmount() < ex.reservedAmount()) _breach("withdraw below reserve");
            if (amount > poolBefore) _breach("withdraw more than pool");
        } catch {}
    }

    // ------------------------------------------------------------ isolated

    function openIsolated(uint256 who, uint256 market, bool isLong, uint256 collateral, uint256 leverage) external {
        address t = traders[who % 3];
        market %= 2;
        collateral = _bound(collateral, 10e6, 20_000e6);
        uint256 size = _size(market, collateral, _bound(leverage, 1, 12));
        vm.prank(t);
        try ex.openPosition(market, isLong, collateral, size) {
            calls["openIsolated"]++;
            _checkIsolatedIM(ex.positionKey(t, market, isLong), "open isolated");
        } catch {}
    }

    function decreaseIsolated(uint256 who, uint256 pick, uint256 fraction) external {
        (address t, Position memory p) = _pick(who, pick, false);
        if (p.size == 0) return;
        uint256 sizeDelta = p.size * _bound(fraction, 1, 100) / 100;
        vm.prank(t);
        try ex.decreasePosition(p.marketId, p.isLong, sizeDelta) {
            calls["decreaseIsolated"]++;
            if (sizeDelta < p.size) _checkIsolatedIM(ex.positionKey(t, p.marketId, p.isLong), "decrease isolated");
        } catch {}
    }

    function closeIsolated(uint256 who, uint256 pick) external {
        (address t, Position memory p) = _pick(who, pick, false);
        if (p.size == 0) return;
        vm.prank(t);
        try ex.closePosition(p.marketId, p.isLong) {
            calls["closeIsolated"]++;
        } catch {}
    }

    function addMargin(uint256 who, uint256 pick, uint256 amount) external {
        (address t, Position memory p) = _pick(who, pick, false);
        if (p.size == 0) return;
        vm.prank(t);
        try ex.addMargin(p.marketId, p.isLong, _bound(amount, 1, 5_000e6)) {
            calls["addMargin"]++;
        } catch {}
    }

    function removeMargin(uint256 who, uint256 pick, uint256 amount) external {
        (address t, Position memory p) = _pick(who, pick, false);
        if (p.size == 0) return;
        vm.prank(t);
        try ex.removeMargin(p.marketId, p.isLong, _bound(amount, 1, p.collateral)) {
            calls["removeMargin"]++;
            _checkIsolatedIM(ex.positionKey(t, p.marketId, p.isLong), "remove margin");
        } catch {}
    }

    function liquidate(uint256 who, uint256 pick) external {
        (address t, Position memory p) = _pick(who, pick, false);
        if (p.size == 0) return;
        bool flagged = _tryIsLiquidatable(ex.positionKey(t, p.marketId, p.isLong));
        vm.prank(keeper);
        try ex.liquidate(t, p.marketId, p.isLong) {
            calls["liquidate"]++;
            if (!flagged) _breach("liquidated while not flagged");
        } catch {
            if (flagged) _breach("flagged but liquidation failed");
        }
    }

    // ------------------------------------------------------------ cross

    function depositCross(uint256 who, uint256 amount) external {
        vm.prank(traders[who % 3]);
        try ex.depositCross(_bound(amount, 1e6, 20_000e6)) {
            calls["depositCross"]++;
        } catch {}
    }

    function withdrawCross(uint256 who, uint256 amount) external {
        address t = traders[who % 3];
        vm.prank(t);
        try ex.withdrawCross(_bound(amount, 1, 20_000e6)) {
            calls["withdrawCross"]++;
            _checkCrossIM(t, "withdraw cross");
        } catch {}
    }

    function openCross(uint256 who, uint256 market, bool isLong, uint256 leverage) external {
        address t = traders[who % 3];
        market %= 2;
        uint256 size = _size(market, ex.crossBalance(t) / 2 + 1e6, _bound(leverage, 1, 12));
        vm.prank(t);
        try ex.openCross(market, isLong, size) {
            calls["openCross"]++;
            _checkCrossIM(t, "open cross");
        } catch {}
    }

    function decreaseCross(uint256 who, uint256 pick, uint256 fraction) external {
        (address t, Position memory p) = _pick(who, pick, true);
        if (p.size == 0) return;
        vm.prank(t);
        try ex.decreaseCross(p.marketId, p.isLong, p.size * _bound(fraction, 1, 100) / 100) {
            calls["decreaseCross"]++;
            if (ex.isCrossLiquidatable(t)) _breach("decrease cross: liquidatable");
        } catch {}
    }

    function closeCross(uint256 who, uint256 pick) external {
        (address t, Position memory p) = _pick(who, pick, true);
        if (p.size == 0) return;
        vm.prank(t);
        try ex.closeCross(p.marketId, p.isLong) {
            calls["closeCross"]++;
        } catch {}
    }

    function liquidateCross(uint256 who) external {
        address t = traders[who % 3];
        bool flagged;
        try ex.isCrossLiquidatable(t) returns (bool f) {
            flagged = f;
        } catch {}
        vm.prank(keeper);
        try ex.liquidateCross(t) {
            calls["liquidateCross"]++;
            if (!flagged) _breach("cross liquidated while not flagged");
            if (ex.crossBalance(t) != 0 || ex.crossPositionKeys(t).length != 0) _breach("cross not cleared");
        } catch {
            if (flagged) _breach("cross flagged but liquidation failed");
        }
    }

    // ------------------------------------------------------------ environment

    function movePrice(uint256 market, int256 bps) external {
        market %= 2;
        bps = _bound(bps, -1500, 1500);
        int256 next = answers[market] * (10_000 + bps) / 10_000;
        if (next < 1e8) next = 1e8;
        answers[market] = next;
        _push(market);
        calls["movePrice"]++;
    }

    function passTime(uint256 seconds_) external {
        skip(_bound(seconds_, 1, 3 days));
        _push(0);
        _push(1);
        calls["passTime"]++;
    }

    function updateFunding(uint256 market) external {
        ex.updateFunding(market % 2);
        calls["updateFunding"]++;
    }

    // ------------------------------------------------------------ helpers

    /// One of the trader's open isolated or cross positions (size 0 when there is none).
    function _pick(uint256 who, uint256 pick, bool cross) internal view returns (address t, Position memory p) {
        t = traders[who % 3];
        bytes32[] memory keys = cross ? ex.crossPositionKeys(t) : ex.isolatedPositionKeys(t);
        if (keys.length != 0) p = ex.positions(keys[pick % keys.length]);
    }

    function _push(uint256 market) internal {
        vm.prank(oracle_);
        feeds[market].setAnswer(answers[market]);
    }

    function _size(uint256 market, uint256 collateral, uint256 leverage) internal view returns (uint256) {
        return collateral * leverage * 1e30 / (uint256(answers[market]) * 1e10);
    }

    function _fund(address who) internal {
        usdc.mint(who, 100_000_000e6);
        vm.prank(who);
        usdc.approve(address(ex), type(uint256).max);
    }

    function _tryIsLiquidatable(bytes32 key) internal view returns (bool) {
        try ex.isLiquidatable(key) returns (bool f) {
            return f;
        } catch {
            return false;
        }
    }

    function _checkIsolatedIM(bytes32 key, string memory what) internal {
        Position memory p = ex.positions(key);
        if (p.size == 0) return;
        MarketState memory s = ex.marketState(p.marketId);
        Health memory h = PerpMath.health(
            p, ex.marketParams(p.marketId), p.isLong ? s.longFundingIndex : s.shortFundingIndex, ex.getPrice(p.marketId)
        );
        if (h.equity < int256(h.initialMargin)) _breach(string.concat(what, ": below initial margin"));
        if (ex.isLiquidatable(key)) _breach(string.concat(what, ": liquidatable"));
    }

    function _checkCrossIM(address t, string memory what) internal {
        (int256 equity,, uint256 initialMargin) = ex.crossHealth(t);
        if (equity < int256(initialMargin)) _breach(string.concat(what, ": below initial margin"));
        if (ex.isCrossLiquidatable(t)) _breach(string.concat(what, ": liquidatable"));
    }

    function _breach(string memory what) internal {
        breaches.push(what);
    }
}

contract PerpInvariantTest is StdInvariant, Test {
    PerpExchange internal ex;
    TestUSDC internal usdc;
    Handler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        address oracle = makeAddr("oracle");
        usdc = new TestUSDC();
        ex = new PerpExchange(IERC20(address(usdc)));
        PriceFeed[2] memory feeds = [new PriceFeed("ETH / USD", oracle), new PriceFeed("BTC / USD", oracle)];
        vm.startPrank(oracle);
        feeds[0].setAnswer(2000e8);
        feeds[1].setAnswer(30_000e8);
        vm.stopPrank();
        for (uint256 i = 0; i < 2; ++i) {
            ex.addMarket(
                MarketParams({
                    feed: address(feeds[i]),
                    maxStaleness: 3600,
                    initialMarginRate: 0.1e18,
                    maintenanceMarginRate: 0.05e18,
                    openFeeRate: 0.001e18,
                    closeFeeRate: 0.001e18,
                    liquidationFeeRate: 0.01e18,
                    fundingFactor: 1e10,
                    maxFundingRate: 1e10,
                    reserveFactor: 0.5e18,
                    impactFactor: i == 0 ? 0 : 1e15, // BTC: 0.1% premium per 1 BTC of skew
                    maxImpactRate: 0.02e18,
                    maxLongOI: 1_000_000e18,
                    maxShortOI: 1_000_000e18
                })
            );
        }
        handler = new Handler(ex, usdc, feeds, oracle);
        // a funded pool and cross accounts, so that most generated calls can succeed
        usdc.mint(address(this), 5_000_000e6);
        usdc.approve(address(ex), type(uint256).max);
        ex.deposit(5_000_000e6);
        address[3] memory traders = handler.allTraders();
        for (uint256 i = 0; i < traders.length; ++i) {
            vm.prank(traders[i]);
            ex.depositCross(50_000e6);
        }
        targetContract(address(handler));
    }

    /// Every token the exchange holds is owed to the pool, an isolated position or a cross account.
    function invariant_tokenConservation() public view {
        address[3] memory traders = handler.allTraders();
        uint256 owed = ex.poolAmount();
        for (uint256 i = 0; i < traders.length; ++i) {
            owed += ex.crossBalance(traders[i]);
            bytes32[] memory keys = ex.isolatedPositionKeys(traders[i]);
            for (uint256 j = 0; j < keys.length; ++j) {
                owed += ex.positions(keys[j]).collateral;
            }
        }
        assertEq(usdc.balanceOf(address(ex)), owed);
    }

    /// Open interest, entry notional and the funding bases equal the sums over positions; the
    /// aggregate unsettled funding of each side equals the positions' within one unit each.
    function invariant_marketAggregates() public view {
        address[3] memory traders = handler.allTraders();
        for (uint256 m = 0; m < 2; ++m) {
            MarketState memory s = ex.marketState(m);
            uint256[2] memory oi;
            int256[2] memory pending;
            uint256 entryNotional;
            uint256 count;
            for (uint256 i = 0; i < traders.length; ++i) {
                for (uint256 side = 0; side < 4; ++side) {
                    bool isLong = side % 2 == 0;
                    bytes32 key =
                        side < 2 ? ex.positionKey(traders[i], m, isLong) : ex.crossPositionKey(traders[i], m, isLong);
                    Position memory p = ex.positions(key);
                    if (p.size == 0) continue;
                    ++count;
                    oi[side % 2] += p.size;
                    entryNotional += p.size * p.entryPrice;
                    int256 index = isLong ? s.longFundingIndex : s.shortFundingIndex;
                    pending[side % 2] += PerpMath.fundingOwed(p.size, index, p.fundingIndex);
                }
            }
            assertEq(s.longOI, oi[0], "long OI");
            assertEq(s.shortOI, oi[1], "short OI");
            assertEq(s.entryNotional, entryNotional, "entry notional");
            int256 longAgg = PerpMath.divCeil(int256(s.longOI) * s.longFundingIndex - s.longFundingBase, 1e30);
            int256 shortAgg = PerpMath.divCeil(int256(s.shortOI) * s.shortFundingIndex - s.shortFundingBase, 1e30);
            assertApproxEqAbs(longAgg, pending[0], count, "long unsettled funding");
            assertApproxEqAbs(shortAgg, pending[1], count, "short unsettled funding");
        }
    }

    /// The pool never holds less than zero (uint) nor more than the exchange's tokens, and no
    /// post-condition was breached: nothing is liquidatable or below initial margin right after an
    /// open, increase, margin removal or withdrawal; liquidations succeed exactly when flagged.
    function invariant_postConditions() public view {
        assertLe(ex.poolAmount(), usdc.balanceOf(address(ex)));
        uint256 n = handler.breachCount();
        if (n != 0) assertEq(handler.breaches(0), "", "post-condition breached");
        assertEq(n, 0);
    }

    /// Calls that succeeded, shown with -vv.
    function afterInvariant() public {
        string[16] memory names = [
            "deposit",
            "withdraw",
            "openIsolated",
            "decreaseIsolated",
            "closeIsolated",
            "addMargin",
            "removeMargin",
            "liquidate",
            "depositCross",
            "withdrawCross",
            "openCross",
            "decreaseCross",
            "closeCross",
            "liquidateCross",
            "movePrice",
            "passTime"
        ];
        for (uint256 i = 0; i < names.length; ++i) {
            emit log_named_uint(names[i], handler.calls(bytes32(bytes(names[i]))));
        }
    }
}
