"""Write abis/<Contract>.json from the forge build of contracts/src.

Usage: python scripts/export_abis.py [--check]
  --check  compare instead of writing; exit 1 and name the files that differ.
Run `forge build` in contracts/ first (scripts/test does).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# A file that declares only types (structs, enums, errors) produces no artifact.
_DECLARES_CONTRACT = re.compile(r"^\s*(abstract\s+)?(contract|interface|library)\s+\w+", re.M)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "contracts" / "src"
OUT = ROOT / "contracts" / "out"
ABIS = ROOT / "abis"


def exported(out_dir: Path = OUT, src_dir: Path = SRC) -> dict[str, str]:
    """File name -> JSON text for every contract and interface defined under src_dir."""
    files: dict[str, str] = {}
    for sol in sorted(src_dir.rglob("*.sol")):
        build_dir = out_dir / sol.name
        if not _DECLARES_CONTRACT.search(sol.read_text()):
            continue
        if not build_dir.is_dir():
            raise FileNotFoundError(f"{build_dir} is missing: run `forge build` in contracts/")
        for artifact in sorted(build_dir.glob("*.json")):
            data = json.loads(artifact.read_text())
            name = artifact.stem
            source = data.get("ast", {}).get("absolutePath") or data.get("metadata", {}).get(
                "settings", {}
            ).get("compilationTarget", {})
            # Artifacts named after a file hold the contracts of that file only; skip the
            # ones forge emits for contracts imported from elsewhere (same file name).
            if isinstance(source, str) and not source.startswith("src/"):
                continue
            doc = {
                "contractName": name,
                "sourceName": str(sol.relative_to(ROOT / "contracts")),
                "abi": data["abi"],
                "bytecode": data["bytecode"]["object"],
            }
            files[f"{name}.json"] = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    want = exported()
    have = {p.name: p.read_text() for p in ABIS.glob("*.json")}
    if args.check:
        differ = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
        for name in differ:
            print(f"abis/{name} differs from the build", file=sys.stderr)
        if differ:
            print("run: python scripts/export_abis.py", file=sys.stderr)
        return 1 if differ else 0
    for name in have.keys() - want.keys():
        (ABIS / name).unlink()
    for name, text in want.items():
        (ABIS / name).write_text(text)
    print(f"wrote {len(want)} files to abis")
    return 0


if __name__ == "__main__":
    sys.exit(main())
