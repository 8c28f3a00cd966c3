// Runs the GMX SDK's position math on a batch of generated positions: reads one JSON object from
// a file, writes one to another. Integers travel as strings ending in "n" ("123n"), both ways.
//
// usage: node gmx_sdk_math.cjs <node_modules folder holding @gmx-io/sdk> <input.json> <output.json>
//
// Input: {"positions": [case, ...], "leverage": [getLeverage arguments, ...]}; a case is
//   {"id", "tokens": {address: TokenData}, "market": MarketInfo with token addresses only,
//    "position": Position (as Positions.getPositions returns it), "minCollateralUsd"}.
// Output: {"positions": [result, ...], "leverage": [bps or null, ...]}, in the input's order.
//
// Each position goes through the SDK's own pipeline, Positions.getPositionsInfo, with the four
// methods that would read the chain answering from the case instead (positions, MIN_COLLATERAL_USD,
// no UI fee, no referral); nothing is sent over the network. getLiquidationPrice is also called
// directly: with and without useMaxPriceImpact, and with minCollateralFactorForLiquidation raised
// to minCollateralFactor where that is larger (the adapter's maintenance factor).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const [modules, inputPath, outputPath] = process.argv.slice(2);
if (!outputPath) {
  process.stderr.write("usage: node gmx_sdk_math.cjs <node_modules> <input.json> <output.json>\n");
  process.exit(2);
}
const sdkRequire = createRequire(path.join(path.resolve(modules), "noop.js"));
const { GmxSdk } = sdkRequire("@gmx-io/sdk");
const positionsUtils = sdkRequire("@gmx-io/sdk/utils/positions");
const tokensUtils = sdkRequire("@gmx-io/sdk/utils/tokens");

const INT = /^-?\d+n$/;
const revive = (_key, value) =>
  typeof value === "string" && INT.test(value) ? BigInt(value.slice(0, -1)) : value;
const replace = (_key, value) => {
  if (typeof value === "bigint") return `${value}n`;
  return value === undefined ? null : value;
};
const orNull = (value) => (value === undefined ? null : value);

function offline() {
  throw new Error("the conformance run reads nothing from a chain");
}

async function positionResult(sdk, testCase) {
  const tokensData = testCase.tokens;
  const market = testCase.market;
  const marketInfo = {
    ...market,
    indexToken: tokensData[market.indexTokenAddress],
    longToken: tokensData[market.longTokenAddress],
    shortToken: tokensData[market.shortTokenAddress],
  };
  const position = testCase.position;
  const positions = sdk.positions;
  positions.getPositions = async () => ({ positionsData: { [position.key]: position } });
  positions.getPositionsConstants = async () => ({
    minCollateralUsd: testCase.minCollateralUsd,
    minPositionSizeUsd: 0n,
    maxAutoCancelOrders: 0n,
  });
  positions.getUiFeeFactorRequest = async () => 0n;
  positions.getUserReferralInfo = async () => undefined;
  const infos = await positions.getPositionsInfo({
    marketsInfoData: { [market.marketTokenAddress]: marketInfo },
    tokensData,
    showPnlInLeverage: true,
  });
  const info = infos[position.key];
  if (!info) throw new Error(`case ${testCase.id}: getPositionsInfo left the position out`);

  const collateralToken = tokensData[position.collateralTokenAddress];
  const liquidationArgs = {
    marketInfo,
    collateralToken,
    sizeInUsd: position.sizeInUsd,
    sizeInTokens: position.sizeInTokens,
    collateralUsd: info.collateralUsd,
    collateralAmount: position.collateralAmount,
    pendingImpactAmount: position.pendingImpactAmount,
    userReferralInfo: undefined,
    minCollateralUsd: testCase.minCollateralUsd,
    pendingBorrowingFeesUsd: position.pendingBorrowingFeesUsd,
    pendingFundingFeesUsd: info.pendingFundingFeesUsd,
    isLong: position.isLong,
  };
  const raised = {
    ...marketInfo,
    minCollateralFactorForLiquidation:
      marketInfo.minCollateralFactor > marketInfo.minCollateralFactorForLiquidation
        ? marketInfo.minCollateralFactor
        : marketInfo.minCollateralFactorForLiquidation,
  };
  const liquidation = (withMarket, useMaxPriceImpact) =>
    orNull(
      positionsUtils.getLiquidationPrice({
        ...liquidationArgs,
        marketInfo: withMarket,
        useMaxPriceImpact,
      }),
    );
  return {
    id: testCase.id,
    collateralIsIndex: tokensUtils.getIsEquivalentTokens(collateralToken, marketInfo.indexToken),
    markPrice: info.markPrice,
    entryPrice: orNull(info.entryPrice),
    collateralUsd: info.collateralUsd,
    pendingFundingFeesUsd: info.pendingFundingFeesUsd,
    closingFeeUsd: info.closingFeeUsd,
    uiFeeUsd: info.uiFeeUsd,
    pnl: info.pnl,
    closePriceImpactDeltaUsd: info.closePriceImpactDeltaUsd,
    netPriceImpactDeltaUsd: info.netPriceImapctDeltaUsd,
    priceImpactDiffUsd: info.priceImpactDiffUsd,
    pendingImpactUsd: info.pendingImpactUsd,
    netValue: info.netValue,
    pnlAfterFees: info.pnlAfterFees,
    leverage: orNull(info.leverage),
    leverageWithPnl: orNull(info.leverageWithPnl),
    leverageWithoutPnl: orNull(info.leverageWithoutPnl),
    liquidationPrice: orNull(info.liquidationPrice),
    liquidationPriceDirect: liquidation(marketInfo, false),
    liquidationPriceMaxImpact: liquidation(marketInfo, true),
    liquidationPriceRaisedFactor: liquidation(raised, false),
    liquidationPriceRaisedFactorMaxImpact: liquidation(raised, true),
  };
}

async function main() {
  const input = JSON.parse(fs.readFileSync(inputPath, "utf8"), revive);
  const sdk = new GmxSdk({
    chainId: 42161,
    rpcUrl: "http://127.0.0.1:9",
    oracleUrl: "http://127.0.0.1:9",
    subsquidUrl: "http://127.0.0.1:9",
  });
  sdk.executeMulticall = offline;
  sdk.callContract = offline;
  const positions = [];
  for (const testCase of input.positions ?? []) {
    positions.push(await positionResult(sdk, testCase));
  }
  const leverage = (input.leverage ?? []).map((args) => orNull(positionsUtils.getLeverage(args)));
  fs.writeFileSync(outputPath, JSON.stringify({ positions, leverage }, replace));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
