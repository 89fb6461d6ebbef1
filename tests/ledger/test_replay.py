"""Replaying a deposit as it stood at a moment or a version: ``replay`` and ``history --as-of``.

The property at the end is the issue's promise: whatever ``show`` printed at a
time, ``replay --as-of`` that time prints again, over random histories.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import MalformedInput, Refused, ShopNotFound
from ledger import DepositLedger
from ledger.faces.reports import state_json
from ledger.store.snapshots import DepositSnapshot
from tests.conftest import FakeClock, examples, fresh_store
from tests.ledger.audited_store import (
    LONG_SHOP,
    SNAPSHOT_VERSION,
    START,
    copy_store,
    run_cli,
    tampering,
    template_store,
)

OPENED_AT = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
"""When the shared ``clock`` fixture starts, and the deposit of these tests opens."""


def record_two_weeks(ledger: DepositLedger, clock: FakeClock) -> dict[str, Any]:
    """Open, pay, deduct, pay again: the state after each step and when it happened."""
    states = {}
    states["opened"] = (clock.now, ledger.open("tea-house", currency="CNY", required="2000", site="CN").state)
    clock.advance(days=1)
    states["paid"] = (clock.now, ledger.pay("tea-house", "2000", channel="alipay", ref="A1").state)
    clock.advance(days=7)
    states["deducted"] = (clock.now, ledger.deduct("tea-house", "2500", reason="fake_listing", case="FL-1").state)
    clock.advance(days=7)
    states["settled"] = (clock.now, ledger.pay("tea-house", "1000", channel="wechat_pay", ref="W1").state)
    return states


# -------------------------------------------------------------- as of a time


def test_replay_as_of_each_moment_gives_the_state_then(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    for moment, state in states.values():
        assert ledger.replay("tea-house", as_of=moment) == state
        assert ledger.replay("tea-house", as_of=moment + timedelta(hours=1)) == state


def test_replay_as_of_a_time_between_events_gives_the_earlier_state(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    paid_at, paid = states["paid"]
    deducted_at, _ = states["deducted"]
    between = paid_at + (deducted_at - paid_at) / 2
    assert ledger.replay("tea-house", as_of=between) == paid
    assert ledger.replay("tea-house", as_of=deducted_at - timedelta(microseconds=1)) == paid


def test_replay_as_of_takes_the_time_in_any_zone(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    paid_at, paid = states["paid"]
    shanghai = (paid_at + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    assert ledger.replay("tea-house", as_of=shanghai) == paid


def test_replay_never_stops_half_way_through_a_payment(ledger: DepositLedger, clock: FakeClock) -> None:
    # Paid and Frozen share their effective time: a moment sees both or neither.
    states = record_two_weeks(ledger, clock)
    paid_at, paid = states["paid"]
    assert (paid.version, paid.paid_minor, paid.frozen_minor) == (3, 200000, 200000)
    assert ledger.replay("tea-house", as_of=paid_at - timedelta(microseconds=1)).paid_minor == 0


def test_replay_as_of_after_the_last_event_is_the_current_state(ledger: DepositLedger, clock: FakeClock) -> None:
    record_two_weeks(ledger, clock)
    assert ledger.replay("tea-house", as_of=clock.now + timedelta(days=365)) == ledger.show("tea-house")


def test_replay_before_the_first_event_finds_no_deposit(ledger: DepositLedger, clock: FakeClock) -> None:
    record_two_weeks(ledger, clock)
    with pytest.raises(ShopNotFound):
        ledger.replay("tea-house", as_of=OPENED_AT - timedelta(microseconds=1))
    with pytest.raises(ShopNotFound):
        ledger.history("tea-house", as_of=OPENED_AT - timedelta(days=1))


def test_replay_of_an_unknown_shop_finds_no_deposit(ledger: DepositLedger) -> None:
    with pytest.raises(ShopNotFound):
        ledger.replay("nobody", as_of=OPENED_AT)
    with pytest.raises(ShopNotFound):
        ledger.replay("nobody", version=1)


@pytest.mark.parametrize("moment", ["yesterday", "2026-03-05T09:00:00", "2026-13-05T09:00:00Z", ""])
def test_replay_refuses_a_malformed_time(ledger: DepositLedger, clock: FakeClock, moment: str) -> None:
    record_two_weeks(ledger, clock)
    with pytest.raises(MalformedInput):
        ledger.replay("tea-house", as_of=moment)
    with pytest.raises(MalformedInput):
        ledger.history("tea-house", as_of=moment)


# -------------------------------------------------------------- at a version


def test_replay_at_each_version_follows_the_history(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    for _, state in states.values():
        assert ledger.replay("tea-house", version=state.version) == state
    # Half way through the first payment: received, not yet frozen.
    half_paid = ledger.replay("tea-house", version=2)
    assert (half_paid.version, half_paid.paid_minor, half_paid.frozen_minor) == (2, 200000, 0)


def test_replay_with_a_version_and_a_time_stops_at_the_earlier(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    paid_at, paid = states["paid"]
    _, opened = states["opened"]
    assert ledger.replay("tea-house", as_of=paid_at, version=99) == paid
    assert ledger.replay("tea-house", as_of=clock.now, version=paid.version) == paid
    assert ledger.replay("tea-house", as_of=paid_at, version=1) == opened


@pytest.mark.parametrize("version", [0, -1])
def test_replay_at_version_zero_or_below_is_malformed(ledger: DepositLedger, clock: FakeClock, version: int) -> None:
    record_two_weeks(ledger, clock)
    with pytest.raises(MalformedInput):
        ledger.replay("tea-house", version=version)


def test_replay_beyond_the_last_version_is_refused_not_answered_with_the_last(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    states = record_two_weeks(ledger, clock)
    last = max(state.version for _, state in states.values())
    with pytest.raises(Refused, match=f"has {last} events, not {last + 1}"):
        ledger.replay("tea-house", version=last + 1)


# --------------------------------------------------------------- history


def test_history_as_of_lists_the_events_effective_by_then(ledger: DepositLedger, clock: FakeClock) -> None:
    states = record_two_weeks(ledger, clock)
    everything = ledger.history("tea-house")
    for moment, state in states.values():
        events = ledger.history("tea-house", as_of=moment)
        assert events == everything[: state.version]
        assert all(event.effective_at <= moment for event in events)


# ------------------------------------------------------------ command line


def test_the_cli_replays_and_lists_as_of_a_time(
    store_url: str, ledger: DepositLedger, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    states = record_two_weeks(ledger, clock)
    db = store_url
    paid_at, paid = states["paid"]
    moment = paid_at.isoformat()

    replayed = run_cli(capsys, "--db", db, "replay", "tea-house", "--as-of", moment, "--json")
    assert (replayed.code, replayed.err) == (0, "")
    data = json.loads(replayed.out)
    assert data == state_json(paid)
    assert (data["version"], data["paid"], data["frozen"], data["status"]) == (3, "2000.00", "2000.00", "active")

    by_version = run_cli(capsys, "--db", db, "replay", "tea-house", "--version", "3", "--json")
    assert json.loads(by_version.out) == data

    listed = run_cli(capsys, "--db", db, "history", "tea-house", "--as-of", moment, "--json")
    assert listed.code == 0
    assert [entry["type"] for entry in json.loads(listed.out)] == ["Opened", "Paid", "Frozen"]

    table = run_cli(capsys, "--db", db, "replay", "tea-house", "--as-of", moment)
    assert table.code == 0 and "as of" in table.out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["replay", "tea-house", "--as-of", "2026-03-04T00:00:00Z"], 1, id="replay-before-first-event"),
        pytest.param(["history", "tea-house", "--as-of", "2026-03-04T00:00:00Z"], 1, id="history-before-first-event"),
        pytest.param(["replay", "nobody", "--as-of", "2026-03-06T00:00:00Z"], 1, id="unknown-shop"),
        pytest.param(["replay", "tea-house", "--version", "0"], 2, id="version-0"),
        pytest.param(["replay", "tea-house", "--version", "-3"], 2, id="negative-version"),
        pytest.param(["replay", "tea-house", "--version", "two"], 2, id="version-not-a-number"),
        pytest.param(["replay", "tea-house"], 2, id="neither-time-nor-version"),
        pytest.param(["replay", "tea-house", "--as-of", "2026-03-06T00:00:00"], 2, id="time-without-zone"),
        pytest.param(["history", "tea-house", "--as-of", "soon"], 2, id="history-malformed-time"),
    ],
)
def test_the_cli_refuses_replays_it_cannot_answer(
    store_url: str,
    ledger: DepositLedger,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
) -> None:
    record_two_weeks(ledger, clock)
    outcome = run_cli(capsys, "--db", store_url, *args, "--json")
    assert outcome.code == code
    assert outcome.out == ""
    assert len(outcome.err_lines) == 1


# -------------------------------------------------------------- snapshots


@pytest.fixture
def long_store(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(template_store(tmp_path_factory), tmp_path / "deposits.db")


def replays(path: Path, versions: list[int]) -> tuple[list[Any], list[Any], list[int]]:
    """The long shop replayed at each version and as of each event's time, and the snapshots loaded."""
    ledger = DepositLedger(str(path), actor="auditor", clock=FakeClock(START))
    loaded: list[int] = []
    store = ledger.repository.snapshot_store
    assert store is not None
    original_get = store.get

    def spying_get(*args: Any, **kwargs: Any) -> Any:
        found = list(original_get(*args, **kwargs))
        loaded.extend(snapshot.originator_version for snapshot in found if isinstance(snapshot, DepositSnapshot))
        return found

    store.get = spying_get  # type: ignore[method-assign]
    try:
        history = ledger.history(LONG_SHOP)
        at_versions = [ledger.replay(LONG_SHOP, version=version) for version in versions]
        at_times = [ledger.replay(LONG_SHOP, as_of=history[version - 1].effective_at) for version in versions]
    finally:
        ledger.close()
    return at_versions, at_times, loaded


def test_replay_from_a_snapshot_equals_replay_from_the_events_alone(long_store: Path) -> None:
    versions = [1, 150, SNAPSHOT_VERSION - 1, SNAPSHOT_VERSION, SNAPSHOT_VERSION + 1, 204]
    with_snapshots, with_snapshots_as_of, loaded = replays(long_store, versions)
    # The replays at and after the snapshot's version started from it.
    assert loaded.count(SNAPSHOT_VERSION) >= 3

    with tampering(long_store) as db:
        db.execute("DELETE FROM stored_snapshots")
    from_events, from_events_as_of, loaded_after = replays(long_store, versions)
    assert loaded_after == []

    assert with_snapshots == from_events
    assert with_snapshots_as_of == from_events_as_of
    assert [state.version for state in from_events] == versions
    assert from_events_as_of[-1].version == 204


# ------------------------------------------------------------- the property

SHOPS = ("tea-house", "kimono-house")
AMOUNTS = st.integers(min_value=1, max_value=3000).map(str)

commands = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(SHOPS), st.sampled_from(["CNY", "JPY"]), AMOUNTS),
    st.tuples(
        st.just("pay"),
        st.sampled_from(SHOPS),
        AMOUNTS,
        st.sampled_from(["alipay", "wechat_pay"]),
        st.sampled_from(["T1", "T2", "T3"]),
    ),
    st.tuples(
        st.just("deduct"),
        st.sampled_from(SHOPS),
        AMOUNTS,
        st.sampled_from(["fake_listing", "other"]),
        st.sampled_from(["C1", "C2"]),
    ),
    st.tuples(st.just("close"), st.sampled_from(SHOPS)),
    st.tuples(st.just("refund"), st.sampled_from(SHOPS)),
    st.tuples(st.just("force_close"), st.sampled_from(SHOPS)),
)
pauses = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3))


def run_command(ledger: DepositLedger, command: tuple[Any, ...]) -> None:
    name, shop, *args = command
    if name == "open":
        ledger.open(shop, currency=args[0], required=args[1])
    elif name == "pay":
        ledger.pay(shop, args[0], channel=args[1], ref=args[2])
    elif name == "deduct":
        ledger.deduct(shop, args[0], reason=args[1], case=args[2])
    elif name == "close":
        ledger.close_shop(shop)
    elif name == "refund":
        ledger.refund(shop)
    else:
        ledger.force_close(shop, reason="repeated violations")


def test_replay_as_of_any_moment_equals_what_show_printed_then(backend: str) -> None:
    @settings(max_examples=examples(backend, 25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=st.lists(st.tuples(pauses, commands), min_size=1, max_size=20))
    def replays_agree(steps: list[tuple[timedelta, tuple[Any, ...]]]) -> None:
        clock = FakeClock(OPENED_AT)
        seen: list[tuple[datetime, str, Any]] = []
        with fresh_store(backend) as url:
            ledger = DepositLedger(url, actor="risk-ops", clock=clock, settlement_window=timedelta(days=2))
            try:
                for pause, command in steps:
                    clock.now += pause
                    # A refused command writes nothing; the state after it is still worth checking.
                    with contextlib.suppress(Refused):
                        run_command(ledger, command)
                    for shop in SHOPS:
                        try:
                            seen.append((clock.now, shop, ledger.show(shop)))
                        except ShopNotFound:
                            seen.append((clock.now, shop, None))
                for moment, shop, state in seen:
                    if state is None:
                        with pytest.raises(ShopNotFound):
                            ledger.replay(shop, as_of=moment)
                    else:
                        assert ledger.replay(shop, as_of=moment) == state
                        assert ledger.replay(shop, version=state.version) == state
                        assert len(ledger.history(shop, as_of=moment)) == state.version
            finally:
                ledger.close()

    replays_agree()
