"""Fixtures for the chain layer's tests against a real Anvil: faulty proxies, Multicall3."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.chain.multicall3_code import MULTICALL3_RUNTIME
from keeper.testing.anvil import Anvil, free_port
from keeper.testing.helpers import Chain
from tests.integration.chain.chain_proxy import FaultyProxy
from tests.integration.chain.support import REVERTER, REVERTER_CODE, ProxyFactory


@pytest.fixture
async def make_proxy(anvil_snapshot: Anvil) -> AsyncIterator[ProxyFactory]:
    """Start FaultyProxies in front of the session's Anvil; all stopped after the test."""
    started: list[FaultyProxy] = []

    async def make() -> FaultyProxy:
        proxy = await FaultyProxy(anvil_snapshot.url).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def multicall3(anvil_snapshot: Anvil, chain: Chain) -> Anvil:
    """The session's Anvil with the canonical Multicall3 and a reverting contract on it."""
    chain.set_code(MULTICALL3_ADDRESS, "0x" + MULTICALL3_RUNTIME.hex())
    chain.set_code(REVERTER, REVERTER_CODE)
    return anvil_snapshot
