"""Constants and types shared by the chain layer's integration tests."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from tests.integration.chain.chain_proxy import FaultyProxy

# Anvil's first dev account: a public test key, known to everyone.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

# A tiny runtime put on an address with anvil_setCode: reverts with data 0xdeadbeef.
REVERTER_CODE = "0x63deadbeef6000526004601cfd"
REVERTER = "0x000000000000000000000000000000000000bad1"

# Retries without waiting, for tests.
FAST: dict[str, Any] = {"retry_wait": 0.0, "retry_wait_max": 0.0}

ProxyFactory = Callable[[], Coroutine[Any, Any, FaultyProxy]]
