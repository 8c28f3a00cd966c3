"""abis/ must be exactly what a fresh build of contracts/ exports."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _forge() -> str | None:
    local = ROOT / ".tools" / "bin" / "forge"
    return str(local) if local.exists() else shutil.which("forge")


def _export_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "export_abis", ROOT / "scripts" / "export_abis.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_abis_match_a_fresh_build(tmp_path: Path) -> None:
    forge = _forge()
    if forge is None:
        pytest.skip("forge is not installed: run scripts/bootstrap")
    out = tmp_path / "out"
    build = subprocess.run(
        [
            forge,
            "build",
            "--quiet",
            "--skip",
            "test",
            "--skip",
            "script",
            "--out",
            str(out),
            "--cache-path",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT / "contracts",
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr + build.stdout
    want = _export_module().exported(out_dir=out)
    have = {p.name: p.read_text() for p in (ROOT / "abis").glob("*.json")}
    assert want, "the build exported no contracts"
    differ = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
    assert not differ, f"abis differs from the build in {differ}: run scripts/export_abis.py"
