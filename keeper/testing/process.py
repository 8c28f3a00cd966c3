"""`keeper run --config FILE` as a real child process, for tests: its metrics and health URL,
its journal, its output, and a stop by SIGTERM or SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from keeper.config import load
from keeper.journal import JournalTarget

# Runs the installed package's command line under this interpreter: no PATH lookup needed.
_ENTRY = "import sys; from keeper.cli import main; sys.exit(main())"


class KeeperProcessError(RuntimeError):
    """The keeper did not start, exited when it should not have, or a wait timed out; the
    message ends with the keeper's last output."""


class KeeperProcess:
    """`keeper run --config CONFIG [args]` in a child process.

    `env` is added to this process's environment (the signer's key variable, typically).
    The metrics URL and journal path come from the config file (which must have [metrics]
    for `health` and `metrics`). `start()` returns once /healthz answers (200 or 503).
    """

    def __init__(
        self,
        config_path: str | Path,
        env: Mapping[str, str] | None = None,
        *,
        args: Sequence[str] = ("--log-level", "DEBUG"),
        startup_timeout: float = 30.0,
    ) -> None:
        self.config_path = Path(config_path)
        self.env = dict(env or {})
        self.args = list(args)
        self.startup_timeout = startup_timeout
        environ = {**os.environ, **self.env}
        config = load(self.config_path, environ=environ)
        self.journal: JournalTarget = config.journal
        self.metrics_base: str | None = None
        if config.metrics is not None:
            host = config.metrics.host
            host = f"[{host}]" if ":" in host else host
            host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
            self.metrics_base = f"http://{host}:{config.metrics.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.returncode: int | None = None

    # -- what it offers -------------------------------------------------------------------------

    @property
    def journal_path(self) -> Path:
        """The SQLite journal's file (ValueError for a Postgres journal: see `journal`)."""
        if not isinstance(self.journal, Path):
            raise ValueError(f"the journal is on Postgres ({self.journal}), not a file")
        return self.journal

    @property
    def metrics_url(self) -> str:
        """http://HOST:PORT/metrics of the keeper (KeeperProcessError without [metrics])."""
        return f"{self._base()}/metrics"

    @property
    def health_url(self) -> str:
        return f"{self._base()}/healthz"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _base(self) -> str:
        if self.metrics_base is None:
            raise KeeperProcessError(f"{self.config_path} has no [metrics] section")
        return self.metrics_base

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            _ENTRY,
            "run",
            "--config",
            str(self.config_path),
            *self.args,
        ]

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Starts the keeper and waits until its health endpoint answers (when it has one)."""
        if self._proc is not None:
            return self
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self._proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=self.config_path.parent,
        )
        if self.metrics_base is not None:
            self.wait_for(lambda: self.health() is not None, self.startup_timeout, "/healthz")
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Sends `sig` and waits for the exit; returns the exit code (negative: killed by a
        signal). KeeperProcessError (after a SIGKILL) if it outlives `timeout`."""
        proc = self._proc
        if proc is None:
            raise KeeperProcessError("the keeper was never started")
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise KeeperProcessError(
                    f"the keeper ignored signal {signal.Signals(sig).name} for {timeout:g}s; "
                    f"killed\n{self._tail()}"
                ) from None
        self.returncode = int(proc.returncode)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL if still running; never raises (for cleanup)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        """Everything the keeper wrote to stdout and stderr so far."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _tail(self, chars: int = 4000) -> str:
        return "--- keeper output (tail) ---\n" + self.output()[-chars:]

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = 20.0, what: str = ""
    ) -> None:
        """Polls `predicate()` until it is truthy; KeeperProcessError if the keeper exits first
        or `timeout` passes."""
        deadline = time.monotonic() + timeout
        label = what or getattr(predicate, "__name__", "condition")
        while True:
            if predicate():
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise KeeperProcessError(
                    f"the keeper exited with code {self._proc.returncode} while waiting for "
                    f"{label}\n{self._tail()}"
                )
            if time.monotonic() > deadline:
                raise KeeperProcessError(
                    f"timed out after {timeout:g}s waiting for {label}\n{self._tail()}"
                )
            time.sleep(0.05)

    # -- its endpoints --------------------------------------------------------------------------

    def health(self) -> dict[str, Any] | None:
        """/healthz's JSON body (200 or 503); None while nothing answers."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except urllib.error.HTTPError as exc:
            try:
                unhealthy: dict[str, Any] = json.loads(exc.read())
            except ValueError:
                return None
            return unhealthy
        except (OSError, ValueError):
            return None

    def last_block(self) -> int | None:
        """The last block the keeper processed (from /healthz), or None."""
        health = self.health()
        block = None if health is None else health.get("block")
        return None if block is None else int(block)

    def metrics(self) -> str:
        """The Prometheus text at /metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample (`name` with exactly these labels), or None when absent."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            series, _, value = line.rpartition(" ")
            metric, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
