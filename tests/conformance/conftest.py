"""Fixtures for the GMX SDK conformance tests, and a summary of what they measured."""

from __future__ import annotations

import pytest

from tests.conformance.gmx_sdk import SUMMARY, Sdk, SdkDump, load_dump, require_sdk


@pytest.fixture(scope="session")
def gmx_sdk() -> Sdk:
    """The installed SDK at the pinned version (skips without one, fails under CI)."""
    return require_sdk()


@pytest.fixture(scope="session")
def sdk_dump(gmx_sdk: Sdk) -> SdkDump:
    """The SDK's ABIs and contracts config, read by one node run per session."""
    return load_dump(gmx_sdk)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARY:
        return
    terminalreporter.section("GMX SDK conformance")
    for title, lines in SUMMARY.items():
        terminalreporter.write_line(title)
        for line in lines:
            terminalreporter.write_line(f"  {line}")
