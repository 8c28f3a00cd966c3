"""Key sources and a `Signer` that shows only its address.

Sources: an encrypted eth-account keystore (password from an env var, a file, or a prompt); a
raw key from an env var, accepted only on a devnet chain id (31337, 1337) unless the caller
passes `allow_raw_key=True`; or no key at all (observer mode: `load_signer` returns None).

The key lives inside the Signer and nowhere else we control: repr and str show the address,
errors never quote the key or the password, a Signer cannot be pickled or copied, and
`create_keystore` writes only the encrypted form (mode 0600, replaced atomically).
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from eth_account import Account
from eth_account.signers.local import LocalAccount

DEVNET_CHAIN_IDS = frozenset({31337, 1337})

# Light KDF settings, for tests only: files made with these are quick to crack.
TEST_SCRYPT_N = 2**4
TEST_PBKDF2_ITERATIONS = 2


class SignerError(Exception):
    """A key could not be loaded or used. Messages never contain the key or the password."""


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction: the raw bytes to broadcast and its hash (0x hex)."""

    raw: bytes
    hash: str


class Signer:
    """Signs transactions with a private key it never shows. repr/str: the address only."""

    __slots__ = ("_account", "address")

    address: str
    _account: LocalAccount

    def __init__(self, account: LocalAccount) -> None:
        object.__setattr__(self, "_account", account)
        object.__setattr__(self, "address", account.address)

    @classmethod
    def from_key(cls, key: str | bytes) -> Signer:
        """A signer for a raw private key (hex string or 32 bytes)."""
        try:
            account = Account.from_key(key)
        except Exception:
            raise SignerError("the private key is malformed (expected 32 bytes of hex)") from None
        return cls(account)

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTx:
        """Sign a transaction dict (eth-account fields: type, chainId, nonce, to, gas, ...)."""
        try:
            signed = self._account.sign_transaction(dict(tx))
        except Exception as exc:
            # eth-account's messages name fields, not the key; keep the type and text.
            raise SignerError(
                f"cannot sign transaction for {self.address}: {type(exc).__name__}: {exc}"
            ) from None
        return SignedTx(raw=bytes(signed.raw_transaction), hash="0x" + signed.hash.hex())

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    __str__ = __repr__

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Signer is read-only (cannot set {name})")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Signer holds a private key and cannot be pickled or copied")

    def __copy__(self) -> NoReturn:
        raise TypeError("a Signer holds a private key and cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("a Signer holds a private key and cannot be copied")


def _read_password_file(path: str | os.PathLike[str]) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SignerError(f"cannot read the password file {path}: {exc.strerror}") from None
    return text.rstrip("\r\n")


def keystore_password(
    *,
    env: str | None = None,
    file: str | os.PathLike[str] | None = None,
    prompt: bool = False,
    environ: Mapping[str, str] | None = None,
    ask: Callable[[str], str] = getpass.getpass,
) -> str:
    """The keystore password from the first source given: env var, file, then a prompt."""
    environ = os.environ if environ is None else environ
    if env is not None:
        value = environ.get(env)
        if value is not None:
            return value
        if file is None and not prompt:
            raise SignerError(f"the keystore password env var {env} is not set")
    if file is not None:
        return _read_password_file(file)
    if prompt:
        return ask("Keystore password: ")
    raise SignerError("no keystore password source: give an env var, a file or prompt=True")


def load_keystore(path: str | os.PathLike[str], password: str) -> Signer:
    """Decrypt an eth-account keystore JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SignerError(f"cannot read keystore {path}: {exc.strerror}") from None
    except ValueError:
        raise SignerError(f"keystore {path} is not JSON") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise SignerError(f"cannot decrypt keystore {path}: wrong password?") from None
    except Exception as exc:
        raise SignerError(f"keystore {path} is malformed ({type(exc).__name__})") from None
    return Signer.from_key(bytes(key))


def key_from_env(
    var: str,
    chain_id: int,
    *,
    allow_raw_key: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Signer:
    """A raw key from env var `var`: only on a devnet chain unless `allow_raw_key`."""
    if chain_id not in DEVNET_CHAIN_IDS and not allow_raw_key:
        raise SignerError(
            f"a raw key from {var} is accepted only on a devnet chain "
            f"({sorted(DEVNET_CHAIN_IDS)}), not chain {chain_id}: use an encrypted keystore, "
            "or allow raw keys explicitly in the config"
        )
    environ = os.environ if environ is None else environ
    value = environ.get(var)
    if not value:
        raise SignerError(f"the key env var {var} is not set")
    try:
        return Signer.from_key(value.strip())
    except SignerError:
        raise SignerError(f"the key in {var} is malformed (expected 32 bytes of hex)") from None


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the key comes from. `kind` "none" is observer mode (no key, nothing sent)."""

    kind: Literal["keystore", "env", "none"]
    keystore: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    prompt: bool = False
    key_env: str | None = None
    allow_raw_key: bool = False


def load_signer(
    source: KeySource, chain_id: int, *, environ: Mapping[str, str] | None = None
) -> Signer | None:
    """The signer a source describes, or None in observer mode."""
    if source.kind == "none":
        return None
    if source.kind == "env":
        if not source.key_env:
            raise SignerError("key source env: key_env (the variable's name) is missing")
        return key_from_env(
            source.key_env, chain_id, allow_raw_key=source.allow_raw_key, environ=environ
        )
    if not source.keystore:
        raise SignerError("key source keystore: keystore (the file's path) is missing")
    password = keystore_password(
        env=source.password_env,
        file=source.password_file,
        prompt=source.prompt,
        environ=environ,
    )
    return load_keystore(source.keystore, password)


def create_keystore(
    path: str | os.PathLike[str],
    key: str | bytes,
    password: str,
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> str:
    """Encrypt `key` into a keystore file at `path` (0600); its address.

    `iterations` is scrypt's n or pbkdf2's count; None means eth-account's production
    defaults. Tests pass TEST_SCRYPT_N / TEST_PBKDF2_ITERATIONS.
    """
    signer = Signer.from_key(key)
    try:
        data = Account.encrypt(bytes(signer._account.key), password, kdf=kdf, iterations=iterations)
    except Exception as exc:
        raise SignerError(f"cannot encrypt the key ({type(exc).__name__})") from None
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".keystore-")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return signer.address
