"""A real Anvil node in a child process, for tests, the devnet and the demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from keeper.chain.jsonrpc import endpoint_label

INSTALL_HINT = (
    "anvil (Foundry 1.7.1) was not found. Run scripts/bootstrap in the perp-keeper checkout, "
    "or `npm install @foundry-rs/anvil@1.7.1` and put its bin/ on PATH, "
    "or set KEEPER_ANVIL to the anvil binary."
)

ARBSYS = "0x0000000000000000000000000000000000000064"
ARBSYS_STAND_IN = "0x4360005260206000f3"  # NUMBER PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
ARB_BLOCK_NUMBER = "0xa3b1b31d"  # ArbSys.arbBlockNumber()

# Where scripts/bootstrap installs anvil in a checkout.
LOCAL_ANVIL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "anvil"

# Anvil's default mnemonic accounts: public test keys, known to everyone; devnet use only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


class AnvilError(RuntimeError):
    """Anvil could not be found, could not start, or died."""


def find_anvil() -> str:
    """Locate the anvil binary: $KEEPER_ANVIL, then PATH, then the checkout's .tools/bin."""
    explicit = os.environ.get("KEEPER_ANVIL")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise AnvilError(f"KEEPER_ANVIL={explicit!r} is not an executable file. {INSTALL_HINT}")
        return explicit
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    local = LOCAL_ANVIL
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    raise AnvilError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rpc_request(url: str, method: str, params: Sequence[Any] = (), timeout: float = 10.0) -> Any:
    """One synchronous JSON-RPC call; raises AnvilError naming the method on any failure."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AnvilError(f"{method} to {url} failed: {exc}") from exc
    if not isinstance(answer, dict):
        raise AnvilError(f"{method} to {url}: malformed answer {answer!r}")
    if "error" in answer:
        raise AnvilError(f"{method} to {url}: {answer['error']}")
    return answer.get("result")


def check_fork(url: str, block: int | None, timeout: float = 10.0) -> int:
    """Checks that the fork URL answers, and that `block` is not beyond its head.

    Returns the remote head. Errors name the endpoint by `endpoint_label` only: provider URLs
    carry API keys in their paths and queries.
    """
    label = endpoint_label(url)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
        head = int(answer["result"], 16)
    except urllib.error.HTTPError as exc:
        raise AnvilError(
            f"the fork URL {label} does not answer: HTTP {exc.code} {exc.reason}"
        ) from None
    except urllib.error.URLError as exc:
        raise AnvilError(f"the fork URL {label} does not answer: {exc.reason}") from None
    except TimeoutError:
        raise AnvilError(f"the fork URL {label} does not answer within {timeout:g}s") from None
    except OSError as exc:
        raise AnvilError(f"the fork URL {label} does not answer: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError):
        raise AnvilError(
            f"the fork URL {label} does not answer eth_blockNumber as a JSON-RPC node does"
        ) from None
    if block is not None and block > head:
        raise AnvilError(
            f"fork block {block} is beyond the head of {label}: its latest block is {head}"
        )
    if block is not None and block < 0:
        raise AnvilError(f"fork block {block} is negative")
    return head


def redact(text: str, url: str | None) -> str:
    """`text` with `url` and its secret parts (path, query, user info) replaced by its label."""
    if not url:
        return text
    text = text.replace(url, endpoint_label(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    for secret in (parts.path.strip("/"), parts.query, parts.username, parts.password):
        if secret and len(secret) >= 6:
            text = text.replace(secret, "…")
    return text


class Anvil:
    """An Anvil process on a free loopback port.

    Started by `start()` (or as a context manager), stopped by `stop()`: SIGTERM, then
    SIGKILL. When it dies, its stderr is part of the error raised.
    """

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        fork_url: str | None = None,
        fork_block: int | None = None,
        block_time: float | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.chain_id = chain_id
        self.fork_url = fork_url
        self.fork_block = fork_block
        self.block_time = block_time
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._stdout: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            find_anvil(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            "10",
            "--balance",
            "100000",
        ]
        if self.fork_url:
            cmd += ["--fork-url", self.fork_url]
            if self.fork_block is not None:
                cmd += ["--fork-block-number", str(self.fork_block)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        return cmd + self.extra_args

    def start(self) -> Self:
        if self._proc is not None:
            return self
        cmd = self.command()
        if self.fork_url and self.fork_url.startswith(("http://", "https://")):
            check_fork(self.fork_url, self.fork_block, timeout=min(self.startup_timeout, 15.0))
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the node)
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd, stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                detail = self.output() or "(no output)"
                self.stop()
                raise AnvilError(f"anvil exited with code {rc} at start:\n{detail}")
            try:
                got = int(rpc_request(self.url, "eth_chainId", timeout=2.0), 16)
            except AnvilError:
                if time.monotonic() > deadline:
                    out = self.output()
                    self.stop()
                    raise AnvilError(
                        f"anvil did not answer on {self.url} within {self.startup_timeout}s\n{out}"
                    ) from None
                time.sleep(0.05)
                continue
            if got != self.chain_id and not self.fork_url:
                self.stop()
                raise AnvilError(f"anvil answered chain id {got}, expected {self.chain_id}")
            return self

    def output(self) -> str:
        """What anvil wrote to stderr and stdout so far (stdout's last 4 KiB)."""
        parts = []
        for stream, tail in ((self._stderr, None), (self._stdout, 4096)):
            if stream is None:
                continue
            stream.flush()
            stream.seek(0)
            data = stream.read().decode(errors="replace")
            parts.append(data[-tail:] if tail else data)
        return redact("\n".join(p for p in parts if p.strip()), self.fork_url)

    def check_alive(self) -> None:
        """Raise AnvilError with anvil's output if the process has died."""
        if self._proc is None:
            raise AnvilError("anvil is not running")
        rc = self._proc.poll()
        if rc is not None:
            raise AnvilError(f"anvil died with exit code {rc}:\n{self.output()}")

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_request(self.url, method, params)

    def stand_in_arbsys(self) -> None:
        """On a fork of an Arbitrum chain: puts at ArbSys (0x64) a stand-in answering every
        call with `block.number`, and checks that it answers the L2 block number.

        Contracts on Arbitrum (GMX's Chain.currentBlockNumber, Gains' block numbers) read the
        L2 block from ArbSys.arbBlockNumber(), a precompile Anvil 1.7.1 does not provide on
        forks (foundry-rs/foundry#5085, fixed by #15666 in later Anvils); Anvil serves
        `block.number` as the L2 number once it has mined a block of its own
        (foundry-rs/foundry#16768), so this mines one first. AnvilError when the stand-in
        answers something else (an Anvil that differs: one with ArbSys on forks needs none)."""
        self.rpc("anvil_setCode", ARBSYS, ARBSYS_STAND_IN)
        self.rpc("anvil_mine", "0x1")
        head = int(self.rpc("eth_blockNumber"), 16)
        answer = self.rpc("eth_call", {"to": ARBSYS, "data": ARB_BLOCK_NUMBER}, "latest")
        l2 = int(str(answer), 16)
        if abs(l2 - head) > 1:
            raise AnvilError(
                f"on this Anvil fork ArbSys.arbBlockNumber() answers {l2} at L2 block {head}: "
                "contracts reading the L2 block from ArbSys would see a wrong one"
            )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (self._stderr, self._stdout):
            if stream is not None:
                stream.close()
        self._stderr = self._stdout = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
