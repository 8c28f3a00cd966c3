"""Each chain helper of keeper.testing on a real Anvil node: accounts, ETH and ERC-20 balances
(plain, Vyper-ordered, packed and namespaced layouts), price feeds, mining and time."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address

from keeper.testing import helpers
from keeper.testing.anvil import Anvil, AnvilError
from keeper.testing.devnet import Devnet, dev_account
from keeper.testing.fixed_feed import RUNTIME, SOURCE
from keeper.testing.helpers import Chain, ChainHelperError, TokenSlotError
from tests.integration.testing import tokens
from tests.integration.testing.solc import find_solc, runtime_code

pytestmark = pytest.mark.integration

DEPLOYER = dev_account(0).address
VYPER = "0x00000000000000000000000000000000000070c1"
PACKED = "0x00000000000000000000000000000000000070c2"
NAMESPACED = "0x00000000000000000000000000000000000070c3"
SHARES = "0x00000000000000000000000000000000000070c4"


def fresh_address() -> str:
    return str(Account.from_key(os.urandom(32)).address)


def call(chain: Chain, to: str, signature: str, types: list[str], args: list[object]) -> None:
    chain.send_as(DEPLOYER, to, helpers._calldata(signature, types, args), what=signature)


def put_token(chain: Chain, address: str, code: str, holder: str, amount: int) -> None:
    chain.set_code(address, code)
    call(chain, address, "mint(address,uint256)", ["address", "uint256"], [holder, amount])


# -- accounts ------------------------------------------------------------------------------------


def test_impersonation_sends_from_an_account_without_its_key(chain: Chain) -> None:
    who = fresh_address()
    chain.set_balance(who, 10**18)
    assert chain.eth_balance(who) == 10**18
    tx = {"from": who, "to": DEPLOYER, "value": hex(1000)}
    with pytest.raises(AnvilError):
        chain.rpc("eth_sendTransaction", tx)
    with chain.impersonating(who) as address:
        assert address == to_checksum_address(who)
        tx_hash = chain.rpc("eth_sendTransaction", tx)
    chain.wait_for_receipt(tx_hash)
    assert chain.eth_balance(who) < 10**18 - 1000
    with pytest.raises(AnvilError):
        chain.rpc("eth_sendTransaction", tx)


def test_send_as_impersonates_for_one_call_and_names_a_revert(devnet: Devnet, chain: Chain) -> None:
    who = fresh_address()
    chain.set_balance(who, 10**18)
    usdc = devnet.deployment.usdc
    data = helpers._calldata("mint(address,uint256)", ["address", "uint256"], [who, 5])
    tx_hash = chain.send_as(who, usdc, data, what="mint")
    assert chain.rpc("eth_getTransactionReceipt", tx_hash)["from"] == who.lower()
    assert chain.token_balance(usdc, who) == 5
    with pytest.raises(AnvilError):  # not left impersonated
        chain.rpc("eth_sendTransaction", {"from": who, "to": who})
    transfer = helpers._calldata("transfer(address,uint256)", ["address", "uint256"], [usdc, 6])
    with pytest.raises(ChainHelperError, match=r"transfer from 0x.* would revert"):
        chain.send_as(who, usdc, transfer, what="transfer")


def test_restore_stops_impersonations_and_puts_automine_back(chain: Chain) -> None:
    who = chain.impersonate(fresh_address())
    chain.set_balance(who, 10**18)
    chain.set_automine(False)
    chain.restore()
    assert chain.automine_enabled()
    with pytest.raises(AnvilError):
        chain.rpc("eth_sendTransaction", {"from": who, "to": who})


# -- ERC-20 balances -----------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [True, False])
def test_the_slot_of_a_solidity_mapping_is_found_and_written(
    devnet: Devnet, chain: Chain, trace: bool
) -> None:
    usdc, trader = devnet.deployment.usdc, devnet.deployment.trader
    found = chain.find_balance_slot(usdc, trader, trace=trace)
    assert (found.layout, found.mapping_slot) == ("mapping", 1)  # after totalSupply
    supply = devnet.usdc.functions.totalSupply().call()
    lp_before = devnet.usdc_balance(devnet.deployment.lp)
    who = fresh_address()
    written = chain.set_token_balance(usdc, who, 123_456_789)
    assert written.key != found.key
    assert written.account == to_checksum_address(who)
    assert devnet.usdc_balance(who) == 123_456_789
    chain.set_token_balance(usdc, trader, 0)
    assert devnet.usdc_balance(trader) == 0
    assert devnet.usdc_balance(devnet.deployment.lp) == lp_before
    assert devnet.usdc.functions.totalSupply().call() == supply  # not adjusted


def test_a_vyper_ordered_slot_is_found_without_tracing(chain: Chain) -> None:
    holder = fresh_address()
    put_token(chain, VYPER, tokens.VYPER_ORDER, holder, 77)
    found = chain.find_balance_slot(VYPER, holder, trace=False)
    assert (found.layout, found.mapping_slot) == ("vyper", 7)
    chain.set_token_balance(VYPER, holder, 10**30)
    assert chain.token_balance(VYPER, holder) == 10**30


def test_a_balance_packed_with_a_blacklist_bit_keeps_the_bit(chain: Chain) -> None:
    holder = fresh_address()
    put_token(chain, PACKED, tokens.PACKED, holder, 500)
    call(chain, PACKED, "blacklist(address)", ["address"], [holder])
    word = chain.get_storage(PACKED, chain.find_balance_slot(PACKED, holder).key)
    assert word == (1 << 255) | 500  # the balance shares its word with the flag
    found = chain.set_token_balance(PACKED, holder, 10**12)
    assert (found.layout, found.mapping_slot) == ("mapping", 9)
    assert chain.token_balance(PACKED, holder) == 10**12
    assert helpers._view(chain.url, PACKED, "isBlacklisted(address)", ["bool"], ("address", holder))
    with pytest.raises(TokenSlotError, match="does not fit"):
        chain.set_token_balance(PACKED, holder, 1 << 255)
    other = fresh_address()
    with pytest.raises(TokenSlotError, match="read back 0, not"):
        chain.set_token_balance(PACKED, other, 1 << 255)  # would set the flag instead
    assert not helpers._view(
        chain.url, PACKED, "isBlacklisted(address)", ["bool"], ("address", other)
    )
    assert chain.token_balance(PACKED, holder) == 10**12


def test_a_namespaced_slot_is_found_by_tracing_balance_of(chain: Chain) -> None:
    holder = fresh_address()
    put_token(chain, NAMESPACED, tokens.NAMESPACED, holder, 1)
    found = chain.find_balance_slot(NAMESPACED, holder)
    assert (found.layout, found.mapping_slot) == ("traced", None)
    chain.set_token_balance(NAMESPACED, holder, 42)
    assert chain.token_balance(NAMESPACED, holder) == 42
    with pytest.raises(TokenSlotError):
        chain.find_balance_slot(NAMESPACED, holder, trace=False, max_slot=8)


def test_a_computed_balance_is_refused_with_the_token_named(chain: Chain) -> None:
    holder = fresh_address()
    put_token(chain, SHARES, tokens.SHARES, holder, 10)
    assert chain.token_balance(SHARES, holder) == 30
    with pytest.raises(TokenSlotError) as info:
        chain.set_token_balance(SHARES, holder, 99)
    message = str(info.value)
    assert to_checksum_address(SHARES) in message
    assert "no storage slot" in message
    assert "slots 0..64" in message
    assert chain.token_balance(SHARES, holder) == 30


def test_the_symbol_names_the_token_when_it_has_one(devnet: Devnet, chain: Chain) -> None:
    with pytest.raises(TokenSlotError, match=r"USDC \(0x"):
        chain.find_balance_slot(devnet.deployment.usdc, fresh_address(), trace=False, max_slot=0)


# -- price feeds ---------------------------------------------------------------------------------


def test_a_devnet_feed_is_set_through_its_oracle(devnet: Devnet, chain: Chain) -> None:
    feed = devnet.deployment.feeds["ETH"]
    before = chain.feed_round(feed)
    assert chain.set_feed_price(feed, "1234.5") == "oracle"
    after = chain.feed_round(feed)
    assert after.round_id == before.round_id + 1
    assert devnet.price("ETH") == Decimal("1234.5")
    assert after.updated_at == chain.latest_timestamp()


def test_a_replaced_feed_answers_fresh_and_keeps_decimals_and_description(
    devnet: Devnet, chain: Chain
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    feed = devnet.deployment.feeds["ETH"]
    before = chain.feed_round(feed)
    chain.advance_time(3_600)
    assert chain.set_feed_price(feed, "1805", method="replace") == "replace"
    assert chain.get_code(feed) == helpers.FIXED_FEED_CODE
    got = chain.feed_round(feed)
    assert (got.round_id, got.answer) == (before.round_id + 1, 1805 * 10**8)
    assert got.updated_at == got.started_at == chain.latest_timestamp() > before.updated_at
    assert devnet.feed("ETH").functions.decimals().call() == 8
    assert devnet.feed("ETH").functions.description().call() == "ETH / USD"
    assert devnet.is_liquidatable(key)  # the exchange reads the new answer
    # replacing again moves to the next round; the oracle way is gone with the old code
    assert chain.set_feed_answer(feed, 1700 * 10**8) == "replace"
    assert chain.feed_round(feed).round_id == before.round_id + 2
    with pytest.raises(ChainHelperError, match="no oracle"):
        chain.set_feed_answer(feed, 1, method="oracle")


def test_a_feed_can_be_put_anywhere_with_its_own_decimals(chain: Chain) -> None:
    feed = fresh_address()
    description = "a long description, more than thirty-one bytes"
    got = chain.replace_feed(
        feed, -5 * 10**17, updated_at=1_000, decimals=18, description=description
    )
    assert (got.round_id, got.answer, got.updated_at) == (1, -5 * 10**17, 1_000)
    assert helpers.feed_decimals(chain.url, feed) == 18
    assert helpers._view(chain.url, feed, "description()", ["string"]) == description
    assert helpers._view(chain.url, feed, "latestAnswer()", ["int256"]) == -5 * 10**17
    round_data = helpers._view(
        chain.url, feed, "getRoundData(uint80)", ["uint80", "int256"], ("uint80", 1)
    )
    assert tuple(round_data) == (1, -5 * 10**17)
    with pytest.raises(AnvilError, match="No data present"):
        helpers._view(chain.url, feed, "getRoundData(uint80)", ["uint80"], ("uint80", 2))
    assert chain.set_feed_price(feed, "0.25", updated_at=2_000) == "replace"
    assert chain.feed_round(feed).answer == 25 * 10**16
    with pytest.raises(ValueError, match="decimals"):
        chain.set_feed_price(feed, "1e-19")


def test_the_fixed_feed_code_is_its_source_compiled() -> None:
    solc = find_solc()
    if solc is None:
        pytest.skip("solc is not installed (scripts/bootstrap installs it)")
    assert runtime_code(solc, SOURCE)["FixedFeed"] == RUNTIME


def test_the_test_tokens_are_their_source_compiled() -> None:
    solc = find_solc()
    if solc is None:
        pytest.skip("solc is not installed (scripts/bootstrap installs it)")
    built = runtime_code(solc, tokens.SOURCE)
    assert "0x" + built["VyperOrderToken"] == tokens.VYPER_ORDER
    assert "0x" + built["PackedToken"] == tokens.PACKED
    assert "0x" + built["NamespacedToken"] == tokens.NAMESPACED
    assert "0x" + built["SharesToken"] == tokens.SHARES


# -- blocks and time -----------------------------------------------------------------------------


def test_mine_and_move_time(chain: Chain) -> None:
    start = chain.block_number()
    assert chain.mine(5) == start + 5
    t0 = chain.latest_timestamp()
    chain.mine(3, interval_s=12)
    assert chain.latest_timestamp() == t0 + 36
    assert chain.advance_time(1_000) >= t0 + 36 + 1_000
    head = chain.block_number()
    chain.advance_time(50, mine_block=False)
    assert chain.block_number() == head
    chain.set_next_block_timestamp(chain.latest_timestamp() + 10_000)
    chain.mine()
    assert chain.latest_timestamp() >= t0 + 10_000
    with pytest.raises(ValueError, match="blocks"):
        chain.mine(0)


def test_automine_off_holds_transactions_until_a_block_is_mined(chain: Chain) -> None:
    who = DEPLOYER
    with chain.manual_mining():
        assert not chain.automine_enabled()
        head = chain.block_number()
        tx_hash = chain.rpc("eth_sendTransaction", {"from": who, "to": who})
        assert chain.rpc("eth_getTransactionReceipt", tx_hash) is None
        assert chain.block_number() == head
        chain.mine()
        assert chain.rpc("eth_getTransactionReceipt", tx_hash) is not None
    assert chain.automine_enabled()


def test_interval_mining_makes_blocks_by_itself_until_restored(chain: Chain) -> None:
    assert chain.interval_mining() is None
    chain.set_interval_mining(1)
    assert chain.interval_mining() == 1
    assert not chain.automine_enabled()
    head = chain.block_number()
    deadline = time.monotonic() + 5
    while chain.block_number() < head + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert chain.block_number() >= head + 2
    chain.restore()
    assert chain.automine_enabled()
    assert chain.interval_mining() is None
    time.sleep(0.2)
    head = chain.block_number()
    time.sleep(1.5)
    assert chain.block_number() == head


def test_helpers_take_a_url_too(devnet: Devnet, chain: Chain) -> None:
    head = helpers.block_number(devnet.url)
    assert helpers.mine(devnet, 2) == head + 2  # a Devnet has a url
    assert helpers.block_number(devnet.chain) == head + 2


def test_restore_keeps_a_node_that_mines_on_a_timer_doing_so() -> None:
    with Anvil(block_time=1) as node:
        chain = Chain(node)
        chain.set_automine(True)
        assert chain.interval_mining() is None
        chain.restore()
        assert chain.interval_mining() == 1
        assert not chain.automine_enabled()
