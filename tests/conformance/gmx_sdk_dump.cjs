// Prints, as one JSON object on stdout, what tests/conformance compares the GMX adapter with:
// the SDK's version, the names of all its ABIs, the ABIs named on the command line, its
// contract addresses per chain (configs/contracts), its chain ids (configs/chainIds) and chain
// names (configs/chains), and the oracle keeper (price API) URL per chain (configs/oracleKeeper).
//
// usage: node gmx_sdk_dump.cjs <node_modules folder holding @gmx-io/sdk> [ABI name ...]
"use strict";
const path = require("node:path");
const { createRequire } = require("node:module");

const [modules, ...wanted] = process.argv.slice(2);
if (!modules) {
  process.stderr.write("usage: node gmx_sdk_dump.cjs <node_modules> [ABI name ...]\n");
  process.exit(2);
}
const sdkRequire = createRequire(path.join(path.resolve(modules), "noop.js"));
const packageJson = sdkRequire(path.join(path.resolve(modules), "@gmx-io/sdk/package.json"));
const { abis } = sdkRequire("@gmx-io/sdk/abis/index");
const { CONTRACTS } = sdkRequire("@gmx-io/sdk/configs/contracts");
const chainIds = sdkRequire("@gmx-io/sdk/configs/chainIds");
const { CHAIN_NAMES_MAP, CONTRACTS_CHAIN_IDS, CONTRACTS_CHAIN_IDS_DEV } =
  sdkRequire("@gmx-io/sdk/configs/chains");
const { getOracleKeeperUrl } = sdkRequire("@gmx-io/sdk/configs/oracleKeeper");

const missing = wanted.filter((name) => !(name in abis));
if (missing.length) {
  process.stderr.write(`the SDK has no ABI named ${missing.join(", ")}\n`);
  process.exit(1);
}
const oracleKeeperUrls = {};
for (const chainId of CONTRACTS_CHAIN_IDS_DEV) {
  oracleKeeperUrls[chainId] = getOracleKeeperUrl(chainId);
}
const chainIdByName = {};
for (const [name, value] of Object.entries(chainIds)) {
  if (typeof value === "number") chainIdByName[name] = value;
}
process.stdout.write(
  JSON.stringify({
    version: packageJson.version,
    abiNames: Object.keys(abis).sort(),
    abis: Object.fromEntries(wanted.map((name) => [name, abis[name]])),
    contracts: CONTRACTS,
    chainIds: chainIdByName,
    chainNames: CHAIN_NAMES_MAP,
    contractsChainIds: CONTRACTS_CHAIN_IDS,
    contractsChainIdsDev: CONTRACTS_CHAIN_IDS_DEV,
    oracleKeeperUrls,
  }),
);
