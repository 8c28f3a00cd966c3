"""The Python API (keeper.connect, keeper.Client, keeper.sync) against the devnet: reads with an
AsyncWeb3 you already have, a top-up with its preview, the journal shared with a keeper, the
keeper embedded in your program, and the blocking client."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncWeb3
from web3.providers.persistent import WebSocketProvider
from web3.providers.rpc import AsyncHTTPProvider

import keeper
from keeper import sync
from keeper.testing.devnet import Devnet
from keeper.testing.helpers import advance_time
from keeper.txs import TxRequest
from tests.integration.keeper.test_keeper_e2e import write_config

pytestmark = pytest.mark.integration
USDC = 10**6


def addresses(devnet: Devnet) -> dict[str, str]:
    return {"exchange": devnet.deployment.exchange, "lens": devnet.deployment.lens}


def collateral_of(devnet: Devnet, key: bytes) -> int:
    return int(devnet.exchange.functions.positions(key).call().collateral)


async def test_reads_through_your_own_async_web3(devnet: Devnet) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    for w3 in (
        AsyncWeb3(AsyncHTTPProvider(devnet.url)),
        await AsyncWeb3(WebSocketProvider(devnet.url.replace("http", "ws"))),
    ):
        async with await keeper.connect(
            w3, addresses=addresses(devnet), multicall=devnet.deployment.multicall,
            accounts=[trader.address],
        ) as client:  # fmt: skip
            [view] = await client.positions()
            assert isinstance(view, keeper.PositionView)
            assert view.symbol == "ETH"
            assert view.position.size.value == Decimal(10)
            assert view.margin_ratio == keeper.margin_ratio(view.position, view.market)
            assert view.liquidation_price is not None
            assert view.distance_to_liquidation is not None
            assert view.distance_to_liquidation > 0
            markets = await client.markets()
            assert {m.index_token.symbol for m in markets} == {"ETH", "BTC"}
        await w3.provider.disconnect()


async def test_a_top_up_with_its_preview(devnet: Devnet, tmp_path: Path) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    before = collateral_of(devnet, key)
    async with await keeper.connect(
        [devnet.url], addresses=addresses(devnet), multicall=devnet.deployment.multicall,
        accounts=[trader.address], signer=trader, journal=tmp_path / "journal.sqlite",
    ) as client:  # fmt: skip
        [view] = await client.positions()
        plan = await client.prepare_top_up(view, "500")
        assert plan.ok, plan.summary()
        shown = plan.preview
        assert shown is not None
        assert shown.ratio_after is not None
        assert shown.ratio_after > shown.ratio_before
        assert shown.liquidation_before is not None
        assert shown.liquidation_after is not None
        assert shown.liquidation_after < shown.liquidation_before  # a long's moves away
        assert plan.max_cost_wei is not None
        assert plan.max_cost_wei > 0
        outcome = await client.send(plan)
        assert outcome.done, outcome
        assert outcome.tx_hash is not None
        [after] = await client.positions()
        assert after.margin_ratio > view.margin_ratio
    assert collateral_of(devnet, key) >= before + 500 * USDC - USDC  # less funding settled


async def test_a_script_never_races_the_keeper(devnet: Devnet, tmp_path: Path) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    journal = tmp_path / "journal.sqlite"
    async with await keeper.connect(
        devnet.url, addresses=addresses(devnet), multicall=devnet.deployment.multicall,
        accounts=[trader.address], signer=trader, journal=journal,
    ) as client:  # fmt: skip
        [view] = await client.positions()
        # what a running keeper on the same journal would hold: an open intent on it
        client.journal.open_intent(client.venue.name, view.key, "top_up", {}, block=1)
        plan = await client.prepare_top_up(view, "100")
        with pytest.raises(keeper.ManualError, match="already open"):
            await client.send(plan)


async def test_the_keeper_inside_your_program(devnet: Devnet, tmp_path: Path) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    before = collateral_of(devnet, key)
    thresholds = keeper.Thresholds(
        keeper.MarketThresholds(
            top_up_below=Decimal("0.06"), top_up_to=Decimal("0.08"),
            reduce_below=Decimal("0.04"), close_below=Decimal("0.03"),
        )
    )  # fmt: skip
    async with await keeper.connect(
        devnet.url, addresses=addresses(devnet), multicall=devnet.deployment.multicall,
        accounts=[trader.address], signer=trader, journal=tmp_path / "journal.sqlite",
    ) as client:  # fmt: skip
        assert client.wallet_token is not None
        budget = keeper.budget_in(
            client.wallet_token, max_top_up_per_position=1_000, max_spend_per_day=2_000,
            reserve=0,
        )  # fmt: skip
        seen: list[keeper.TickReport] = []

        async def move_price() -> None:
            await asyncio.sleep(0.5)
            devnet.set_price("ETH", Decimal(1_880))

        mover = asyncio.create_task(move_price())
        async for report in client.protect(thresholds=thresholds, budget=budget):
            seen.append(report)
            if any(a.kind == "top_up" for a in report.actions):
                break
            assert len(seen) < 50, "no top-up decided"
        await mover
        assert any(s.outcome in ("sent", "mined", "done") for s in seen[-1].sent), seen[-1]
    # stopped cleanly, its bookkeeping done: the top-up is on chain
    assert collateral_of(devnet, key) > before


def test_the_blocking_client_and_a_config(devnet: Devnet, tmp_path: Path) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    env = {**os.environ, **devnet.keeper_env()}
    with sync.from_config(config, environ=env) as client:
        [view] = client.positions()
        plan = client.prepare_top_up(view, 100)
        assert plan.ok
        assert client.send(plan).done
        [after] = client.positions()
        assert after.position.collateral > view.position.collateral
    with sync.connect(
        devnet.url, addresses=addresses(devnet), multicall=devnet.deployment.multicall,
        accounts=[trader.address],
    ) as reader:  # fmt: skip
        [again] = reader.positions()
        assert again.key == view.key
        with pytest.raises(keeper.ManualError, match="no key"):
            reader.prepare_close(again)


async def test_the_gas_limit_covers_the_first_funding_update_after_an_open(
    devnet: Devnet, tmp_path: Path
) -> None:
    """Estimated in the open's block, mined once time has passed: the first funding update
    writes the market's indexes (81k gas estimated then, 192k needed five seconds later); the
    venue's gas headroom covers it."""
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    async with await keeper.connect(
        devnet.url, addresses=addresses(devnet), multicall=devnet.deployment.multicall,
        accounts=[trader.address], signer=trader, journal=tmp_path / "journal.sqlite",
    ) as client:  # fmt: skip
        assert client.txs is not None
        plan = await client.prepare_top_up("0x" + key.hex(), "500")
        [step] = plan.transactions.steps
        request = TxRequest(0, step.to, step.data, step.value, step.gas_headroom)
        limit = await client.txs.estimate_gas(request)  # at the open's block: no time passed
        advance_time(devnet.url, 5)
        call = {"from": trader.address, "to": step.to, "data": "0x" + step.data.hex()}
        needed = int(await client.rpc.request("eth_estimateGas", [call]), 16)
        assert needed > 150_000  # the funding update writes its slots now
        assert limit >= needed, (limit, needed)
        outcome = await client.send(plan)
        assert outcome.done, outcome


async def test_an_operator_key_acts_for_the_trader_that_approved_it(
    devnet: Devnet, tmp_path: Path
) -> None:
    trader, operator = devnet.account("trader"), devnet.account("operator")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    options: dict[str, Any] = {
        "addresses": addresses(devnet),
        "multicall": devnet.deployment.multicall,
        "accounts": [trader.address],
        "signer": operator,
        "journal": tmp_path / "journal.sqlite",
        "delegated": True,
    }
    with pytest.raises(keeper.ManualError, match="has not approved"):
        await keeper.connect([devnet.url], **options)
    devnet.approve_operator(trader, top_up_limit=700, actions=5)
    async with await keeper.connect([devnet.url], **options) as client:
        [grant] = await client.delegations()
        assert (grant.account, grant.delegate, grant.active) == (
            trader.address, operator.address, True
        )  # fmt: skip
        assert grant.top_up_left is not None
        assert grant.top_up_left.value == Decimal(700)
        wallet = devnet.usdc_balance(trader.address)
        before = collateral_of(devnet, key)
        outcome = await client.send(await client.prepare_top_up("ETH:long", "500"))
        assert outcome.done, outcome
        assert devnet.usdc_balance(trader.address) == wallet - 500 * USDC
        assert collateral_of(devnet, key) > before + 490 * USDC
        [grant] = await client.delegations()
        assert grant.actions_left == 4
        assert grant.top_up_left is not None
        assert grant.top_up_left.value == Decimal(200)
        with pytest.raises(keeper.ManualError, match="grant has left 200"):
            await client.prepare_top_up("ETH:long", "300")
