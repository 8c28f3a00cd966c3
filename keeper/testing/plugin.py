"""pytest plugin (entry point `pytest11: keeper`): fixtures for tests against a real Anvil node.

Nothing happens unless a test asks for a fixture:

- `anvil`: a session-wide Anvil process on a free port; a fork of `--fork-url` /
  `KEEPER_FORK_URL` (pinned to `--fork-block` / `KEEPER_FORK_BLOCK`) when one is given.
- `anvil_snapshot`: reverts the chain to its state before the test, after the test.
- `devnet_session`: the reference exchange deployed once per session on `anvil` (markets,
  pool liquidity from an LP, USDC and allowances for an isolated and a cross trader).
- `devnet`: the same deployment, reverted after each test to its state before the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from keeper.testing.anvil import Anvil, AnvilError
from keeper.testing.devnet import Devnet, deploy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keeper", "perp-keeper chain fixtures")
    group.addoption(
        "--fork-url",
        default=None,
        help="RPC URL to fork for the `anvil` fixture (env KEEPER_FORK_URL)",
    )
    group.addoption(
        "--fork-block",
        default=None,
        type=int,
        help="block number to pin the fork to (env KEEPER_FORK_BLOCK)",
    )


def fork_settings(config: pytest.Config) -> tuple[str | None, int | None]:
    url = config.getoption("--fork-url") or os.environ.get("KEEPER_FORK_URL") or None
    block_opt = config.getoption("--fork-block")
    block_env = os.environ.get("KEEPER_FORK_BLOCK")
    block: int | None = block_opt
    if block is None and block_env:
        try:
            block = int(block_env)
        except ValueError:
            raise pytest.UsageError(
                f"KEEPER_FORK_BLOCK={block_env!r} is not a block number"
            ) from None
    return url, block


@pytest.fixture(scope="session")
def anvil(request: pytest.FixtureRequest) -> Iterator[Anvil]:
    """A running Anvil node for the whole session, stopped at the end even on failure."""
    url, block = fork_settings(request.config)
    node = Anvil(fork_url=url, fork_block=block)
    try:
        node.start()
    except AnvilError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def anvil_snapshot(anvil: Anvil) -> Iterator[Anvil]:
    """The session's Anvil node, reverted after the test to the state it had before."""
    snap = anvil.rpc("evm_snapshot")
    try:
        yield anvil
    finally:
        anvil.check_alive()
        if not anvil.rpc("evm_revert", snap):
            raise AnvilError(f"evm_revert({snap}) failed: the chain was not restored")


@pytest.fixture(scope="session")
def devnet_session(anvil: Anvil) -> Devnet:
    """The reference exchange deployed on the session's Anvil node (once per session)."""
    return deploy(anvil.url)


@pytest.fixture
def devnet(devnet_session: Devnet, anvil: Anvil) -> Iterator[Devnet]:
    """The session's deployment, reverted after the test to its state before the test."""
    snap = anvil.rpc("evm_snapshot")
    try:
        yield devnet_session
    finally:
        anvil.check_alive()
        if not anvil.rpc("evm_revert", snap):
            raise AnvilError(f"evm_revert({snap}) failed: the chain was not restored")
