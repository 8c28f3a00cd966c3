// Prints, as one JSON object on stdout, what tests/conformance compares the Gains adapter with
// in the Gains SDK (@gainsnetwork/sdk): its version; the GNSMultiCollatDiamond ABI of its
// typechain factory (the ABI getContractsForChain connects the diamond with); its
// contracts/addresses.json as shipped (keyed by decimal chain id, plus "421614-release", the
// Arbitrum Sepolia deployment getContractAddressesForChain(421614, _, false) picks); its ChainId
// enum (name -> id); and per chain of that enum the diamond address the SDK itself resolves
// with getContractAddressesForChain(chainId) (its default, stable deployment), or why it can't.
//
// usage: node gains_sdk_dump.cjs <node_modules folder holding @gainsnetwork/sdk>
"use strict";
const path = require("node:path");
const { createRequire } = require("node:module");

const [modules] = process.argv.slice(2);
if (!modules) {
  process.stderr.write("usage: node gains_sdk_dump.cjs <node_modules>\n");
  process.exit(2);
}
const root = path.resolve(modules);
const sdkRequire = createRequire(path.join(root, "noop.js"));
const packageJson = sdkRequire("@gainsnetwork/sdk/package.json");
const sdk = sdkRequire("@gainsnetwork/sdk");
const { GNSMultiCollatDiamond__factory } = sdkRequire(
  "@gainsnetwork/sdk/lib/contracts/types/generated/factories",
);
const addresses = sdkRequire("@gainsnetwork/sdk/lib/contracts/addresses.json");

const chainIds = {};
const diamonds = {};
const unresolved = {};
for (const [name, value] of Object.entries(sdk.ChainId)) {
  if (typeof value !== "number") continue; // the enum's reverse entries (id -> name)
  chainIds[name] = value;
  try {
    diamonds[value] = sdk.getContractAddressesForChain(value).gnsMultiCollatDiamond;
  } catch (error) {
    unresolved[value] = String(error && error.message ? error.message : error);
  }
}
process.stdout.write(
  JSON.stringify({
    version: packageJson.version,
    diamondAbi: GNSMultiCollatDiamond__factory.abi,
    addresses,
    chainIds,
    diamonds,
    unresolved,
  }),
);
