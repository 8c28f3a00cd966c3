"""`keeper run` in subaccount mode on our deployment: the keeper signs with a subaccount key the
trader added through our SubaccountRouter (accounts.delegated), tops up from the trader's wallet
and closes for the trader; it refuses to start for an account that never added it; and `keeper
gmx subaccount` prints the setup (the scenarios of
tests/integration/realgmx/test_realgmx_subaccount_keeper.py, in subaccount_cases.py)."""

from __future__ import annotations

import pytest

from tests.integration.gmx import subaccount_cases as cases
from tests.integration.gmx.subaccount_rig import OurKeeperChain

pytestmark = pytest.mark.integration


def test_keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(
    keeper_chain: OurKeeperChain,
) -> None:
    cases.keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(keeper_chain)


def test_keeper_run_refuses_to_start_for_an_account_that_never_added_it(
    keeper_chain: OurKeeperChain,
) -> None:
    cases.keeper_run_refuses_to_start_for_an_account_that_never_added_it(keeper_chain)


def test_gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(
    keeper_chain: OurKeeperChain,
) -> None:
    cases.gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(keeper_chain)


def test_gmx_subaccount_refuses_bad_arguments(keeper_chain: OurKeeperChain) -> None:
    cases.gmx_subaccount_refuses_bad_arguments(keeper_chain)
