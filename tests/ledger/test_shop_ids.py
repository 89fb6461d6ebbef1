"""Shop ids: letters of any script, one spelling per shop (NFC), bounded in characters and in bytes."""

from __future__ import annotations

import io
import json
import unicodedata

import pytest

from domain import MalformedInput, deposit_id
from domain.events import SHOP_ID_MAX_BYTES, SHOP_ID_MAX_CHARS
from ledger import DepositLedger
from ledger.store.urls import Store
from tests.conftest import fetch_all, writes_nothing

LONGEST_IN_BYTES = "é" * SHOP_ID_MAX_CHARS  # 64 characters, 128 bytes: at both limits at once
LONGEST_CJK = "铺" * (SHOP_ID_MAX_BYTES // 3)  # 42 characters, 126 bytes

ACCEPTED = ["杭州茶叶铺", "दुकान-7", "Ελληνικά_1", "東京.shop:jp", "متجر", "tea-house", LONGEST_IN_BYTES, LONGEST_CJK]


@pytest.mark.parametrize("shop", ACCEPTED)
def test_a_shop_id_in_any_script_is_stored_shown_and_exported_as_given(
    ledger: DepositLedger, store: Store, shop: str
) -> None:
    ledger.open(shop, currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    ledger.pay(shop, "100", channel="alipay", ref="A1", at="2025-01-02T00:00:00Z")

    assert ledger.show(shop).shop_id == shop
    assert ledger.balance(shop).frozen_minor == 10000
    assert [state.shop_id for state in ledger.shops()] == [shop]
    assert {row.shop_id for row in ledger.audit(shop)} == {shop}
    assert fetch_all(store, "SELECT shop_id FROM deposit_balances") == [(shop,)]
    exported = io.StringIO()
    ledger.auditor().export_audit(exported, file_format="jsonl")
    assert {json.loads(line)["shop_id"] for line in exported.getvalue().splitlines()} == {shop}
    assert ledger.auditor().verify().ok


def test_the_decomposed_and_the_composed_spelling_are_the_same_shop(ledger: DepositLedger) -> None:
    composed, decomposed = "café-東京", unicodedata.normalize("NFD", "café-東京")
    assert composed != decomposed

    ledger.open(decomposed, currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    ledger.pay(composed, "60", channel="alipay", ref="A1", at="2025-01-02T00:00:00Z")
    ledger.pay(decomposed, "40", channel="alipay", ref="A2", at="2025-01-03T00:00:00Z")

    assert ledger.show(decomposed) == ledger.show(composed)
    assert (ledger.show(composed).shop_id, ledger.show(composed).frozen_minor) == (composed, 10000)
    assert ledger.deposit(decomposed).id == deposit_id(composed)


@pytest.mark.parametrize(
    "shop",
    [
        "",
        "tea house",  # whitespace
        "tea\u3000house",  # ideographic space
        "tea\thouse",
        "tea\x00",
        "tea\x85house",  # a C1 control
        "tea\u202ehouse",  # right-to-left override
        "tea\u200bhouse",  # zero-width space
        "tea\ufeff",
        "tea🍵",  # a symbol, not a letter
        "-tea",
        "\u0301tea",  # a combining mark cannot start an id
        "a" * (SHOP_ID_MAX_CHARS + 1),
        "铺" * (SHOP_ID_MAX_BYTES // 3 + 1),  # 43 characters, 129 bytes
    ],
)
def test_whitespace_controls_symbols_and_overlong_ids_are_malformed(ledger: DepositLedger, shop: str) -> None:
    with writes_nothing(ledger), pytest.raises(MalformedInput, match=r"shop id .* must be 1-64 letters of any script"):
        ledger.open(shop, currency="CNY", required="100", at="2025-01-01T00:00:00Z")
