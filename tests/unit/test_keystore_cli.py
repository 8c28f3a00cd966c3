"""`keeper keystore create`: the key from stdin, the password from an env var; never echoed."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

import keeper.signer
from keeper.cli import main
from keeper.signer import TEST_SCRYPT_N, load_keystore

KEEPER = str(Path(sys.executable).with_name("keeper"))
# Anvil's public test key #2: known to everyone, never holds value
KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def create(tmp_path: Path, stdin: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KEEPER, "keystore", "create", *args],
        input=stdin, capture_output=True, text=True, check=False,
        env={**os.environ, **env}, cwd=tmp_path,
    )  # fmt: skip


def test_a_keystore_is_written_that_decrypts_to_the_key(tmp_path: Path) -> None:
    out = tmp_path / "keeper.json"
    done = create(tmp_path, KEY + "\n", "--out", str(out), "--password-env", "PW", PW="s3cret")
    assert done.returncode == 0, done.stderr
    assert ADDRESS in done.stdout
    assert KEY[2:] not in done.stdout + done.stderr
    assert KEY[2:] not in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_keystore(out, "s3cret").address == ADDRESS


@pytest.fixture
def light(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs with a cheap scrypt (the subprocess test above uses the real one)."""
    light_create = partial(keeper.signer.create_keystore, iterations=TEST_SCRYPT_N)
    monkeypatch.setattr(keeper.signer, "create_keystore", light_create)
    monkeypatch.setenv("PW", "x")


def run(monkeypatch: pytest.MonkeyPatch, stdin: str, *args: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["keystore", "create", *args])


@pytest.mark.usefixtures("light")
def test_an_existing_file_is_kept_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keeper.json"
    out.write_text("keep me")
    assert run(monkeypatch, KEY, "--out", str(out), "--password-env", "PW") == 1
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert run(monkeypatch, KEY, "--out", str(out), "--password-env", "PW", "--force") == 0
    assert load_keystore(out, "x").address == ADDRESS


@pytest.mark.usefixtures("light")
def test_bad_input_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.json"
    assert run(monkeypatch, KEY, "--out", str(out), "--password-env", "NOPE_NOT_SET") == 1
    assert "NOPE_NOT_SET is not set" in capsys.readouterr().err
    assert run(monkeypatch, "0x1234", "--out", str(out), "--password-env", "PW") == 1
    assert "malformed" in capsys.readouterr().err
    assert run(monkeypatch, "", "--out", str(out), "--password-env", "PW") == 1
    assert "no key" in capsys.readouterr().err
    assert run(monkeypatch, KEY, "--out", str(tmp_path / "nodir" / "k.json")) == 1
    assert "no directory" in capsys.readouterr().err
    assert not out.exists()


def test_the_password_is_asked_twice_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([KEY, "one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    assert main(["keystore", "create", "--out", str(tmp_path / "k.json")]) == 1
    assert "passwords differ" in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()
