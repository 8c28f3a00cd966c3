"""The journal and the lease in the config: a SQLite file or a postgresql:// URL, the
password's source, the [leader] section."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.config import ConfigError, LeaderConfig, describe, load, parse
from keeper.journal import PostgresTarget

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write_config(tmp_path: Path, *, journal: str, password_file: str | None = None) -> Path:
    """examples/devnet.toml with another keeper.journal (and its password file)."""
    text = (EXAMPLES / "devnet.toml").read_text()
    data = tomllib.loads(text)
    lines = [f'journal = "{journal}"']
    if password_file is not None:
        lines.append(f'journal_password_file = "{password_file}"')
    old = data["keeper"].get("journal")
    if old is not None:
        text = text.replace(f'journal = "{old}"', "\n".join(lines))
    else:
        text = text.replace("[keeper]", "[keeper]\n" + "\n".join(lines))
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def data_with(**keeper: Any) -> dict[str, Any]:
    data = tomllib.loads((EXAMPLES / "devnet.toml").read_text())
    data["keeper"].update(keeper)
    return data


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse(data, environ={}, base_dir=EXAMPLES)
    return {p.key: p.message for p in info.value.problems}


def test_sqlite_by_default_without_a_lease() -> None:
    config = parse(data_with(), environ={}, base_dir=EXAMPLES)
    assert isinstance(config.journal, Path)
    assert config.leader is None


def test_a_postgres_journal_has_a_lease_by_default(tmp_path: Path) -> None:
    config = load(
        write_config(tmp_path, journal="postgresql://keeper@db:5432/k", password_file="pw")
    )
    assert config.journal == PostgresTarget(
        "postgresql://keeper@db:5432/k", password_file=tmp_path / "pw"
    )
    assert config.leader == LeaderConfig(lease_ms=3000, lease_blocks=None)
    assert "journal: postgresql://keeper@db:5432/k" in list(describe(config))


def test_leader_settings() -> None:
    data = data_with()
    data["leader"] = {"enabled": True, "lease_seconds": "1.5", "lease_blocks": 3}
    config = parse(data, environ={}, base_dir=EXAMPLES)
    assert config.leader == LeaderConfig(lease_ms=1500, lease_blocks=3)
    assert "leader lease: 1.5s or 3 blocks" in list(describe(config))
    data["leader"] = {"enabled": False}
    assert parse(data, environ={}, base_dir=EXAMPLES).leader is None


def test_bad_journal_and_leader_settings_name_their_keys() -> None:
    found = problems(data_with(journal="postgresql://keeper:pw123@db/k"))
    assert "journal_password_env" in found["keeper.journal"]
    assert "pw123" not in found["keeper.journal"]
    found = problems(data_with(journal="j.sqlite", journal_password_env="X"))
    assert found == {
        "keeper.journal_password_env": "only for a Postgres journal (a postgresql:// URL)"
    }
    found = problems(
        data_with(
            journal="postgresql://k@db/k", journal_password_env="X", journal_password_file="f"
        )
    )
    assert "not both" in found["keeper.journal_password_env"]
    data = data_with()
    data["leader"] = {"lease_seconds": 2.5, "lease_blocks": 0, "lease": 1}
    found = problems(data)
    assert set(found) == {"leader.lease_seconds", "leader.lease_blocks", "leader.lease"}
    data["leader"] = {"lease_seconds": "0.01"}
    assert "between 0.2 and 600" in problems(data)["leader.lease_seconds"]
    assert Decimal("0.2")  # the floor written in the message


def test_a_dry_run_does_not_join_the_replicas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from keeper.cli import main  # noqa: PLC0415

    config = write_config(tmp_path, journal="postgresql://keeper@127.0.0.1:1/k", password_file="pw")
    assert main(["run", "--config", str(config), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "keeper run: cannot start: a keeper that does not send (dry run" in err
