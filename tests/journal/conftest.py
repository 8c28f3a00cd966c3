"""The journal's shared suite: each test gets a journal on SQLite and one on Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keeper.journal import Journal


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


# opens another connection to the test's journal (keyword arguments go to Journal)
Opener = Callable[..., Journal]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def open_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[Journal] = []
    if request.param == "sqlite":
        target: Any = tmp_path / "j.sqlite"
        password = None
    else:
        target = request.getfixturevalue("postgres_url")
        password = request.getfixturevalue("postgres").password

    def make(**kw: Any) -> Journal:
        if password is not None:
            kw.setdefault("password", password)
        j = Journal(target, **kw)
        opened.append(j)
        return j

    yield make
    for j in opened:
        j.close()


@pytest.fixture
def journal(open_journal: Opener, clock: Clock) -> Journal:
    return open_journal(clock_ms=clock)
