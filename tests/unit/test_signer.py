"""Key sources and the Signer's secrecy."""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Literal

import pytest
from eth_account import Account

from keeper.signer import (
    TEST_PBKDF2_ITERATIONS,
    TEST_SCRYPT_N,
    KeySource,
    Signer,
    SignerError,
    create_keystore,
    key_from_env,
    keystore_password,
    load_keystore,
    load_signer,
)

KEY = "0x" + "4c" * 32
ADDRESS = Account.from_key(KEY).address
TX = {
    "type": 2,
    "chainId": 31337,
    "nonce": 3,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "data": b"",
    "gas": 21_000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**8,
}


def no_key(text: str) -> None:
    assert "4c4c4c4c" not in text.lower()


def test_repr_and_str_show_only_the_address() -> None:
    signer = Signer.from_key(KEY)
    assert repr(signer) == f"Signer({ADDRESS})"
    assert str(signer) == repr(signer)
    assert signer.address == ADDRESS
    no_key(repr(signer) + str(signer) + f"{signer!r}")


def test_cannot_be_pickled_copied_or_changed() -> None:
    signer = Signer.from_key(KEY)
    for attempt in (
        lambda: pickle.dumps(signer),
        lambda: copy.copy(signer),
        lambda: copy.deepcopy(signer),
    ):
        with pytest.raises(TypeError, match="private key") as info:
            attempt()
        no_key(str(info.value))
    with pytest.raises(AttributeError, match="read-only"):
        signer.address = "0x0"
    assert not hasattr(signer, "__dict__")


def test_signs_like_eth_account() -> None:
    signed = Signer.from_key(KEY).sign_transaction(TX)
    expected = Account.sign_transaction(TX, KEY)
    assert signed.raw == bytes(expected.raw_transaction)
    assert signed.hash == "0x" + expected.hash.hex()


def test_sign_errors_name_the_problem_not_the_key() -> None:
    with pytest.raises(SignerError, match=f"cannot sign transaction for {ADDRESS}") as info:
        Signer.from_key(KEY).sign_transaction({**TX, "to": "nope"})
    no_key(str(info.value))


@pytest.mark.parametrize("bad", [KEY[:-2] + "zz", KEY[:-2], "", "0x"])
def test_malformed_key_error_hides_it(bad: str) -> None:
    with pytest.raises(SignerError, match="malformed") as info:
        Signer.from_key(bad)
    no_key(str(info.value) + repr(info.value))
    assert info.value.__suppress_context__


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_keystore_round_trip(tmp_path: Path, kdf: Literal["scrypt", "pbkdf2"]) -> None:
    path = tmp_path / "k.json"
    iterations = TEST_SCRYPT_N if kdf == "scrypt" else TEST_PBKDF2_ITERATIONS
    address = create_keystore(path, KEY, "s3cret", kdf=kdf, iterations=iterations)
    assert address == ADDRESS
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    no_key(path.read_text())
    assert json.loads(path.read_text())["crypto"]["kdf"] == kdf
    assert load_keystore(path, "s3cret").address == ADDRESS
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temp file left


def test_keystore_defaults_are_production_strength(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, KEY, "pw", kdf="pbkdf2")
    params = json.loads(path.read_text())["crypto"]["kdfparams"]
    assert params["c"] >= 100_000


def test_wrong_password_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, KEY, "right", iterations=TEST_SCRYPT_N)
    with pytest.raises(SignerError, match="wrong password") as info:
        load_keystore(path, "wrong")
    assert "right" not in str(info.value)
    with pytest.raises(SignerError, match="cannot read keystore"):
        load_keystore(tmp_path / "missing.json", "x")
    (tmp_path / "junk.json").write_text("{nope")
    with pytest.raises(SignerError, match="not JSON"):
        load_keystore(tmp_path / "junk.json", "x")


def test_password_sources(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    assert keystore_password(env="PW", environ={"PW": "from-env"}) == "from-env"
    assert keystore_password(env="PW", file=pw_file, environ={}) == "from-file"
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "typed"

    assert keystore_password(env="PW", prompt=True, environ={}, ask=ask) == "typed"
    assert asked == ["Keystore password: "]
    with pytest.raises(SignerError, match="PW is not set"):
        keystore_password(env="PW", environ={})
    with pytest.raises(SignerError, match="password file"):
        keystore_password(file=tmp_path / "none")
    with pytest.raises(SignerError, match="no keystore password source"):
        keystore_password()


def test_raw_key_only_on_devnet_unless_allowed() -> None:
    env = {"KEY": KEY}
    assert key_from_env("KEY", 31337, environ=env).address == ADDRESS
    assert key_from_env("KEY", 1337, environ=env).address == ADDRESS
    with pytest.raises(SignerError, match="only on a devnet chain") as info:
        key_from_env("KEY", 42161, environ=env)
    no_key(str(info.value))
    assert key_from_env("KEY", 42161, allow_raw_key=True, environ=env).address == ADDRESS
    with pytest.raises(SignerError, match="KEY is not set"):
        key_from_env("KEY", 31337, environ={})
    with pytest.raises(SignerError, match="the key in KEY is malformed") as info:
        key_from_env("KEY", 31337, environ={"KEY": KEY + "ff"})
    no_key(str(info.value))


def test_load_signer_sources(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, KEY, "pw", iterations=TEST_SCRYPT_N)
    environ = {"PW": "pw", "KEY": KEY}
    assert load_signer(KeySource("none"), 1) is None  # observer mode
    ks = KeySource("keystore", keystore=str(path), password_env="PW")
    assert load_signer(ks, 8453, environ=environ) is not None
    env = KeySource("env", key_env="KEY")
    assert load_signer(env, 31337, environ=environ) is not None
    with pytest.raises(SignerError, match="devnet"):
        load_signer(env, 8453, environ=environ)
    with pytest.raises(SignerError, match="key_env"):
        load_signer(KeySource("env"), 31337, environ=environ)
    with pytest.raises(SignerError, match="keystore"):
        load_signer(KeySource("keystore", password_env="PW"), 1, environ=environ)
