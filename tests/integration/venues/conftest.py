"""Fixtures for the venue adapters' tests on Anvil: a connected ReferenceVenue, faulty proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.testing.devnet import Devnet
from keeper.venues.reference import ReferenceVenue
from tests.integration.venues.proxy import ResultProxy

ProxyFactory = Callable[[], Coroutine[Any, Any, ResultProxy]]


async def connect(devnet: Devnet, rpc: Any, **options: Any) -> ReferenceVenue:
    d = devnet.deployment
    return await ReferenceVenue.connect(
        rpc, exchange=d.exchange, lens=d.lens, multicall=d.multicall, **options
    )


@pytest.fixture
async def venue(devnet: Devnet) -> AsyncIterator[ReferenceVenue]:
    """The reference exchange of the devnet behind the Venue protocol, over one endpoint."""
    rpc = HttpJsonRpc(devnet.chain.url, timeout=30)
    try:
        yield await connect(devnet, rpc)
    finally:
        await rpc.close()


@pytest.fixture
async def make_proxy(devnet: Devnet) -> AsyncIterator[ProxyFactory]:
    """Start proxies in front of the devnet's node; all stopped after the test."""
    started: list[ResultProxy] = []

    async def make() -> ResultProxy:
        proxy = ResultProxy(devnet.chain.url)
        await proxy.start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.stop()
