"""Fixtures for the SDK conformance tests (GMX, Gains), and a summary of what they measured."""

from __future__ import annotations

import pytest

from tests.conformance import gains_sdk as gains
from tests.conformance import gmx_sdk as gmx
from tests.conformance.gains_sdk import GainsDump
from tests.conformance.gmx_sdk import SdkDump
from tests.conformance.sdk import SUMMARY, Sdk


@pytest.fixture(scope="session")
def gmx_sdk() -> Sdk:
    """The installed GMX SDK at the pinned version (skips without one, fails under CI)."""
    return gmx.require_sdk()


@pytest.fixture(scope="session")
def sdk_dump(gmx_sdk: Sdk) -> SdkDump:
    """The GMX SDK's ABIs and contracts config, read by one node run per session."""
    return gmx.load_dump(gmx_sdk)


@pytest.fixture(scope="session")
def gains_sdk() -> Sdk:
    """The installed Gains SDK at the pinned version (skips without one, fails under CI)."""
    return gains.require_sdk()


@pytest.fixture(scope="session")
def gains_dump(gains_sdk: Sdk) -> GainsDump:
    """The Gains SDK's diamond ABI and addresses.json, read by one node run per session."""
    return gains.load_dump(gains_sdk)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for section, titles in SUMMARY.items():
        if not titles:
            continue
        terminalreporter.section(section)
        for title, lines in titles.items():
            terminalreporter.write_line(title)
            for line in lines:
                terminalreporter.write_line(f"  {line}")
