// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IERC20} from "./interfaces/IERC20.sol";
import {MarketParams, MarketState, Position, Health, OperatorGrant} from "./PerpTypes.sol";
import {PerpMath} from "./PerpMath.sol";

/// @title PerpExchange: the reference perpetual exchange of perp-keeper
/// @notice Perpetual futures against a liquidity pool, with isolated and cross margin.
///
/// Units:
/// - USD amounts (collateral, balances, pnl, fees, notional, funding, pool liquidity) are in collateral
///   token units: the one ERC-20 `collateralToken` (USDC, 6 decimals).
/// - Sizes (positions, open interest and its caps) are in base-token units with 18 decimals.
/// - Prices are USD per base token with 18 decimals (the feed's answer scaled up from its decimals).
/// - Rates (margin, fees, reserve, funding per second, impact) are WAD: 1e18 = 100%.
/// - LP shares have 18 decimals (1e12 shares per collateral unit at the first deposit).
///
/// Margin (mark basis, per DESIGN.md): notional N = size * mark;
/// equity = collateral + pnl(at mark) - pending funding - closeFeeRate * N (cross: the account's balance
/// plus the sum over its positions); maintenance MM = maintenanceMarginRate * N; initial IM =
/// initialMarginRate * N. Liquidatable when equity < MM, strictly. Opens, increases, margin removals,
/// cross withdrawals and partial isolated decreases require equity >= IM afterwards; cross decreases
/// require the account's equity >= its MM afterwards. Price impact is not part of
/// equity: it is paid through the execution price of voluntary trades (see PerpLens quotes);
/// liquidations execute at the mark without impact.
///
/// Rounding is against the trader everywhere: fees, margins, funding owed and losses round up; pnl
/// rounds down; entry prices round up for longs and down for shorts; LP shares and withdrawals round
/// in favour of the pool.
///
/// Funding: rate per second = fundingFactor * (longOI - shortOI) / (longOI + shortOI) (OI in size),
/// capped at +-maxFundingRate, positive = longs pay. Each accrual adds rate * mark * elapsed to the
/// long index and subtracts it from the short index (funding per unit of size, USD with 18 decimals).
/// Funding is settled into a position's margin whenever the position changes: what payers owe goes to
/// the pool, what receivers are owed is paid by the pool. Until then it stays in the collateral, so
/// token conservation is exact at all times:
///   collateralToken.balanceOf(exchange) == poolAmount + sum(isolated collateral) + sum(cross balances)
/// and the net unsettled funding of a side is (OI * index - fundingBase) / 1e30 (MarketState).
///
/// Pool: the LP pool is the counterparty of every trade. It receives fees, losses, liquidation
/// remainders and funding payments, and pays profits and funding receipts. A payment from the pool is
/// capped at what it holds (the trader takes the haircut), so the pool never pays more than it has.
/// Bad debt (negative equity) is absorbed by the pool. reservedAmount() = sum over markets of
/// reserveFactor * (sum of size * entryPrice); an open or increase must leave reservedAmount() <=
/// poolAmount, and LP withdrawals may not take the pool below reservedAmount(). LP shares are priced on
/// poolAmount alone (traders' unrealized pnl and unsettled funding are not counted).
///
/// Operators: an account may approve an operator (e.g. a keeper's key) with approveOperator: a top-up
/// limit (6 decimals), a number of calls and an expiry. The operator may then call the *For forms of
/// addMargin, decreasePosition, closePosition, removeMargin, depositCross, decreaseCross, closeCross
/// and withdrawCross for that account: each uses one call of the grant (top-ups also use the limit,
/// and are pulled from the account's wallet through its allowance to the exchange), does exactly
/// what the account's own call does, and pays every token out to the account, never to the
/// operator. Operators cannot open or increase positions nor touch LP funds; the account may revoke
/// at any time. A grant is per (account, operator) pair and is not transferable.
contract PerpExchange {
    /// Outcome of a decrease: execution price, realized pnl, close fee, settled funding, and
    /// traderDelta = pnl - funding - fee, the signed amount due to the trader.
    struct Fill {
        uint256 price;
        int256 pnl;
        uint256 fee;
        int256 funding;
        int256 traderDelta;
    }

    struct Market {
        MarketParams params;
        MarketState state;
        uint256 priceScale; // 10 ** (18 - feed decimals)
    }

    /// @notice Upper bound of open, close and liquidation fee rates (10%).
    uint256 public constant MAX_FEE_RATE = 0.1e18;
    /// @notice Upper bound of maxFundingRate (0.01% per second).
    uint256 public constant MAX_FUNDING_RATE = 1e14;
    /// @notice Upper bound of maxImpactRate (50%).
    uint256 public constant MAX_IMPACT_RATE = 0.5e18;
    /// @notice Upper bound of the number of markets (bounds every loop over markets and positions).
    uint256 public constant MAX_MARKETS = 32;

    uint256 private constant VIRTUAL_SHARES = 1e12;

    /// @notice The collateral token (USDC, 6 decimals).
    IERC20 public immutable collateralToken;
    /// @notice Admin account.
    address public owner;
    /// @notice Liquidity held by the pool (6 decimals).
    uint256 public poolAmount;
    /// @notice Total LP shares (18 decimals).
    uint256 public totalShares;
    /// @notice LP shares of each account.
    mapping(address => uint256) public lpShares;
    /// @notice Cross-margin balance of each account (6 decimals).
    mapping(address => uint256) public crossBalance;

    Market[] private _markets;
    mapping(bytes32 => Position) private _positions;
    mapping(address => bytes32[]) private _isolatedKeys;
    mapping(address => bytes32[]) private _crossKeys;
    mapping(bytes32 => uint256) private _keySlot; // 1 + index of the key in its account's list
    mapping(address => mapping(address => OperatorGrant)) private _grants; // account => operator => grant

    /// @notice A market was added.
    event MarketAdded(uint256 indexed marketId, address indexed feed, MarketParams params);
    /// @notice A market's parameters changed.
    event MarketUpdated(uint256 indexed marketId, MarketParams params);
    /// @notice Ownership moved.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// @notice Funding accrued up to block.timestamp.
    event FundingUpdated(uint256 indexed marketId, int256 rate, int256 longFundingIndex, int256 shortFundingIndex);
    /// @notice An LP deposited `amount` for `shares`.
    event Deposit(address indexed lp, uint256 amount, uint256 shares);
    /// @notice An LP burnt `shares` for `amount`.
    event Withdraw(address indexed lp, uint256 shares, uint256 amount);
    /// @notice A position was opened or increased (isolated: `collateralDelta` deposited with it).
    event PositionIncreased(
        bytes32 indexed key,
        address indexed account,
        uint256 indexed marketId,
        bool isLong,
        bool isCross,
        uint256 sizeDelta,
        uint256 collateralDelta,
        uint256 executionPrice,
        uint256 fee,
        int256 fundingSettled
    );
    /// @notice A position was decreased or closed; `payout` went to the account (isolated) or to its
    ///         cross balance as part of the settlement (cross: payout is 0).
    event PositionDecreased(
        bytes32 indexed key,
        address indexed account,
        uint256 indexed marketId,
        uint256 sizeDelta,
        uint256 executionPrice,
        int256 realizedPnl,
        uint256 fee,
        int256 fundingSettled,
        uint256 payout
    );
    /// @notice Collateral added to an isolated position.
    event MarginAdded(bytes32 indexed key, address indexed account, uint256 amount, int256 fundingSettled);
    /// @notice Collateral removed from an isolated position.
    event MarginRemoved(bytes32 indexed key, address indexed account, uint256 amount, int256 fundingSettled);
    /// @notice A position was liquidated (for cross accounts: one event per position, then CrossLiquidated).
    event PositionLiquidated(
        bytes32 indexed key,
        address indexed account,
        address indexed liquidator,
        uint256 size,
        uint256 markPrice,
        int256 realizedPnl,
        int256 fundingSettled,
        uint256 closeFee
    );
    /// @notice Outcome of a liquidation: `liquidatorFee` to the liquidator, `toPool` to the pool.
    event LiquidationSettled(
        address indexed account, address indexed liquidator, bool isCross, uint256 liquidatorFee, uint256 toPool
    );
    /// @notice Collateral deposited into a cross account.
    event CrossDeposit(address indexed account, uint256 amount);
    /// @notice Collateral withdrawn from a cross account.
    event CrossWithdraw(address indexed account, uint256 amount);
    /// @notice `account` approved `operator`, replacing any earlier grant to it.
    /// @param account The account granting.
    /// @param operator The operator.
    /// @param topUpLimit Collateral the operator may pull from the account's wallet (6 decimals).
    /// @param actions Number of *For calls allowed.
    /// @param expiresAt Last unix time (seconds) at which the grant may be used.
    event OperatorApproved(
        address indexed account, address indexed operator, uint256 topUpLimit, uint256 actions, uint256 expiresAt
    );
    /// @notice `account` revoked its grant to `operator` (emitted even when there was none).
    /// @param account The account revoking.
    /// @param operator The operator.
    event OperatorRevoked(address indexed account, address indexed operator);
    /// @notice `operator` acted for `account`; emitted after the action's own events.
    /// @param account The account acted for.
    /// @param operator The operator (the caller).
    /// @param selector Selector of the *For function called.
    /// @param actionsLeft Calls left in the grant after this one.
    event OperatorActed(
        address indexed account, address indexed operator, bytes4 indexed selector, uint256 actionsLeft
    );

    /// @notice The caller is not the owner.
    error NotOwner();
    /// @notice The zero address is not allowed here.
    error ZeroAddress();
    /// @notice An amount or size of zero is not allowed here.
    error ZeroAmount();
    /// @notice Market parameters are out of bounds.
    error InvalidMarketParams();
    /// @notice MAX_MARKETS markets exist already.
    error TooManyMarkets();
    /// @notice No market has this id.
    error UnknownMarket(uint256 marketId);
    /// @notice The feed's answer is zero or negative, or too large.
    error InvalidPrice(uint256 marketId, int256 answer);
    /// @notice The feed's answer is older than the market's maxStaleness.
    error StalePrice(uint256 marketId, uint256 updatedAt);
    /// @notice The position does not exist.
    error NoPosition(bytes32 key);
    /// @notice sizeDelta exceeds the position's size.
    error SizeExceedsPosition(uint256 size, uint256 sizeDelta);
    /// @notice The amount exceeds the position's collateral or the account's cross balance.
    error InsufficientCollateral(uint256 available, uint256 amount);
    /// @notice Equity would be below the required margin: the initial margin, or for cross decreases
    ///         the maintenance margin (`initialMargin` then holds the maintenance margin).
    error InsufficientMargin(int256 equity, uint256 initialMargin);
    /// @notice Open interest would exceed the market's cap.
    error OpenInterestCap(uint256 openInterest, uint256 cap);
    /// @notice The pool cannot cover the reserve (opens) or the withdrawal.
    error InsufficientLiquidity(uint256 poolAmount, uint256 needed);
    /// @notice The amount exceeds the LP's shares, or the deposit is too small to mint a share.
    error InvalidShares(uint256 shares);
    /// @notice Equity is at or above the maintenance margin.
    error NotLiquidatable(int256 equity, uint256 maintenanceMargin);
    /// @notice A realized loss on a cross position exceeds the account's balance.
    error CrossBalanceShortfall(uint256 balance, uint256 loss);
    /// @notice A token transfer failed.
    error TransferFailed();
    /// @notice The caller has no usable grant from the account (none, revoked, or actionsLeft == 0).
    error NotOperator(address account, address operator);
    /// @notice The grant expired (block.timestamp > expiresAt).
    error OperatorExpired(address account, address operator, uint256 expiresAt);
    /// @notice A top-up exceeds what is left of the grant's top-up limit.
    error TopUpLimitExceeded(uint256 topUpLeft, uint256 amount);
    /// @notice Grant parameters are out of bounds (see approveOperator).
    error InvalidGrant();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// Uses one call of msg.sender's grant from `account` and `topUp` of its top-up limit, runs the
    /// function, then emits OperatorActed.
    modifier asOperator(address account, uint256 topUp) {
        uint256 actionsLeft = _useGrant(account, topUp);
        _;
        _emitActed(account, actionsLeft);
    }

    /// @param collateralToken_ The collateral token (USDC, 6 decimals).
    constructor(IERC20 collateralToken_) {
        if (address(collateralToken_) == address(0)) revert ZeroAddress();
        collateralToken = collateralToken_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    // ------------------------------------------------------------------ admin

    /// @notice Transfers ownership (owner only).
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Adds a market (owner only). Market ids are 0, 1, 2, ... in order of addition.
    /// @param params Its configuration (bounds: 0 < maintenance < initial <= 1e18, fee rates <=
    ///        MAX_FEE_RATE, maxFundingRate <= MAX_FUNDING_RATE, maxImpactRate <= MAX_IMPACT_RATE,
    ///        maxStaleness > 0, feed decimals <= 18).
    /// @return marketId The new market's id.
    function addMarket(MarketParams calldata params) external onlyOwner returns (uint256 marketId) {
        if (_markets.length == MAX_MARKETS) revert TooManyMarkets();
        marketId = _markets.length;
        Market storage m = _markets.push();
        m.params = params;
        m.priceScale = _validate(params);
        m.state.lastFundingTime = block.timestamp;
        emit MarketAdded(marketId, params.feed, params);
    }

    /// @notice Replaces a market's parameters (owner only, same bounds as addMarket). Funding accrues
    ///         up to now under the old parameters first, so the feed must be fresh.
    function setMarketParams(uint256 marketId, MarketParams calldata params) external onlyOwner {
        (Market storage m,) = _updateFunding(marketId);
        m.params = params;
        m.priceScale = _validate(params);
        emit MarketUpdated(marketId, params);
    }

    // ------------------------------------------------------------------ pool

    /// @notice Deposits `amount` collateral into the pool for LP shares
    ///         (shares = amount * (totalShares + 1e12) / (poolAmount + 1), rounded down).
    /// @return shares Shares minted to the caller.
    function deposit(uint256 amount) external returns (uint256 shares) {
        if (amount == 0) revert ZeroAmount();
        shares = amount * (totalShares + VIRTUAL_SHARES) / (poolAmount + 1);
        if (shares == 0) revert InvalidShares(0);
        totalShares += shares;
        lpShares[msg.sender] += shares;
        poolAmount += amount;
        _pull(msg.sender, amount);
        emit Deposit(msg.sender, amount, shares);
    }

    /// @notice Burns `shares` for collateral (amount = shares * (poolAmount + 1) / (totalShares + 1e12),
    ///         rounded down); refused if the pool would fall below reservedAmount().
    /// @return amount Collateral sent to the caller.
    function withdraw(uint256 shares) external returns (uint256 amount) {
        if (shares == 0 || shares > lpShares[msg.sender]) revert InvalidShares(shares);
        amount = shares * (poolAmount + 1) / (totalShares + VIRTUAL_SHARES);
        uint256 needed = amount + reservedAmount();
        if (needed > poolAmount) revert InsufficientLiquidity(poolAmount, needed);
        lpShares[msg.sender] -= shares;
        totalShares -= shares;
        poolAmount -= amount;
        _push(msg.sender, amount);
        emit Withdraw(msg.sender, shares, amount);
    }

    // ------------------------------------------------------------------ funding

    /// @notice Accrues the market's funding up to block.timestamp (reads the price; reverts if stale).
    function updateFunding(uint256 marketId) external {
        _updateFunding(marketId);
    }

    // ------------------------------------------------------------------ isolated positions

    /// @notice Opens or increases the caller's isolated position, depositing `collateralAmount`.
    ///         Executes at the impact-adjusted fill price (new entry = size-weighted average), charges
    ///         the open fee, settles funding, and requires equity >= initial margin, the OI cap and the
    ///         pool reserve.
    /// @param collateralAmount Collateral pulled from the caller (6 decimals; may be 0 on increases).
    /// @param sizeDelta Size to add (18 decimals, > 0).
    function openPosition(uint256 marketId, bool isLong, uint256 collateralAmount, uint256 sizeDelta) external {
        if (sizeDelta == 0) revert ZeroAmount();
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = positionKey(msg.sender, marketId, isLong);
        Position storage p = _openSlot(m, key, marketId, isLong, false);
        (int256 funding, uint256 fee, uint256 fill) = _increase(m, p, price, sizeDelta);
        p.collateral = _settle(-funding - int256(fee), p.collateral + collateralAmount);
        _requireInitialMargin(_health(m, p, price));
        _requireReserve();
        _pull(msg.sender, collateralAmount);
        emit PositionIncreased(
            key, msg.sender, marketId, isLong, false, sizeDelta, collateralAmount, fill, fee, funding
        );
    }

    /// @notice Decreases the caller's isolated position by `sizeDelta` at the impact-adjusted fill
    ///         price. Pnl of the decreased part, the close fee and all accrued funding are realized: a
    ///         net gain is paid out, a net loss is taken from the collateral. A partial decrease must
    ///         leave equity >= initial margin; sizeDelta == size closes and pays out all that remains.
    function decreasePosition(uint256 marketId, bool isLong, uint256 sizeDelta) external {
        _decreaseIsolated(msg.sender, marketId, isLong, sizeDelta, false);
    }

    /// @notice Closes the caller's isolated position (decreasePosition by its whole size).
    function closePosition(uint256 marketId, bool isLong) external {
        _decreaseIsolated(msg.sender, marketId, isLong, 0, true);
    }

    /// @notice Adds `amount` collateral to the caller's isolated position (settles funding; allowed
    ///         even when the position is liquidatable).
    function addMargin(uint256 marketId, bool isLong, uint256 amount) external {
        _addMargin(msg.sender, marketId, isLong, amount);
    }

    /// @notice Removes `amount` collateral from the caller's isolated position (settles funding first);
    ///         equity must stay >= initial margin.
    function removeMargin(uint256 marketId, bool isLong, uint256 amount) external {
        _removeMargin(msg.sender, marketId, isLong, amount);
    }

    /// @notice Liquidates an isolated position whose equity is below its maintenance margin (strictly).
    ///         It closes at the mark without impact; the caller receives the liquidation fee, capped by
    ///         what remains of the equity; the rest goes to the pool, which also absorbs any bad debt.
    /// @return liquidatorFee Amount paid to the caller (6 decimals).
    function liquidate(address account, uint256 marketId, bool isLong) external returns (uint256 liquidatorFee) {
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = positionKey(account, marketId, isLong);
        Position storage p = _existing(key);
        Health memory h = _health(m, p, price);
        if (h.equity >= int256(h.maintenanceMargin)) revert NotLiquidatable(h.equity, h.maintenanceMargin);
        uint256 fee = PerpMath.onNotional(p.size, price, m.params.liquidationFeeRate);
        uint256 collateral = p.collateral;
        uint256 remaining = _settle(_liquidatePosition(m, p, key, price), collateral);
        liquidatorFee = _payLiquidation(account, false, remaining, fee);
    }

    // ------------------------------------------------------------------ cross margin

    /// @notice Deposits `amount` collateral into the caller's cross account.
    function depositCross(uint256 amount) external {
        _depositCross(msg.sender, amount);
    }

    /// @notice Withdraws `amount` from the caller's cross balance; the account's equity must stay
    ///         >= the sum of its positions' initial margins.
    function withdrawCross(uint256 amount) external {
        _withdrawCross(msg.sender, amount);
    }

    /// @notice Opens or increases the caller's cross position (fee and funding from the cross
    ///         balance); the account's equity must stay >= the sum of initial margins.
    /// @param sizeDelta Size to add (18 decimals, > 0).
    function openCross(uint256 marketId, bool isLong, uint256 sizeDelta) external {
        if (sizeDelta == 0) revert ZeroAmount();
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = crossPositionKey(msg.sender, marketId, isLong);
        Position storage p = _openSlot(m, key, marketId, isLong, true);
        (int256 funding, uint256 fee, uint256 fill) = _increase(m, p, price, sizeDelta);
        crossBalance[msg.sender] = _settle(-funding - int256(fee), crossBalance[msg.sender]);
        _requireCrossInitialMargin(msg.sender);
        _requireReserve();
        emit PositionIncreased(key, msg.sender, marketId, isLong, true, sizeDelta, 0, fill, fee, funding);
    }

    /// @notice Decreases the caller's cross position at the impact-adjusted fill price; pnl, close fee
    ///         and funding settle into the cross balance (a net loss larger than the balance is refused:
    ///         close profitable positions first). The account must not be liquidatable afterwards
    ///         (equity >= the sum of maintenance margins), so a reduction may restore a liquidatable
    ///         account but never make one liquidatable.
    function decreaseCross(uint256 marketId, bool isLong, uint256 sizeDelta) external {
        _decreaseCross(msg.sender, marketId, isLong, sizeDelta, false);
    }

    /// @notice Closes the caller's cross position (decreaseCross by its whole size).
    function closeCross(uint256 marketId, bool isLong) external {
        _decreaseCross(msg.sender, marketId, isLong, 0, true);
    }

    /// @notice Liquidates a cross account whose equity is below the sum of its positions' maintenance
    ///         margins (strictly): closes all its cross positions at the mark, pays the caller the sum
    ///         of their liquidation fees capped by what remains, gives the rest (balance included) to the
    ///         pool, and zeroes the balance. Isolated positions of the account are not touched.
    /// @return liquidatorFee Amount paid to the caller (6 decimals).
    function liquidateCross(address account) external returns (uint256 liquidatorFee) {
        bytes32[] storage keys = _crossKeys[account];
        uint256 count = keys.length;
        if (count == 0) revert NoPosition(bytes32(0));
        for (uint256 i = 0; i < count; ++i) {
            _updateFunding(_positions[keys[i]].marketId);
        }
        (int256 equity, uint256 maintenance,) = crossHealth(account);
        if (equity >= int256(maintenance)) revert NotLiquidatable(equity, maintenance);
        int256 delta;
        uint256 fee;
        while (keys.length != 0) {
            bytes32 key = keys[keys.length - 1];
            Position storage p = _positions[key];
            Market storage m = _markets[p.marketId];
            uint256 price = _price(p.marketId, m);
            fee += PerpMath.onNotional(p.size, price, m.params.liquidationFeeRate);
            delta += _liquidatePosition(m, p, key, price);
        }
        uint256 remaining = _settle(delta, crossBalance[account]);
        crossBalance[account] = 0;
        liquidatorFee = _payLiquidation(account, true, remaining, fee);
    }

    // ------------------------------------------------------------------ operators

    /// @notice Lets `operator` top up, reduce, close and withdraw for the caller through the *For
    ///         functions, replacing any earlier grant to it (the counts start afresh). Top-ups are
    ///         pulled from the caller's wallet, so the caller's allowance to the exchange also bounds
    ///         them; payouts always go to the caller.
    /// @param operator The operator (not zero, not the caller).
    /// @param topUpLimit Collateral the operator may pull from the caller's wallet in total (6
    ///        decimals, <= 2^128 - 1; 0: no top-ups).
    /// @param actions Number of *For calls allowed (> 0, <= 2^64 - 1).
    /// @param expiresAt Last unix time (seconds) at which the grant may be used (> block.timestamp,
    ///        <= 2^64 - 1).
    function approveOperator(address operator, uint256 topUpLimit, uint256 actions, uint256 expiresAt) external {
        if (
            operator == address(0) || operator == msg.sender || actions == 0 || expiresAt <= block.timestamp
                || topUpLimit > type(uint128).max || actions > type(uint64).max || expiresAt > type(uint64).max
        ) revert InvalidGrant();
        _grants[msg.sender][operator] =
            OperatorGrant({expiresAt: uint64(expiresAt), actionsLeft: uint64(actions), topUpLeft: uint128(topUpLimit)});
        emit OperatorApproved(msg.sender, operator, topUpLimit, actions, expiresAt);
    }

    /// @notice Deletes the caller's grant to `operator`, effective at once. Safe to call when there is
    ///         none: it then only emits OperatorRevoked.
    /// @param operator The operator.
    function revokeOperator(address operator) external {
        delete _grants[msg.sender][operator];
        emit OperatorRevoked(msg.sender, operator);
    }

    /// @notice What is left of `account`'s grant to `operator` (all zero: none or revoked). The grant
    ///         is usable while actionsLeft > 0 and block.timestamp <= expiresAt.
    /// @param account The account that granted.
    /// @param operator The operator.
    /// @return The grant (topUpLeft in collateral units, 6 decimals).
    function operatorGrant(address account, address operator) external view returns (OperatorGrant memory) {
        return _grants[account][operator];
    }

    /// @notice addMargin for `account` by its operator: pulls `amount` from the account's wallet
    ///         into its isolated position; uses one call and `amount` of the top-up limit.
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    /// @param amount Collateral to add (6 decimals, > 0).
    function addMarginFor(address account, uint256 marketId, bool isLong, uint256 amount)
        external
        asOperator(account, amount)
    {
        _addMargin(account, marketId, isLong, amount);
    }

    /// @notice decreasePosition for `account` by its operator; the payout goes to the account.
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    /// @param sizeDelta Size to remove (18 decimals, > 0, <= size).
    function decreasePositionFor(address account, uint256 marketId, bool isLong, uint256 sizeDelta)
        external
        asOperator(account, 0)
    {
        _decreaseIsolated(account, marketId, isLong, sizeDelta, false);
    }

    /// @notice closePosition for `account` by its operator; the payout goes to the account.
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    function closePositionFor(address account, uint256 marketId, bool isLong) external asOperator(account, 0) {
        _decreaseIsolated(account, marketId, isLong, 0, true);
    }

    /// @notice removeMargin for `account` by its operator; the collateral goes to the account.
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    /// @param amount Collateral to remove (6 decimals, > 0).
    function removeMarginFor(address account, uint256 marketId, bool isLong, uint256 amount)
        external
        asOperator(account, 0)
    {
        _removeMargin(account, marketId, isLong, amount);
    }

    /// @notice depositCross for `account` by its operator: pulls `amount` from the account's wallet
    ///         into its cross balance; uses one call and `amount` of the top-up limit.
    /// @param account The trader.
    /// @param amount Collateral to deposit (6 decimals, > 0).
    function depositCrossFor(address account, uint256 amount) external asOperator(account, amount) {
        _depositCross(account, amount);
    }

    /// @notice decreaseCross for `account` by its operator (settles into the account's cross balance).
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    /// @param sizeDelta Size to remove (18 decimals, > 0, <= size).
    function decreaseCrossFor(address account, uint256 marketId, bool isLong, uint256 sizeDelta)
        external
        asOperator(account, 0)
    {
        _decreaseCross(account, marketId, isLong, sizeDelta, false);
    }

    /// @notice closeCross for `account` by its operator (settles into the account's cross balance).
    /// @param account The trader.
    /// @param marketId Market of the position.
    /// @param isLong Side of the position.
    function closeCrossFor(address account, uint256 marketId, bool isLong) external asOperator(account, 0) {
        _decreaseCross(account, marketId, isLong, 0, true);
    }

    /// @notice withdrawCross for `account` by its operator; the collateral goes to the account.
    /// @param account The trader.
    /// @param amount Collateral to withdraw (6 decimals, > 0).
    function withdrawCrossFor(address account, uint256 amount) external asOperator(account, 0) {
        _withdrawCross(account, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Key of an isolated position: keccak256(abi.encode(account, marketId, isLong)).
    function positionKey(address account, uint256 marketId, bool isLong) public pure returns (bytes32) {
        return keccak256(abi.encode(account, marketId, isLong));
    }

    /// @notice Key of a cross position: keccak256(abi.encode(account, marketId, isLong, true)).
    function crossPositionKey(address account, uint256 marketId, bool isLong) public pure returns (bytes32) {
        return keccak256(abi.encode(account, marketId, isLong, true));
    }

    /// @notice Number of markets (ids are 0 .. marketCount() - 1).
    function marketCount() external view returns (uint256) {
        return _markets.length;
    }

    /// @notice Configuration of a market.
    function marketParams(uint256 marketId) external view returns (MarketParams memory) {
        return _market(marketId).params;
    }

    /// @notice Stored state of a market (funding indexes as of state.lastFundingTime).
    function marketState(uint256 marketId) external view returns (MarketState memory) {
        return _market(marketId).state;
    }

    /// @notice Stored fields of a position (size 0: none). Accrued values: PerpLens.getPosition.
    function positions(bytes32 key) external view returns (Position memory) {
        return _positions[key];
    }

    /// @notice Keys of the account's open isolated positions.
    function isolatedPositionKeys(address account) external view returns (bytes32[] memory) {
        return _isolatedKeys[account];
    }

    /// @notice Keys of the account's open cross positions.
    function crossPositionKeys(address account) external view returns (bytes32[] memory) {
        return _crossKeys[account];
    }

    /// @notice Mark price of a market (18 decimals) from its feed; reverts StalePrice when the answer
    ///         is older than maxStaleness, InvalidPrice when it is <= 0 (or above 2^128 after scaling).
    function getPrice(uint256 marketId) public view returns (uint256) {
        return _price(marketId, _market(marketId));
    }

    /// @notice Liquidity the pool keeps for open positions: sum over markets of reserveFactor * open
    ///         notional at entry, rounded up (6 decimals).
    function reservedAmount() public view returns (uint256 reserved) {
        uint256 count = _markets.length;
        for (uint256 i = 0; i < count; ++i) {
            Market storage m = _markets[i];
            reserved += PerpMath.mulDivUp(
                PerpMath.mulDivUp(m.state.entryNotional, 1, PerpMath.USD_SCALE), m.params.reserveFactor, PerpMath.WAD
            );
        }
    }

    /// @notice Whether the position with this key can be liquidated now (isolated: its own equity
    ///         < its maintenance margin; cross: its account's). False when there is no such position.
    function isLiquidatable(bytes32 key) external view returns (bool) {
        Position storage p = _positions[key];
        if (p.size == 0) return false;
        if (p.isCross) return isCrossLiquidatable(p.account);
        Market storage m = _markets[p.marketId];
        uint256 price = _price(p.marketId, m);
        (int256 longIndex, int256 shortIndex) = PerpMath.accruedIndexes(m.params, m.state, price, block.timestamp);
        Health memory h = PerpMath.health(p, m.params, p.isLong ? longIndex : shortIndex, price);
        return h.equity < int256(h.maintenanceMargin);
    }

    /// @notice Whether the cross account can be liquidated now (has positions and equity < maintenance).
    function isCrossLiquidatable(address account) public view returns (bool) {
        (int256 equity, uint256 maintenance,) = crossHealth(account);
        return _crossKeys[account].length != 0 && equity < int256(maintenance);
    }

    /// @notice Margin figures of a cross account at the current block (6 decimals).
    /// @return equity balance + sum(pnl - pending funding - close fee) over its cross positions.
    /// @return maintenanceMargin Sum of the positions' maintenance margins.
    /// @return initialMargin Sum of the positions' initial margins.
    function crossHealth(address account)
        public
        view
        returns (int256 equity, uint256 maintenanceMargin, uint256 initialMargin)
    {
        equity = int256(crossBalance[account]);
        bytes32[] storage keys = _crossKeys[account];
        uint256 count = keys.length;
        for (uint256 i = 0; i < count; ++i) {
            Position storage p = _positions[keys[i]];
            Market storage m = _markets[p.marketId];
            uint256 price = _price(p.marketId, m);
            (int256 longIndex, int256 shortIndex) = PerpMath.accruedIndexes(m.params, m.state, price, block.timestamp);
            Health memory h = PerpMath.health(p, m.params, p.isLong ? longIndex : shortIndex, price);
            equity += h.equity;
            maintenanceMargin += h.maintenanceMargin;
            initialMargin += h.initialMargin;
        }
    }

    // ------------------------------------------------------------------ internal: positions

    function _decreaseIsolated(address account, uint256 marketId, bool isLong, uint256 sizeDelta, bool all) private {
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = positionKey(account, marketId, isLong);
        Position storage p = _existing(key);
        if (all) sizeDelta = p.size;
        Fill memory f = _decrease(m, p, price, sizeDelta);
        uint256 margin = _settle(f.traderDelta, p.collateral);
        uint256 payout;
        if (p.size == 0) {
            payout = margin;
            _deletePosition(key, p);
        } else {
            if (margin > p.collateral) payout = margin - p.collateral;
            else p.collateral = margin;
            _requireInitialMargin(_health(m, p, price));
        }
        _push(account, payout);
        _emitDecrease(key, account, marketId, sizeDelta, f, payout);
    }

    function _decreaseCross(address account, uint256 marketId, bool isLong, uint256 sizeDelta, bool all) private {
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = crossPositionKey(account, marketId, isLong);
        Position storage p = _existing(key);
        if (all) sizeDelta = p.size;
        Fill memory f = _decrease(m, p, price, sizeDelta);
        uint256 balance = crossBalance[account];
        if (f.traderDelta < 0 && uint256(-f.traderDelta) > balance) {
            revert CrossBalanceShortfall(balance, uint256(-f.traderDelta));
        }
        crossBalance[account] = _settle(f.traderDelta, balance);
        if (p.size == 0) _deletePosition(key, p);
        (int256 equity, uint256 maintenanceMargin,) = crossHealth(account);
        if (equity < int256(maintenanceMargin)) revert InsufficientMargin(equity, maintenanceMargin);
        _emitDecrease(key, account, marketId, sizeDelta, f, 0);
    }

    /// Adds `amount` collateral, pulled from `account`'s wallet, to its isolated position.
    function _addMargin(address account, uint256 marketId, bool isLong, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        (Market storage m,) = _updateFunding(marketId);
        bytes32 key = positionKey(account, marketId, isLong);
        Position storage p = _existing(key);
        int256 funding = _settleFunding(m, p);
        p.collateral = _settle(-funding, p.collateral + amount);
        p.lastUpdated = block.timestamp;
        _pull(account, amount);
        emit MarginAdded(key, account, amount, funding);
    }

    /// Removes `amount` collateral from `account`'s isolated position and sends it to `account`.
    function _removeMargin(address account, uint256 marketId, bool isLong, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        (Market storage m, uint256 price) = _updateFunding(marketId);
        bytes32 key = positionKey(account, marketId, isLong);
        Position storage p = _existing(key);
        int256 funding = _settleFunding(m, p);
        uint256 collateral = _settle(-funding, p.collateral);
        if (amount > collateral) revert InsufficientCollateral(collateral, amount);
        p.collateral = collateral - amount;
        p.lastUpdated = block.timestamp;
        _requireInitialMargin(_health(m, p, price));
        _push(account, amount);
        emit MarginRemoved(key, account, amount, funding);
    }

    /// Returns the position slot for an increase, initialising it when new.
    function _openSlot(Market storage m, bytes32 key, uint256 marketId, bool isLong, bool isCross)
        private
        returns (Position storage p)
    {
        p = _positions[key];
        if (p.size != 0) return p;
        p.account = msg.sender;
        p.marketId = marketId;
        p.isLong = isLong;
        p.isCross = isCross;
        p.fundingIndex = isLong ? m.state.longFundingIndex : m.state.shortFundingIndex;
        bytes32[] storage keys = isCross ? _crossKeys[msg.sender] : _isolatedKeys[msg.sender];
        keys.push(key);
        _keySlot[key] = keys.length;
    }

    function _existing(bytes32 key) private view returns (Position storage p) {
        p = _positions[key];
        if (p.size == 0) revert NoPosition(key);
    }

    /// Settles funding and adds sizeDelta at the fill price; returns the funding owed and the open fee
    /// for the caller to apply to the margin.
    function _increase(Market storage m, Position storage p, uint256 price, uint256 sizeDelta)
        private
        returns (int256 funding, uint256 fee, uint256 fill)
    {
        funding = _settleFunding(m, p);
        bool isLong = p.isLong;
        MarketState storage s = m.state;
        fill = PerpMath.fillPrice(m.params, s.longOI, s.shortOI, price, isLong ? int256(sizeDelta) : -int256(sizeDelta));
        fee = PerpMath.onNotional(sizeDelta, fill, m.params.openFeeRate);
        uint256 size = p.size;
        uint256 entry = PerpMath.averageEntry(isLong, size, p.entryPrice, sizeDelta, fill);
        s.entryNotional = s.entryNotional - size * p.entryPrice + (size + sizeDelta) * entry;
        if (isLong) {
            s.longOI += sizeDelta;
            if (s.longOI > m.params.maxLongOI) revert OpenInterestCap(s.longOI, m.params.maxLongOI);
            s.longFundingBase += int256(sizeDelta) * p.fundingIndex;
        } else {
            s.shortOI += sizeDelta;
            if (s.shortOI > m.params.maxShortOI) revert OpenInterestCap(s.shortOI, m.params.maxShortOI);
            s.shortFundingBase += int256(sizeDelta) * p.fundingIndex;
        }
        p.size = size + sizeDelta;
        p.entryPrice = entry;
        p.lastUpdated = block.timestamp;
    }

    /// Settles funding and removes sizeDelta at the fill price.
    function _decrease(Market storage m, Position storage p, uint256 price, uint256 sizeDelta)
        private
        returns (Fill memory f)
    {
        if (sizeDelta == 0) revert ZeroAmount();
        uint256 size = p.size;
        if (sizeDelta > size) revert SizeExceedsPosition(size, sizeDelta);
        MarketState storage s = m.state;
        f.price =
            PerpMath.fillPrice(m.params, s.longOI, s.shortOI, price, p.isLong ? -int256(sizeDelta) : int256(sizeDelta));
        f.funding = _settleFunding(m, p);
        f.pnl = PerpMath.pnl(p.isLong, sizeDelta, p.entryPrice, f.price);
        f.fee = PerpMath.onNotional(sizeDelta, f.price, m.params.closeFeeRate);
        f.traderDelta = f.pnl - f.funding - int256(f.fee);
        _removeSize(s, p, sizeDelta);
    }

    /// Closes the whole position at the mark (no impact) and deletes it; returns the signed amount due
    /// to the trader (pnl - funding - close fee).
    function _liquidatePosition(Market storage m, Position storage p, bytes32 key, uint256 price)
        private
        returns (int256 traderDelta)
    {
        uint256 size = p.size;
        int256 funding = _settleFunding(m, p);
        int256 realized = PerpMath.pnl(p.isLong, size, p.entryPrice, price);
        uint256 fee = PerpMath.onNotional(size, price, m.params.closeFeeRate);
        traderDelta = realized - funding - int256(fee);
        emit PositionLiquidated(key, p.account, msg.sender, size, price, realized, funding, fee);
        _removeSize(m.state, p, size);
        _deletePosition(key, p);
    }

    /// Pays the liquidator min(fee, remaining) and the rest of `remaining` to the pool.
    function _payLiquidation(address account, bool isCross, uint256 remaining, uint256 fee)
        private
        returns (uint256 liquidatorFee)
    {
        liquidatorFee = fee < remaining ? fee : remaining;
        uint256 toPool = remaining - liquidatorFee;
        poolAmount += toPool;
        _push(msg.sender, liquidatorFee);
        emit LiquidationSettled(account, msg.sender, isCross, liquidatorFee, toPool);
    }

    /// Removes sizeDelta from a position whose funding is settled at the current index.
    function _removeSize(MarketState storage s, Position storage p, uint256 sizeDelta) private {
        s.entryNotional -= sizeDelta * p.entryPrice;
        if (p.isLong) {
            s.longOI -= sizeDelta;
            s.longFundingBase -= int256(sizeDelta) * p.fundingIndex;
        } else {
            s.shortOI -= sizeDelta;
            s.shortFundingBase -= int256(sizeDelta) * p.fundingIndex;
        }
        p.size -= sizeDelta;
        p.lastUpdated = block.timestamp;
    }

    /// Brings the position's funding index to the side's current index; returns the funding owed
    /// (signed, rounded up) for the caller to apply to the margin.
    function _settleFunding(Market storage m, Position storage p) private returns (int256 owed) {
        MarketState storage s = m.state;
        int256 index = p.isLong ? s.longFundingIndex : s.shortFundingIndex;
        int256 previous = p.fundingIndex;
        if (index == previous) return 0;
        uint256 size = p.size;
        owed = PerpMath.fundingOwed(size, index, previous);
        if (p.isLong) s.longFundingBase += int256(size) * (index - previous);
        else s.shortFundingBase += int256(size) * (index - previous);
        p.fundingIndex = index;
    }

    function _deletePosition(bytes32 key, Position storage p) private {
        bytes32[] storage keys = p.isCross ? _crossKeys[p.account] : _isolatedKeys[p.account];
        uint256 slot = _keySlot[key];
        bytes32 last = keys[keys.length - 1];
        keys[slot - 1] = last;
        _keySlot[last] = slot;
        keys.pop();
        delete _keySlot[key];
        delete _positions[key];
    }

    function _emitDecrease(
        bytes32 key,
        address account,
        uint256 marketId,
        uint256 sizeDelta,
        Fill memory f,
        uint256 payout
    ) private {
        emit PositionDecreased(key, account, marketId, sizeDelta, f.price, f.pnl, f.fee, f.funding, payout);
    }

    // ------------------------------------------------------------------ internal: margin and pool

    /// Applies a signed amount due to a trader to their margin against the pool: a gain is paid by
    /// the pool, capped at what it holds; a loss goes to the pool, capped at the margin (the pool
    /// absorbs the rest as bad debt). Returns the new margin.
    function _settle(int256 traderDelta, uint256 margin) private returns (uint256) {
        if (traderDelta >= 0) {
            uint256 gain = uint256(traderDelta);
            if (gain > poolAmount) gain = poolAmount;
            poolAmount -= gain;
            return margin + gain;
        }
        uint256 loss = uint256(-traderDelta);
        if (loss > margin) loss = margin;
        poolAmount += loss;
        return margin - loss;
    }

    /// Margin figures of a position of a market whose funding was just accrued.
    function _health(Market storage m, Position storage p, uint256 price) private view returns (Health memory) {
        int256 index = p.isLong ? m.state.longFundingIndex : m.state.shortFundingIndex;
        return PerpMath.health(p, m.params, index, price);
    }

    function _requireInitialMargin(Health memory h) private pure {
        if (h.equity < int256(h.initialMargin)) revert InsufficientMargin(h.equity, h.initialMargin);
    }

    /// Deposits `amount`, pulled from `account`'s wallet, into its cross balance.
    function _depositCross(address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        crossBalance[account] += amount;
        _pull(account, amount);
        emit CrossDeposit(account, amount);
    }

    /// Withdraws `amount` from `account`'s cross balance to `account`.
    function _withdrawCross(address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = crossBalance[account];
        if (amount > balance) revert InsufficientCollateral(balance, amount);
        crossBalance[account] = balance - amount;
        _requireCrossInitialMargin(account);
        _push(account, amount);
        emit CrossWithdraw(account, amount);
    }

    function _requireCrossInitialMargin(address account) private view {
        (int256 equity,, uint256 initialMargin) = crossHealth(account);
        if (equity < int256(initialMargin)) revert InsufficientMargin(equity, initialMargin);
    }

    function _requireReserve() private view {
        uint256 reserved = reservedAmount();
        if (reserved > poolAmount) revert InsufficientLiquidity(poolAmount, reserved);
    }

    // ------------------------------------------------------------------ internal: operators

    /// Checks msg.sender's grant from `account` and uses one call and `topUp` of its top-up limit
    /// (6 decimals); returns the calls left.
    function _useGrant(address account, uint256 topUp) private returns (uint256 actionsLeft) {
        OperatorGrant memory grant = _grants[account][msg.sender]; // one slot: a single read and a single write
        if (grant.actionsLeft == 0) revert NotOperator(account, msg.sender);
        if (block.timestamp > grant.expiresAt) revert OperatorExpired(account, msg.sender, grant.expiresAt);
        if (topUp > grant.topUpLeft) revert TopUpLimitExceeded(grant.topUpLeft, topUp);
        actionsLeft = grant.actionsLeft - 1;
        grant.actionsLeft = uint64(actionsLeft);
        grant.topUpLeft -= uint128(topUp); // topUp <= topUpLeft < 2^128
        _grants[account][msg.sender] = grant;
    }

    /// Emits OperatorActed for the running *For call (shared by the modifier's expansions).
    function _emitActed(address account, uint256 actionsLeft) private {
        emit OperatorActed(account, msg.sender, msg.sig, actionsLeft);
    }

    // ------------------------------------------------------------------ internal: markets and prices

    function _market(uint256 marketId) private view returns (Market storage) {
        if (marketId >= _markets.length) revert UnknownMarket(marketId);
        return _markets[marketId];
    }

    /// Accrues funding up to now at the current price; returns the market and that price.
    function _updateFunding(uint256 marketId) private returns (Market storage m, uint256 price) {
        m = _market(marketId);
        price = _price(marketId, m);
        MarketState storage s = m.state;
        uint256 elapsed = block.timestamp - s.lastFundingTime;
        if (elapsed == 0) return (m, price);
        int256 rate = PerpMath.fundingRate(m.params, s.longOI, s.shortOI);
        int256 delta = PerpMath.fundingIndexDelta(rate, price, elapsed);
        s.longFundingIndex += delta;
        s.shortFundingIndex -= delta;
        s.lastFundingTime = block.timestamp;
        emit FundingUpdated(marketId, rate, s.longFundingIndex, s.shortFundingIndex);
    }

    function _price(uint256 marketId, Market storage m) private view returns (uint256 price) {
        (, int256 answer,, uint256 updatedAt,) = AggregatorV3Interface(m.params.feed).latestRoundData();
        if (answer <= 0) revert InvalidPrice(marketId, answer);
        if (updatedAt + m.params.maxStaleness < block.timestamp) revert StalePrice(marketId, updatedAt);
        price = uint256(answer) * m.priceScale;
        if (price > type(uint128).max) revert InvalidPrice(marketId, answer);
    }

    function _validate(MarketParams calldata params) private view returns (uint256 priceScale) {
        if (
            params.feed == address(0) || params.maxStaleness == 0 || params.maintenanceMarginRate == 0
                || params.maintenanceMarginRate >= params.initialMarginRate || params.initialMarginRate > PerpMath.WAD
                || params.openFeeRate > MAX_FEE_RATE || params.closeFeeRate > MAX_FEE_RATE
                || params.liquidationFeeRate > MAX_FEE_RATE || params.maxFundingRate > MAX_FUNDING_RATE
                || params.maxImpactRate > MAX_IMPACT_RATE
        ) revert InvalidMarketParams();
        uint8 decimals = AggregatorV3Interface(params.feed).decimals();
        if (decimals > 18) revert InvalidMarketParams();
        return 10 ** (18 - decimals);
    }

    // ------------------------------------------------------------------ internal: tokens

    function _pull(address from, uint256 amount) private {
        if (amount != 0) _call(abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
    }

    function _push(address to, uint256 amount) private {
        if (amount != 0) _call(abi.encodeCall(IERC20.transfer, (to, amount)));
    }

    function _call(bytes memory data) private {
        (bool ok, bytes memory ret) = address(collateralToken).call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
