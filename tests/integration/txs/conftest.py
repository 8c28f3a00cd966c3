"""Fixtures for the transaction manager's tests: a fresh funded account per test, a journal
file, our RPC client on the session's Anvil (reverted after each test), and a block miner."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keeper.chain.rpc import FailoverRpc
from keeper.journal import Journal
from keeper.signer import Signer
from keeper.testing.anvil import Anvil
from keeper.testing.helpers import Chain
from keeper.txs import FeePolicy, TxConfig, TxManager

GWEI = 10**9
SINK = "0x000000000000000000000000000000000000dEaD"


@dataclass(frozen=True, slots=True)
class Wallet:
    """A fresh account funded with 100 ETH. `key` is 0x hex (test-only, random per test)."""

    key: str
    address: str


def tx_config(**overrides: Any) -> TxConfig:
    fields: dict[str, Any] = {
        "chain_id": 31337,
        "fees": FeePolicy(max_fee_cap=500 * GWEI),
        "gas_margin": Decimal("1.2"),
        "confirmations": 1,
        "replace_after_blocks": 2,
        "receipt_timeout": 20.0,
        "poll_interval": 0.05,
    }
    fields.update(overrides)
    return TxConfig(**fields)


@pytest.fixture
def node(anvil_snapshot: Anvil, chain: Chain) -> Anvil:
    """The session's Anvil; the plugin's `chain` fixture reverts it and puts automine back on
    after the test."""
    return anvil_snapshot


@pytest.fixture
def wallet(node: Anvil, chain: Chain) -> Wallet:
    key = "0x" + os.urandom(32).hex()
    address = Account.from_key(key).address
    chain.set_balance(address, 100 * 10**18)
    return Wallet(key, address)


PASSWORD_ENV = "KEEPER_TEST_JOURNAL_PASSWORD"


@dataclass(frozen=True, slots=True)
class JournalStore:
    """Where a test's journal lives: a SQLite file, or a Postgres database (whose password
    child processes read from $KEEPER_TEST_JOURNAL_PASSWORD)."""

    target: str
    password: str | None
    workdir: Path

    def open(self) -> Journal:
        return Journal(self.target, password=self.password)

    def env(self) -> dict[str, str]:
        return {PASSWORD_ENV: self.password} if self.password else {}


def store_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> JournalStore:
    if backend == "sqlite":
        return JournalStore(str(tmp_path / "journal.sqlite"), None, tmp_path)
    url = request.getfixturevalue("postgres_url")
    return JournalStore(url, request.getfixturevalue("postgres").password, tmp_path)


@pytest.fixture
def journal_store(request: pytest.FixtureRequest, tmp_path: Path) -> JournalStore:
    """SQLite; test modules that run on both backends override it with a parametrised one."""
    return store_for(request, "sqlite", tmp_path)


@pytest.fixture
def journal(journal_store: JournalStore) -> Iterator[Journal]:
    j = journal_store.open()
    yield j
    j.close()


@pytest.fixture
async def rpc(node: Anvil) -> AsyncIterator[FailoverRpc]:
    client = FailoverRpc([node.url], retry_wait=0.0, retry_wait_max=0.0)
    yield client
    await client.close()


@pytest.fixture
def manager(rpc: FailoverRpc, journal: Journal, wallet: Wallet) -> TxManager:
    return TxManager(rpc, journal, Signer.from_key(wallet.key), tx_config())


@contextlib.asynccontextmanager
async def mining(node: Anvil, interval: float = 0.2) -> AsyncIterator[None]:
    """Mine a block every `interval` seconds (for automine-off tests and confirmations)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(node.rpc, "evm_mine")

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def receipt(node: Anvil, tx_hash: str) -> dict[str, Any] | None:
    got = node.rpc("eth_getTransactionReceipt", tx_hash)
    return got if isinstance(got, dict) else None


def nonce_of(node: Anvil, address: str, block: str = "latest") -> int:
    return int(node.rpc("eth_getTransactionCount", address, block), 16)


def sent_from(node: Anvil, address: str, first_block: int) -> list[dict[str, Any]]:
    """Every transaction mined from `address` in blocks first_block..head."""
    head = int(node.rpc("eth_blockNumber"), 16)
    found = []
    for n in range(first_block, head + 1):
        block = node.rpc("eth_getBlockByNumber", hex(n), True)
        found += [t for t in block["transactions"] if t["from"].lower() == address.lower()]
    return found
