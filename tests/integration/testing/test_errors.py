"""Errors a user can act on: no anvil binary, a fork URL that does not answer (named without
its secrets), a fork block beyond the remote head, an anvil that dies at start; directly and
through the plugin's `anvil` fixture in a pytest run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keeper.testing import anvil as anvil_module
from keeper.testing.anvil import INSTALL_HINT, Anvil, AnvilError, find_anvil, free_port, redact

pytestmark = pytest.mark.integration

SECRET = "k3y-0f-the-user-1234567890"


@pytest.fixture
def dead_url() -> str:
    """A provider-style URL with an API key in its path, where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v2/{SECRET}?apikey={SECRET}"


class _Handler(BaseHTTPRequestHandler):
    status = 401
    body = b'{"error": "invalid API key"}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def server_url(server: ThreadingHTTPServer, path: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


# -- no anvil ------------------------------------------------------------------------------------


def test_a_missing_anvil_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEPER_ANVIL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(anvil_module, "LOCAL_ANVIL", tmp_path / "no-anvil")
    with pytest.raises(AnvilError) as info:
        find_anvil()
    assert str(info.value) == INSTALL_HINT
    assert "scripts/bootstrap" in INSTALL_HINT
    assert "npm install @foundry-rs/anvil" in INSTALL_HINT
    assert "KEEPER_ANVIL" in INSTALL_HINT


def test_a_wrong_keeper_anvil_names_it_and_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_ANVIL", str(tmp_path / "anvil"))
    with pytest.raises(AnvilError, match=r"KEEPER_ANVIL=.* is not an executable file") as info:
        Anvil().start()
    assert INSTALL_HINT in str(info.value)


def test_an_anvil_dying_at_start_shows_its_stderr() -> None:
    with pytest.raises(AnvilError, match=r"anvil exited with code \d+ at start") as info:
        Anvil(extra_args=["--no-such-flag"]).start()
    assert "--no-such-flag" in str(info.value)


# -- fork URLs -----------------------------------------------------------------------------------


def test_a_fork_url_that_does_not_answer_fails_fast_without_its_secrets(dead_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(AnvilError) as info:
        Anvil(fork_url=dead_url).start()
    assert time.monotonic() - started < 5
    message = str(info.value)
    port = dead_url.split(":")[2].split("/", maxsplit=1)[0]
    assert f"the fork URL http://127.0.0.1:{port}/… does not answer" in message
    assert SECRET not in message


def test_a_fork_url_refusing_the_request_says_the_http_status(
    http_server: ThreadingHTTPServer,
) -> None:
    url = server_url(http_server, f"/rpc/{SECRET}")
    with pytest.raises(AnvilError, match=r"does not answer: HTTP 401 Unauthorized") as info:
        Anvil(fork_url=url).start()
    assert SECRET not in str(info.value)


def test_a_fork_url_that_is_not_a_node_is_named(
    http_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Handler, "status", 200)
    monkeypatch.setattr(_Handler, "body", b"<html>hello</html>")
    with pytest.raises(AnvilError, match="does not answer eth_blockNumber as a JSON-RPC node"):
        Anvil(fork_url=server_url(http_server)).start()


def test_a_fork_block_beyond_the_head_says_both_numbers() -> None:
    with Anvil() as origin:
        origin.rpc("anvil_mine", hex(7))
        with pytest.raises(AnvilError) as info:
            Anvil(fork_url=origin.url, fork_block=1_000).start()
    assert str(info.value) == (
        f"fork block 1000 is beyond the head of {origin.url}: its latest block is 7"
    )


def test_redact_hides_the_secret_parts_of_a_url() -> None:
    url = f"https://user:{SECRET}@arb.example.com/v2/{SECRET}?key={SECRET}"
    text = f"error sending request for url ({url}); key {SECRET}"
    out = redact(text, url)
    assert SECRET not in out
    assert "https://arb.example.com/…" in out
    assert redact("nothing", None) == "nothing"


# -- through the plugin --------------------------------------------------------------------------


def run_pytest(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest in tmp_path on one test that asks for `anvil`; the plugin loads by entry point."""
    (tmp_path / "test_inner.py").write_text("def test_node(anvil):\n    assert anvil.url\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_FORK_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        check=False,
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_plugin_reports_a_dead_fork_url_without_its_secrets(
    tmp_path: Path, dead_url: str
) -> None:
    done = run_pytest(tmp_path, "--fork-url", dead_url)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "the fork URL http://127.0.0.1:" in out
    assert "/… does not answer" in out
    assert SECRET not in out


def test_the_plugin_reports_a_fork_block_beyond_the_head(tmp_path: Path) -> None:
    with Anvil() as origin:
        done = run_pytest(tmp_path, env={"KEEPER_FORK_URL": origin.url, "KEEPER_FORK_BLOCK": "50"})
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"fork block 50 is beyond the head of {origin.url}: its latest block is 0" in out


def test_the_plugin_reports_a_missing_anvil_with_the_install_hint(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, env={"KEEPER_ANVIL": str(tmp_path / "missing-anvil")})
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "scripts/bootstrap" in out
    assert "npm install @foundry-rs/anvil" in out


def test_the_plugin_refuses_a_fork_block_that_is_not_a_number(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, env={"KEEPER_FORK_BLOCK": "latest"})
    assert done.returncode != 0
    assert "KEEPER_FORK_BLOCK='latest' is not a block number" in done.stdout + done.stderr


def test_the_plugins_markers_pass_strict_markers(tmp_path: Path) -> None:
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.integration\ndef test_a():\n    pass\n\n"
        "@pytest.mark.fork\ndef test_b():\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         "test_marked.py"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--markers"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "@pytest.mark.integration: needs a local Anvil node" in listed.stdout
