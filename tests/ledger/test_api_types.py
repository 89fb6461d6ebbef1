"""The Python API refuses wrong types with ``MalformedInput``: never a raw error, never a silent coercion."""

from __future__ import annotations

import inspect
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import MalformedInput
from ledger import DepositLedger
from tests.conftest import examples, writes_nothing

# Each public method with arguments it accepts; the property replaces one of them by a wrong type.
CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "open": (("new-shop",), {"currency": "CNY", "required": "100", "site": None, "categories": (), "at": None}),
    "pay": (("tea", "10"), {"channel": "alipay", "ref": "A9", "payer": None, "at": None, "channel_time": None}),
    "deduct": (("tea", "1"), {"reason": "other", "case": "C9", "note": "", "order_value": None, "at": None}),
    "hold": (("tea", "1"), {"case": "H9", "note": "", "at": None}),
    "release": (("tea",), {"case": "H1", "note": "", "at": None}),
    "appeal": (("tea",), {"case": "C1", "note": "", "at": None}),
    "resolve_appeal": (("tea",), {"case": "C1", "upheld": True, "note": "", "at": None}),
    "change_categories": (("tea",), {"add": ["food"], "remove": (), "at": None}),
    "apply_policy": (("tea",), {"at": None}),
    "refund_excess": (("tea",), {"at": None}),
    "close_shop": (("tea",), {"at": None}),
    "refund": (("tea",), {"at": None}),
    "force_close": (("tea",), {"reason": "fraud", "at": None}),
    "write_off": (("tea",), {"case": "C1", "reason": "uncollectable", "at": None}),
    "deposit": (("tea",), {}),
    "trade_number_holder": (("alipay", "A1"), {}),
    "show": (("tea",), {}),
    "balance": (("tea",), {}),
    "audit": (("tea",), {"after": (1, 0), "limit": 10}),
    "history": (("tea",), {"as_of": None}),
    "replay": (("tea",), {"as_of": None, "version": 1}),
    "shops": (
        (),
        {
            "status": None,
            "site": None,
            "underfunded": False,
            "overdue": False,
            "owing": False,
            "after": "a",
            "limit": 10,
        },
    ),
    "shops_page": (
        (),
        {
            "order": "shortfall",
            "after": (10, "a"),
            "limit": 10,
            "status": None,
            "site": None,
            "underfunded": False,
            "overdue": False,
            "owing": False,
        },
    ),
    "shop_totals": ((), {"status": None, "site": None, "underfunded": False, "overdue": False, "owing": False}),
    "work_queue": ((), {"limit": 10}),
    "policy_at": (("2025-01-05T00:00:00Z",), {}),
}

for _name, (_args, _kwargs) in CALLS.items():
    if "actor" in inspect.signature(getattr(DepositLedger, _name)).parameters:
        _kwargs["actor"] = None

NOT_INPUT = {
    "close",
    "batch",
    "record_alongside",
    "save",
    "auditor",
    "projection_status",
    "construct_env",
    "construct_mapper",
}
"""Public methods that take no values from a caller (or only the library's)."""

_others = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.just(object()),
)
TEXT = st.one_of(_others, st.decimals(allow_nan=False, allow_infinity=False))
AMOUNT = _others
TIME = st.one_of(_others, st.dates().filter(lambda day: not isinstance(day, datetime)), st.text(max_size=3))
TEXTS = st.one_of(
    st.integers(), st.binary(max_size=8), st.text(min_size=1, max_size=8), st.lists(st.integers(), min_size=1)
)
FLAG = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats())
VERSION = st.one_of(st.floats(), st.text(max_size=3), st.booleans(), st.binary(max_size=3), st.decimals())

KINDS = {
    "shop_id": TEXT,
    "amount": AMOUNT,
    "required": AMOUNT,
    "order_value": AMOUNT,
    "currency": TEXT,
    "site": TEXT,
    "categories": TEXTS,
    "add": TEXTS,
    "remove": TEXTS,
    "at": TIME,
    "channel_time": TIME,
    "trade_no": TEXT,
    "as_of": TIME,
    "channel": TEXT,
    "ref": TEXT,
    "payer": TEXT,
    "reason": TEXT,
    "case": TEXT,
    "note": TEXT,
    "upheld": FLAG,
    "actor": TEXT,
    "version": VERSION,
    "status": TEXT,
    "underfunded": FLAG,
    "overdue": FLAG,
    "owing": FLAG,
    "after": TEXT,
    "limit": VERSION,
    "order": TEXT,
}
"""Values of a wrong type for each parameter, by name."""


def _params(method: Any) -> list[str]:
    return [name for name in inspect.signature(method).parameters if name != "self"]


def test_every_public_method_taking_values_is_covered() -> None:
    public = {
        name
        for name, member in inspect.getmembers(DepositLedger, inspect.isfunction)
        if not name.startswith("_") and member.__qualname__.startswith("DepositLedger.")
    }
    assert public - NOT_INPUT == set(CALLS), "a new public method needs its line in CALLS"
    for name in CALLS:
        assert set(_params(getattr(DepositLedger, name))) <= set(KINDS), f"{name} has a parameter KINDS lacks"


@st.composite
def wrong_calls(draw: st.DrawFn) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    name = draw(st.sampled_from(sorted(CALLS)))
    args, kwargs = CALLS[name]
    names = _params(getattr(DepositLedger, name))
    positional = names[: len(args)]
    target = draw(st.sampled_from(names))
    wrong = draw(KINDS[target])
    if target in positional:
        args = tuple(wrong if slot == target else value for slot, value in zip(positional, args, strict=True))
    else:
        kwargs = {**kwargs, target: wrong}
    return name, target, args, kwargs


@pytest.fixture
def open_shop(ledger: DepositLedger) -> DepositLedger:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    ledger.pay("tea", "100", channel="alipay", ref="A1", at="2025-01-02T00:00:00Z")
    ledger.hold("tea", "10", case="H1", at="2025-01-03T00:00:00Z")
    return ledger


def test_wrong_types_raise_malformed_input_and_write_nothing(open_shop: DepositLedger, backend: str) -> None:
    @settings(
        max_examples=examples(backend, 300),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(call=wrong_calls())
    def wrong_type(call: tuple[str, str, tuple[Any, ...], dict[str, Any]]) -> None:
        name, _target, args, kwargs = call
        with writes_nothing(open_shop), pytest.raises(MalformedInput):
            getattr(open_shop, name)(*args, **kwargs)

    wrong_type()


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("pay", {"ref": b"100"}),
        ("pay", {"amount": 100.0}),
        ("pay", {"amount": 100}),
        ("pay", {"payer": b"tea@alipay"}),
        ("deduct", {"note": b"late"}),
        ("deduct", {"case": 7}),
        ("open", {"categories": "food"}),
        ("open", {"at": date(2025, 1, 1)}),
        ("resolve_appeal", {"upheld": 1}),
        ("replay", {"version": True}),
        ("pay", {"actor": b"risk-ops"}),
    ],
)
def test_values_once_coerced_or_crashing_are_malformed(
    open_shop: DepositLedger, call: str, kwargs: dict[str, Any]
) -> None:
    args, base = CALLS[call]
    kwargs = dict(kwargs)
    if "amount" in kwargs:
        args = (args[0], kwargs.pop("amount"))
    with writes_nothing(open_shop), pytest.raises(MalformedInput):
        getattr(open_shop, call)(*args, **{**base, **kwargs})


def test_decimals_and_aware_datetimes_stay_welcome(open_shop: DepositLedger, clock: Any) -> None:
    result = open_shop.pay("tea", Decimal("5.50"), channel="alipay", ref="A2", at=clock())
    assert result.state.paid_minor == 10550
