"""For any command sequence the views agree with the events: ``balance`` equals ``show``,
the audit trail lists every event once in global order, and a rebuild changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import LedgerError
from ledger import DepositLedger
from tests.conftest import FakeClock, examples, fresh_store
from tests.ledger.stores import connect, view_rows

SHOPS = ("shop-a", "shop-b", "shop-c")

shop = st.sampled_from(SHOPS)
amount = st.integers(min_value=1, max_value=3000).map(str)
Command = tuple[str, str, tuple[str, ...], dict[str, Any]]
"""A ledger method's name, the shop, then the other arguments: data, so failures print readably."""

opening = st.one_of(
    st.fixed_dictionaries(
        {"currency": st.sampled_from(["CNY", "JPY", "USD"]), "required": amount, "site": st.sampled_from([None, "CN"])}
    ),
    # By the shipped policy: the site's currency, the dearest category's requirement.
    st.fixed_dictionaries(
        {"site": st.just("CN"), "categories": st.lists(st.sampled_from(["general", "food", "jewelry"]), min_size=1)}
    ),
)
cases = st.sampled_from(["C1", "C2", "C3", "C4"])
ARGUMENTS: dict[str, tuple[st.SearchStrategy[tuple[str, ...]], st.SearchStrategy[dict[str, Any]]]] = {
    "open": (st.just(()), opening),
    "pay": (
        st.tuples(amount),
        st.fixed_dictionaries(
            {"channel": st.sampled_from(["alipay", "wechat_pay"]), "ref": st.sampled_from([f"R{n}" for n in range(8)])}
        ),
    ),
    "deduct": (
        st.tuples(amount),
        st.fixed_dictionaries(
            {
                "reason": st.sampled_from(["fake_listing", "order_brushing", "late_shipment", "after_sales_dispute"]),
                "case": st.sampled_from(["C1", "C2", "C3", "C4"]),
                "note": st.sampled_from(["", "see ticket"]),
            }
        ),
    ),
    "deduct_priced": (
        st.just(()),
        st.fixed_dictionaries(
            {
                "reason": st.sampled_from(["fake_listing", "late_shipment"]),
                "case": cases,
                "order_value": st.sampled_from(["80", "250", "3000"]),
            }
        ),
    ),
    "hold": (st.tuples(amount), st.fixed_dictionaries({"case": cases})),
    "release": (st.just(()), st.fixed_dictionaries({"case": cases})),
    "appeal": (st.just(()), st.fixed_dictionaries({"case": cases})),
    "resolve_appeal": (st.just(()), st.fixed_dictionaries({"case": cases, "upheld": st.booleans()})),
    "change_categories": (
        st.just(()),
        st.fixed_dictionaries({"add": st.lists(st.sampled_from(["general", "food", "jewelry"]), max_size=1)}),
    ),
    "refund_excess": (st.just(()), st.just({})),
    "close_shop": (st.just(()), st.just({})),
    "refund": (st.just(()), st.just({})),
    "force_close": (st.just(()), st.just({"reason": "policy breach"})),
}
# Payments and deductions are the common case; the rest opens or ends a deposit, so it comes rarer.
MIX = (
    ("pay",) * 8
    + ("deduct",) * 4
    + ("open", "close_shop", "close_shop", "refund", "refund", "refund", "force_close")
    + ("deduct_priced", "deduct_priced", "hold", "hold", "release", "appeal", "appeal", "resolve_appeal")
    + ("resolve_appeal", "change_categories", "refund_excess")
)
METHODS = {"deduct_priced": "deduct"}
"""Labels of the mix that call another ledger method: a deduction priced by the policy is ``deduct``."""
commands: st.SearchStrategy[Command] = st.sampled_from(MIX).flatmap(
    lambda label: st.tuples(st.just(METHODS.get(label, label)), shop, *ARGUMENTS[label])
)
# Minutes between commands: mostly close together, sometimes past a settlement window.
pauses = st.one_of(st.integers(min_value=0, max_value=120), st.integers(min_value=80 * 1440, max_value=100 * 1440))


def test_views_agree_with_the_events_for_any_command_sequence(backend: str) -> None:
    @settings(max_examples=examples(backend, 25), deadline=None)
    @given(
        openings=st.lists(opening, min_size=len(SHOPS), max_size=len(SHOPS)),
        steps=st.lists(st.tuples(pauses, commands), min_size=10, max_size=40),
    )
    def views_agree(openings: list[dict[str, Any]], steps: list[tuple[int, Command]]) -> None:
        clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
        with fresh_store(backend) as url:
            ledger = DepositLedger(url, actor="hypothesis", clock=clock)
            try:
                for shop_id, kwargs in zip(SHOPS, openings, strict=True):
                    ledger.open(shop_id, **kwargs)
                for minutes, (method, shop_id, args, kwargs) in steps:
                    clock.advance(minutes=minutes)
                    try:
                        getattr(ledger, method)(shop_id, *args, **kwargs)
                    except LedgerError:
                        continue  # Refused: it wrote nothing, which the checks below also cover.
                    assert ledger.balance(shop_id) == ledger.show(shop_id)
                _check(ledger)
            finally:
                ledger.close()

    views_agree()


def _check(ledger: DepositLedger) -> None:
    opened = []
    for shop_id in SHOPS:
        try:
            state = ledger.show(shop_id)
        except LedgerError:
            continue
        opened.append(shop_id)
        assert ledger.balance(shop_id) == state
        history = ledger.history(shop_id)
        audit = ledger.audit(shop_id)
        # Every event once: a refund's channel shares after the first are more rows of the same event.
        assert [(row.type, row.effective_at, row.actor) for row in audit if row.share <= 1] == [
            (event.type_name, event.effective_at, event.actor) for event in history
        ]
        assert audit[-1].frozen_after_minor == state.frozen_minor
    assert [state.shop_id for state in ledger.shops()] == opened

    store = ledger.store
    with connect(store) as connection:
        stored = connection.execute(
            f"SELECT {store.position_column}, topic FROM {store.events_table} ORDER BY {store.position_column}"
        ).fetchall()
        trail = connection.execute(
            "SELECT position, 'ShopDeposit.' || type FROM audit_trail WHERE share <= 1 ORDER BY position"
        ).fetchall()
    assert trail == stored, "every event exactly once, in global order"
    assert {status.name: status.lag for status in ledger.projection_status()} == {"balances": 0, "audit_trail": 0}

    live = view_rows(store)
    for name in ("balances", "audit_trail"):
        ledger.views.rebuild(name)
    assert view_rows(store) == live
