"""Test support shipped with perp-keeper: a pytest plugin (fixtures for a real Anvil node,
local or forked) and helpers that a user's own tests can use, among them a JSON-RPC proxy that
misbehaves on purpose (`keeper.testing.faultproxy.FaultProxy`, the `fault_proxy` fixture)."""
