// Runs the Gains SDK's liquidation price (trade/liquidation: getLiquidationPrice, with
// getLiqPnlThresholdP and, for the closing fee it counts, fees/trading:
// getTotalTradeFeesCollateral) on a batch of trades given in Gains' on-chain integers.
//
// Each integer is converted to the SDK's floating-point units the way its own converters do:
// prices / 1e10 (backend convertTrade), leverage / 1e3, fee and spread percentages / 1e12 (a
// fraction, as convertFee and convertLiquidationParams give them; the pair spread is passed
// as the same fraction, which is what getLiquidationPrice multiplies the open price by), the
// fee group's minimum position size / 1e3 (USD), collateral USD prices / 1e8, collateral
// amounts / the collateral's precision, the partial close multiplier / 1e18; liquidation
// parameters go through the SDK's own convertLiquidationParams. Integers arrive as strings
// ending in "n" and become Numbers only here: the SDK computes in floating point, the
// comparison is the test's.
//
// Holding fees reach the SDK through its own getTradePendingHoldingFeesCollateral, the way it
// computes them, with contexts that make the accumulators give the wanted amount at once (no
// time or blocks elapse): `holdingV1` through the borrowing v1 context (pair accumulator,
// charged on trades of every version), `holdingV2` through the borrowing v2 context (v10 trades
// only; may be negative, standing for funding income). The user price impact
// (userPriceImpact.fixedSpreadP) is not passed: the pair spread given is already the trader's
// (the diamond's pairSpreadP(trader, pairIndex) adds the trader's fixed spread to the pair's).
//
// Input: {"cases": [{pairIndex, long, isCounterTrade, beforeOpened, version, collateral,
//   collateralPrecision, leverage, openPrice, currentPrice, collateralPriceUsd, pairSpreadP,
//   feeP, minPositionSizeUsd, counterTradeMultiplier, params: [maxLiqSpreadP,
//   startLiqThresholdP, endLiqThresholdP, startLeverage, endLeverage], holdingV1, holdingV2,
//   realizedPnl, realizedTradingFees, partialCloseMultiplier, additionalFee}, ...]}
// Output: one {price, threshold, closingFee, holding} per case, as decimal strings of the
// doubles (String(x): the shortest text that reads back as the same double).
//
// usage: node gains_sdk_math.cjs <node_modules> IN.json OUT.json
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const [modules, source, target] = process.argv.slice(2);
if (!modules || !source || !target) {
  process.stderr.write("usage: node gains_sdk_math.cjs <node_modules> IN.json OUT.json\n");
  process.exit(2);
}
const sdkRequire = createRequire(path.join(path.resolve(modules), "noop.js"));
const sdk = sdkRequire("@gainsnetwork/sdk");

/** A "123n" string (or a plain number) as a Number: exact up to 2^53, else rounded once. */
const num = (v) => {
  if (typeof v === "number") return v;
  if (typeof v === "string" && /^-?\d+n$/.test(v)) return Number(BigInt(v.slice(0, -1)));
  throw new Error(`not an integer: ${JSON.stringify(v)}`);
};

const ZERO_OI = { long: 0, short: 0 };

const evaluate = (c) => {
  const precision = num(c.collateralPrecision);
  const pairIndex = num(c.pairIndex);
  const version = num(c.version);
  const trade = {
    user: "0x0000000000000000000000000000000000000001",
    index: 0,
    pairIndex,
    collateralIndex: 1,
    leverage: num(c.leverage) / 1e3,
    long: c.long,
    isOpen: true,
    collateralAmount: num(c.collateral) / precision,
    openPrice: num(c.openPrice) / 1e10,
    tp: 0,
    sl: 0,
    isCounterTrade: c.isCounterTrade,
  };
  const positionSize = trade.collateralAmount * trade.leverage;
  const openPrice = trade.openPrice;
  const currentPairPrice = num(c.currentPrice) / 1e10;
  const collateralPriceUsd = num(c.collateralPriceUsd) / 1e8;
  const [maxLiqSpreadP, startLiqThresholdP, endLiqThresholdP, startLeverage, endLeverage] =
    c.params.map(num);
  const liquidationParams = sdk.convertLiquidationParams({
    maxLiqSpreadP,
    startLiqThresholdP,
    endLiqThresholdP,
    startLeverage,
    endLeverage,
  });
  const counterTradeSettings = {};
  counterTradeSettings[pairIndex] = {
    feeRateMultiplier: num(c.counterTradeMultiplier) / 1e3,
    maxLeverage: 0,
  };
  const trading = {
    fee: {
      totalPositionSizeFeeP: num(c.feeP) / 1e12,
      totalLiqCollateralFeeP: 0,
      oraclePositionSizeFeeP: 0,
      minPositionSizeUsd: num(c.minPositionSizeUsd) / 1e3,
    },
    globalTradeFeeParams: {
      referralFeeP: 0,
      govFeeP: 0,
      triggerOrderFeeP: 0,
      gnsOtcFeeP: 0,
      gTokenFeeP: 1,
    },
    counterTradeSettings,
    traderFeeMultiplier: 1,
  };
  // Borrowing v1: no groups, the pair's accumulator at the current block (no blocks elapse);
  // getBorrowingFee charges positionSize * (acc - initial acc) / 100.
  const holdingV1 = num(c.holdingV1) / precision;
  const borrowingV1 = {
    currentBlock: 1,
    collateralPriceUsd,
    groups: [],
    pairs: {
      [pairIndex]: {
        groups: [],
        accFeeLong: (holdingV1 * 100) / positionSize,
        accFeeShort: (holdingV1 * 100) / positionSize,
        accLastUpdatedBlock: 1,
        feePerBlock: 0,
        feeExponent: 1,
      },
    },
    pairOis: {
      [pairIndex]: { beforeV10Collateral: ZERO_OI, collateral: ZERO_OI, token: ZERO_OI, maxCollateral: 0 },
    },
  };
  // Borrowing v2 (v10 trades): the pair's accumulator now (no time elapses);
  // getTradeBorrowingFeesCollateral charges positionSize * (acc - initial acc) / openPrice / 100.
  const holdingV2 = num(c.holdingV2) / precision;
  const borrowingV2 = {
    params: { borrowingRatePerSecondP: 0 },
    data: { accBorrowingFeeP: (holdingV2 * 100 * openPrice) / positionSize, lastBorrowingUpdateTs: 0 },
    currentTimestamp: 0,
  };
  const context = {
    core: {
      currentBlock: 1,
      currentTimestamp: 0,
      collateralPriceUsd,
      contractsVersion: version,
      spreadP: num(c.pairSpreadP) / 1e12,
    },
    borrowingV1,
    borrowingV2,
    trading,
    tradeData: {
      tradeInfo: { contractsVersion: version, createdBlock: 1, lastPosIncreaseBlock: 1 },
      tradeFeesData: {
        realizedPnlCollateral: num(c.realizedPnl) / precision,
        realizedTradingFeesCollateral: num(c.realizedTradingFees) / precision,
        initialAccBorrowingFeeP: 0,
      },
      liquidationParams,
      initialAccFees: { accPairFee: 0, accGroupFee: 0, block: 0 },
    },
    liquidationSpecific: {
      currentPairPrice,
      additionalFeeCollateral: num(c.additionalFee) / precision,
      partialCloseMultiplier: num(c.partialCloseMultiplier) / 1e18,
      beforeOpened: c.beforeOpened,
      isCounterTrade: c.isCounterTrade,
    },
  };
  const price = sdk.getLiquidationPrice(trade, context);
  const threshold = sdk.getLiqPnlThresholdP(liquidationParams, trade.leverage);
  const closingFee = sdk.getTotalTradeFeesCollateral(1, "", pairIndex, positionSize, c.isCounterTrade, {
    fee: trading.fee,
    collateralPriceUsd,
    globalTradeFeeParams: trading.globalTradeFeeParams,
    traderFeeMultiplier: 1,
    counterTradeSettings,
  });
  const holding = sdk.getTradePendingHoldingFeesCollateral(
    trade,
    context.tradeData.tradeInfo,
    context.tradeData.tradeFeesData,
    currentPairPrice,
    {
      contractsVersion: version,
      currentTimestamp: 0,
      collateralPriceUsd,
      borrowingV1,
      borrowingV2,
      initialAccFees: context.tradeData.initialAccFees,
    },
  ).totalFeeCollateral;
  return {
    price: String(price),
    threshold: String(threshold),
    closingFee: String(closingFee),
    holding: String(holding),
  };
};

const cases = JSON.parse(fs.readFileSync(source, "utf8")).cases;
fs.writeFileSync(target, JSON.stringify(cases.map(evaluate)));
