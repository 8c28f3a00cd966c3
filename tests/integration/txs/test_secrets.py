"""The private key appears in no log line, repr, exception message, journal row or file."""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import pytest

from keeper.chain.rpc import FailoverRpc
from keeper.journal import Journal
from keeper.signer import (
    TEST_SCRYPT_N,
    Signer,
    SignerError,
    create_keystore,
    key_from_env,
    load_keystore,
)
from keeper.testing.anvil import Anvil
from keeper.txs import FeePolicy, TxManager, TxRequest
from tests.integration.txs.conftest import SINK, JournalStore, Wallet, tx_config
from tests.integration.txs.test_processes import driver, finish


def forms(key: str) -> list[str]:
    bare = key.removeprefix("0x").lower()
    return [bare, bare.upper(), bare[:16], bare[-16:]]


def assert_clean(text: str, key: str, where: str) -> None:
    for form in forms(key):
        assert form not in text, f"key material found in {where}"


async def test_key_never_leaks(  # noqa: PLR0917 (fixtures)
    rpc: FailoverRpc,
    journal: Journal,
    journal_store: JournalStore,
    node: Anvil,
    wallet: Wallet,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keystore = tmp_path / "key.json"
    create_keystore(keystore, wallet.key, "pw", iterations=TEST_SCRYPT_N)
    signer = load_keystore(keystore, "pw")
    env_signer = key_from_env("K", 31337, environ={"K": wallet.key})
    texts: dict[str, str] = {
        "keystore file": keystore.read_text(),
        "repr": repr(signer) + str(signer) + repr(env_signer) + f"{signer}",
    }
    errors: list[BaseException] = []
    for attempt in (
        lambda: pickle.dumps(signer),
        lambda: copy.copy(signer),
        lambda: copy.deepcopy(signer),
        lambda: Signer.from_key(wallet.key[:-2] + "zz"),
        lambda: key_from_env("K", 42161, environ={"K": wallet.key}),
        lambda: key_from_env("K", 31337, environ={"K": wallet.key + "00"}),
        lambda: load_keystore(keystore, "wrong"),
        lambda: signer.sign_transaction({"to": "not an address", "nonce": 0}),
    ):
        with pytest.raises((SignerError, TypeError)) as info:
            attempt()
        errors.append(info.value)
    texts["exceptions"] = "\n".join(f"{e!r} {e} {e.__cause__!r} {e.__context__!r}" for e in errors)
    assert not hasattr(signer, "__dict__")

    manager = TxManager(rpc, journal, signer, tx_config())
    texts["repr"] += repr(manager)
    for position in ("ok", "cap"):
        intent, _ = journal.open_intent("refex", position, "top_up", {"amount": "1"})
        if position == "cap":
            manager = TxManager(rpc, journal, signer, tx_config(fees=FeePolicy(max_fee_cap=1)))
        await manager.send(TxRequest(intent.id, SINK, b"", 1))
    # A subprocess logging at DEBUG, killed mid-way and restarted.
    _, out1, err1 = finish(driver(node, journal_store, wallet, ["sub"], crash="after_broadcast"))
    _, out2, err2 = finish(driver(node, journal_store, wallet, ["sub"]))
    texts["subprocess output"] = out1 + err1 + out2 + err2
    assert "DEBUG" in err1  # the driver did log verbosely
    texts["logs"] = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    texts["journal rows"] = repr(journal.dump())
    for name, text in texts.items():
        assert_clean(text, wallet.key, name)
    key_bytes = bytes.fromhex(wallet.key[2:])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key_bytes not in data, f"raw key bytes in {path.name}"
            assert_clean(data.decode("latin-1").lower(), wallet.key, path.name)
