"""Compiles Solidity source with the checkout's solc (standard JSON), for the tests that check
embedded runtime code against its source."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def find_solc() -> str | None:
    local = ROOT / ".tools" / "bin" / "solc"
    return str(local) if local.exists() else shutil.which("solc")


def runtime_code(solc: str, source: str) -> dict[str, str]:
    """Contract name -> runtime bytecode (hex, no 0x) of `source`, compiled as the embedded
    code was: optimizer on with 200 runs, evmVersion paris, no metadata."""
    settings = {
        "optimizer": {"enabled": True, "runs": 200},
        "evmVersion": "paris",
        "metadata": {"bytecodeHash": "none", "appendCBOR": False},
        "outputSelection": {"*": {"*": ["evm.deployedBytecode.object"]}},
    }
    request = {
        "language": "Solidity",
        "sources": {"X.sol": {"content": source}},
        "settings": settings,
    }
    done = subprocess.run(
        [solc, "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = json.loads(done.stdout)
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise AssertionError("\n".join(errors))
    return {
        name: c["evm"]["deployedBytecode"]["object"]
        for name, c in out["contracts"]["X.sol"].items()
    }
