"""Tampering with the SQLite file behind the ledger's back: ``verify`` must catch it and name where.

Every test edits a copy of a realistic store with plain SQL, as someone with
access to the database file could, and then checks both faces of ``verify``:
the Python ``Auditor`` (the exact first bad position and the kind of problem)
and ``deposit-ledger verify --json`` (exit 1, one stderr line naming that
position, the JSON report).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from domain import deposit_id
from ledger import DepositLedger
from ledger.store.chain import GENESIS, ChainKey, Checkpoint
from ledger.tools.audit import VerifyReport, parse_checkpoint
from tests.conftest import FakeClock
from tests.ledger.audited_store import (
    LONG_SHOP,
    SNAPSHOT_VERSION,
    START,
    auditor,
    copy_store,
    head,
    newest_version,
    position_of,
    read_event,
    relink_from,
    replace_in_state,
    run_cli,
    scalar,
    set_view_positions,
    store_key,
    tampering,
    template_store,
)

pytestmark = pytest.mark.sqlite_only("edits the SQLite file behind the ledger")

PROBLEM_KEYS = {"position", "shop_id", "kind", "detail"}


@pytest.fixture
def store(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(template_store(tmp_path_factory), tmp_path / "deposits.db")


def event_count(path: Path) -> int:
    return int(scalar(path, "SELECT COUNT(*) FROM stored_events"))


def kinds_at(report: VerifyReport, position: int) -> set[str]:
    return {problem.kind for problem in report.problems if problem.position == position}


def take_checkpoint(path: Path) -> Checkpoint:
    return auditor(path).checkpoint()


def assert_caught(
    path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    first: int,
    kind: str,
    against: Checkpoint | None = None,
) -> VerifyReport:
    """``verify`` reports ``kind`` at ``first``, the first bad position, through the API and the CLI."""
    report = auditor(path).verify(against)
    assert not report.ok
    assert report.first_bad_position() == first, report.problems
    assert report.problems[0].position == first
    assert kind in kinds_at(report, first), report.problems
    assert report.events_checked == event_count(path)

    options = ["--against", against.model_dump_json()] if against is not None else []
    outcome = run_cli(capsys, "--db", str(path), "verify", "--json", *options)
    assert outcome.code == 1
    assert len(outcome.err_lines) == 1, outcome.err
    assert re.search(rf"\bfirst bad position {first}\b", outcome.err_lines[0]), outcome.err
    data = json.loads(outcome.out)
    assert data["ok"] is False
    assert data["events_checked"] == report.events_checked
    assert isinstance(data["problems"], list) and data["problems"]
    assert all(set(problem) == PROBLEM_KEYS for problem in data["problems"])
    assert data["problems"][0]["position"] == first
    assert data["problems"] == [problem.model_dump() for problem in report.problems]
    return report


# --------------------------------------------------------------- untouched


def test_an_untouched_store_verifies_clean(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = auditor(store).verify()
    assert report.ok and report.problems == []
    assert report.events_checked == event_count(store) == head(store)
    assert report.deposits_checked == 6

    outcome = run_cli(capsys, "--db", str(store), "verify", "--json")
    assert (outcome.code, outcome.err) == (0, "")
    data = json.loads(outcome.out)
    assert data["ok"] is True
    assert data["events_checked"] == report.events_checked
    assert data["problems"] == []

    table = run_cli(capsys, "--db", str(store), "verify")
    assert (table.code, table.err) == (0, "")
    assert "clean" in table.out


def test_verify_only_reads_the_store(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An auditor that opened the application would catch the views up, repairing what it checks.
    kimono = position_of(store, "kimono-house", 4)
    with tampering(store) as db:
        db.execute("DELETE FROM audit_trail WHERE position = ?", (kimono,))
        set_view_positions(db, kimono - 1, "audit_trail")
    before = store.read_bytes()
    assert_caught(store, capsys, first=kimono, kind="view_behind")
    assert store.read_bytes() == before


# ------------------------------------------------------------ stored events


@pytest.mark.parametrize(
    ("shop", "version", "old", "new"),
    [
        pytest.param("sneaker-lab", 2, b'"amount_minor":30000', b'"amount_minor":90000', id="amount-digit"),
        pytest.param("tea-house", 4, b'"note":"3 orders', b'"note":"4 orders', id="note-letter"),
        pytest.param("tea-house", 6, b'"actor":"risk-ops"', b'"actor":"risk-opz"', id="newest-event-actor"),
        pytest.param("kimono-house", 1, b'{"effective_at"', b'["effective_at"', id="undecodable"),
        pytest.param(LONG_SHOP, 1, b'"required_minor":100000', b'"required_minor":900000', id="first-event"),
    ],
)
def test_one_changed_byte_of_an_event_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str], shop: str, version: int, old: bytes, new: bytes
) -> None:
    assert len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) == 1
    position = position_of(store, shop, version)
    with tampering(store) as db:
        replace_in_state(db, position, old, new)
        kept = db.execute("SELECT typeof(state) FROM stored_events WHERE rowid = ?", (position,)).fetchone()[0]
    assert kept == "blob"
    report = assert_caught(store, capsys, first=position, kind="chain")
    assert report.problems[0].shop_id == shop


def test_a_byte_changed_with_sql_alone_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # What a DBA would type: splice one byte into the blob with substr and ||, cast back to a blob.
    position = position_of(store, "flash-deals", 4)
    with tampering(store) as db:
        state = read_event(db, position).state
    offset = state.index(b'"amount_collected_minor":150000') + len(b'"amount_collected_minor":')
    with tampering(store) as db:
        db.execute(
            "UPDATE stored_events SET state = CAST(substr(state, 1, ?) || '0' || substr(state, ?) AS BLOB) "
            "WHERE rowid = ?",
            (offset, offset + 2, position),
        )
        edited = read_event(db, position).state
    assert edited == state.replace(b"150000", b"050000")
    assert_caught(store, capsys, first=position, kind="chain")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        pytest.param("originator_version", 99, id="version"),
        pytest.param("topic", "ShopDeposit.Frozen", id="topic"),
        pytest.param("originator_id", deposit_id("ghost-shop").hex, id="deposit"),
    ],
)
def test_an_edited_column_beside_the_state_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str], column: str, value: object
) -> None:
    position = position_of(store, "uk-gadgets", 2)
    with tampering(store) as db:
        db.execute(f"UPDATE stored_events SET {column} = ? WHERE rowid = ?", (value, position))
    assert_caught(store, capsys, first=position, kind="chain")


def test_a_deleted_event_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    position = position_of(store, "kimono-house", 4)
    with tampering(store) as db:
        db.execute("DELETE FROM stored_events WHERE rowid = ?", (position,))
    report = assert_caught(store, capsys, first=position, kind="missing_event")
    # The deposit's later event no longer follows on from its predecessor either.
    assert "replay" in kinds_at(report, position_of(store, "kimono-house", 5))


def test_a_forged_event_appended_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A copy of a real payment, as the deposit's next version, at the next position.
    forged_at = head(store) + 1
    with tampering(store) as db:
        real = read_event(db, position_of(store, "sneaker-lab", 8))
        db.execute(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
            (forged_at, real.originator_id, 11, real.topic, real.state),
        )
    report = assert_caught(store, capsys, first=forged_at, kind="unchained_event")
    # Neither view has applied it: both are behind the log by the forged event.
    assert [problem.detail.split(" view ")[0] for problem in report.problems if problem.kind == "view_behind"] == [
        "the balances",
        "the audit_trail",
    ]


def test_a_forged_event_with_a_forged_link_is_caught_by_the_views(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged_at = head(store) + 1
    with tampering(store) as db:
        real = read_event(db, position_of(store, "sneaker-lab", 8))
        db.execute(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
            (forged_at, real.originator_id, 11, real.topic, real.state),
        )
        relink_from(db, forged_at, store_key(store))
    report = assert_caught(store, capsys, first=forged_at, kind="view_behind")
    assert "chain" not in {problem.kind for problem in report.problems}
    assert len([problem for problem in report.problems if problem.kind == "view_behind"]) == 2


@pytest.mark.parametrize("whole_rows", [True, False], ids=["whole-rows", "states-only"])
def test_two_swapped_rows_are_caught(store: Path, capsys: pytest.CaptureFixture[str], whole_rows: bool) -> None:
    first = position_of(store, "tea-house", 2)
    second = position_of(store, "sneaker-lab", 2)
    with tampering(store) as db:
        one, other = read_event(db, first), read_event(db, second)
        if whole_rows:
            # Park the first row out of the way: (originator_id, originator_version) is unique.
            db.execute("UPDATE stored_events SET originator_id = 'parked' WHERE rowid = ?", (first,))
            for target, source in ((second, one), (first, other)):
                db.execute(
                    "UPDATE stored_events SET originator_id = ?, originator_version = ?, topic = ?, state = ? "
                    "WHERE rowid = ?",
                    (source.originator_id, source.version, source.topic, source.state, target),
                )
        else:
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (other.state, first))
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (one.state, second))
    report = assert_caught(store, capsys, first=first, kind="chain")
    assert "chain" in kinds_at(report, second)


# ---------------------------------------------------------- dropped history


def test_dropped_newest_events_are_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = head(store)
    with tampering(store) as db:
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (last - 3,))
    # The newest event left is a payment whose Frozen was dropped: the command is cut in two.
    report = assert_caught(store, capsys, first=last - 3, kind="unfrozen")
    assert {problem.position for problem in report.problems if problem.kind == "missing_event"} == {
        last - 2,
        last - 1,
        last,
    }
    # The views' tracking records still claim the dropped events.
    assert "truncated" in kinds_at(report, last - 2)


def test_dropped_newest_events_with_their_links_and_trail_are_caught_by_the_balances(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = head(store)
    with tampering(store) as db:
        dropped = [read_event(db, position) for position in range(last - 2, last + 1)]
        # The newest event of three different deposits: each balances row claims one of them.
        assert len({event.originator_id for event in dropped}) == 3
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (last - 3,))
        db.execute("DELETE FROM event_chain WHERE position > ?", (last - 3,))
        db.execute("DELETE FROM audit_trail WHERE position > ?", (last - 3,))
        set_view_positions(db, last - 3)
    report = assert_caught(store, capsys, first=last - 3, kind="unfrozen")
    assert {problem.kind for problem in report.problems} == {"balances", "unfrozen"}
    assert [p.position for p in report.problems if p.kind == "balances"] == [last - 2, last - 1, last]


def drop_newest_and_rebuild_views(path: Path, count: int) -> int:
    """Truncate the history the thorough way: events, links, views rebuilt to agree. The new head."""
    new_head = head(path) - count
    with tampering(path) as db:
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (new_head,))
        db.execute("DELETE FROM event_chain WHERE position > ?", (new_head,))
        set_view_positions(db, new_head)
    ledger = DepositLedger(str(path), actor="intruder", clock=FakeClock(START))
    try:
        for name in list(ledger.views.views):
            ledger.views.rebuild(name)
    finally:
        ledger.close()
    return new_head


def test_a_thoroughly_truncated_store_fails_only_against_an_older_checkpoint(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = take_checkpoint(store)
    new_head = drop_newest_and_rebuild_views(store, 4)  # whole commands
    # Everything left is consistent: without a checkpoint nothing can tell.
    assert auditor(store).verify().ok
    assert take_checkpoint(store).position == new_head

    report = assert_caught(store, capsys, first=before.position, kind="checkpoint", against=before)
    assert [problem.kind for problem in report.problems] == ["checkpoint"]
    assert "truncated" in report.problems[0].detail


def test_a_history_truncated_and_written_anew_fails_against_an_older_checkpoint(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = take_checkpoint(store)
    drop_newest_and_rebuild_views(store, 4)  # whole commands
    # New events up to the old head: the chain is whole again, but it is another chain.
    ledger = DepositLedger(str(store), actor="intruder", clock=FakeClock(START))
    try:
        ledger.open("cover-story", currency="CNY", required="100", at=START)
        ledger.pay("cover-story", "100", channel="alipay", ref="CS-1", at=START)
        ledger.pay("cover-story", "100", channel="alipay", ref="CS-2", at=START)
    finally:
        ledger.close()
    assert head(store) >= before.position
    assert auditor(store).verify().ok

    report = assert_caught(store, capsys, first=before.position, kind="checkpoint", against=before)
    assert "rewritten" in report.problems[0].detail


# ---------------------------------------------------------------- the views


@pytest.mark.parametrize(
    ("statement", "detail"),
    [
        pytest.param(
            "UPDATE deposit_balances SET frozen_minor = frozen_minor + 100 WHERE shop_id = ?", "frozen_minor", id="edit"
        ),
        pytest.param("UPDATE deposit_balances SET status = 'active' WHERE shop_id = ?", "status", id="status"),
        pytest.param("DELETE FROM deposit_balances WHERE shop_id = ?", "no balances row", id="delete"),
    ],
)
def test_an_edited_balances_row_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str], statement: str, detail: str
) -> None:
    newest = position_of(store, "kimono-house", newest_version(store, "kimono-house"))
    with tampering(store) as db:
        db.execute(statement, ("kimono-house",))
    report = assert_caught(store, capsys, first=newest, kind="balances")
    assert report.problems[0].shop_id == "kimono-house"
    assert detail in report.problems[0].detail


def test_a_forged_balances_row_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tampering(store) as db:
        db.execute(
            "INSERT INTO deposit_balances SELECT ?, 'ghost-shop', site, currency, status, phase, required_minor, "
            "paid_minor, unfrozen_minor, frozen_minor, deducted_minor, refunded_minor, forfeited_minor, owed_minor, "
            "shortfall_minor, settlement_due, version, last_effective_at, held_minor, reversed_minor, top_up_due, "
            "policy_version, categories, written_off_minor, position "
            "FROM deposit_balances WHERE shop_id = 'kimono-house'",
            (deposit_id("ghost-shop").hex,),
        )
    newest = position_of(store, "kimono-house", newest_version(store, "kimono-house"))
    report = assert_caught(store, capsys, first=newest, kind="balances")
    assert report.problems[0].shop_id == "ghost-shop"


@pytest.mark.parametrize(
    ("statement", "detail"),
    [
        pytest.param("DELETE FROM audit_trail WHERE position = ?", "no audit-trail row", id="delete"),
        pytest.param(
            "UPDATE audit_trail SET amount_minor = 500 WHERE position = ?", "amount_minor is 500", id="amount"
        ),
        pytest.param("UPDATE audit_trail SET actor = 'someone-else' WHERE position = ?", "someone-else", id="actor"),
    ],
)
def test_an_edited_audit_row_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str], statement: str, detail: str
) -> None:
    position = position_of(store, "kimono-house", 4)
    with tampering(store) as db:
        db.execute(statement, (position,))
    report = assert_caught(store, capsys, first=position, kind="audit_trail")
    assert report.problems[0].shop_id == "kimono-house"
    assert detail in report.problems[0].detail


def test_a_forged_audit_row_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged_at = head(store) + 5
    with tampering(store) as db:
        db.execute(
            "INSERT INTO audit_trail SELECT ?, share, deposit_id, shop_id, type, currency, amount_minor, "
            "frozen_after_minor, "
            "actor, effective_at, recorded_at, channel, ref, reason, case_id, note FROM audit_trail WHERE position = ?",
            (forged_at, position_of(store, "tea-house", 6)),
        )
    assert_caught(store, capsys, first=forged_at, kind="audit_trail")


# -------------------------------------------------------------- snapshots


def snapshot_position(path: Path) -> int:
    return position_of(path, LONG_SHOP, SNAPSHOT_VERSION)


def test_the_store_holds_a_snapshot_to_check(store: Path) -> None:
    assert scalar(store, "SELECT originator_version FROM stored_snapshots") == SNAPSHOT_VERSION


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(b'"frozen_minor":100000', b'"frozen_minor":100001', id="figure"),
        pytest.param(b" MT-0007 ", b" MT-9007 ", id="payment"),
        pytest.param(b'{"shop_id"', b'["shop_id"', id="undecodable"),
    ],
)
def test_an_edited_snapshot_is_caught(store: Path, capsys: pytest.CaptureFixture[str], old: bytes, new: bytes) -> None:
    with tampering(store) as db:
        state = bytes(db.execute("SELECT state FROM stored_snapshots").fetchone()[0])
        assert state.count(old) == 1
        db.execute("UPDATE stored_snapshots SET state = ?", (state.replace(old, new),))
    report = assert_caught(store, capsys, first=snapshot_position(store), kind="snapshot")
    assert report.problems[0].shop_id == LONG_SHOP


def test_a_snapshot_moved_to_another_version_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tampering(store) as db:
        db.execute("UPDATE stored_snapshots SET originator_version = 203")
    assert_caught(store, capsys, first=position_of(store, LONG_SHOP, 203), kind="snapshot")


def test_a_snapshot_of_a_deposit_without_events_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Loading the shop would start from the snapshot: a deposit conjured out of nothing.
    with tampering(store) as db:
        state = bytes(db.execute("SELECT state FROM stored_snapshots").fetchone()[0])
        db.execute(
            "INSERT INTO stored_snapshots SELECT ?, originator_version, topic, ? FROM stored_snapshots",
            (deposit_id("ghost-shop").hex, state.replace(LONG_SHOP.encode(), b"ghost-shop")),
        )
    report = auditor(store).verify()
    assert not report.ok
    assert [(problem.position, problem.kind) for problem in report.problems] == [(None, "snapshot")]
    assert deposit_id("ghost-shop").hex in report.problems[0].detail
    outcome = run_cli(capsys, "--db", str(store), "verify", "--json")
    assert outcome.code == 1
    assert len(outcome.err_lines) == 1 and "snapshot" in outcome.err
    assert json.loads(outcome.out)["problems"] == [problem.model_dump() for problem in report.problems]


def test_deleted_snapshots_are_no_problem(store: Path) -> None:
    # Snapshots are a cache of the events: losing them loses nothing.
    with tampering(store) as db:
        db.execute("DELETE FROM stored_snapshots")
    assert auditor(store).verify().ok


# -------------------------------------------------------------- the chain


def test_an_edited_link_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    position = position_of(store, "kimono-house", 2)
    with tampering(store) as db:
        link = bytes(db.execute("SELECT link FROM event_chain WHERE position = ?", (position,)).fetchone()[0])
        db.execute("UPDATE event_chain SET link = ? WHERE position = ?", (bytes([link[0] ^ 1]) + link[1:], position))
    report = assert_caught(store, capsys, first=position, kind="chain")
    # The next link was made from the true one, so it no longer follows either.
    assert "chain" in kinds_at(report, position + 1)


def test_a_deleted_link_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    position = position_of(store, "kimono-house", 2)
    with tampering(store) as db:
        db.execute("DELETE FROM event_chain WHERE position = ?", (position,))
    assert_caught(store, capsys, first=position, kind="unchained_event")


def test_a_deleted_head_link_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = head(store)
    with tampering(store) as db:
        db.execute("DELETE FROM event_chain WHERE position = ?", (last,))
    assert_caught(store, capsys, first=last, kind="unchained_event")


# -------------------------------------------------------- the strong attacker


def test_a_rewritten_event_with_every_later_link_recomputed_is_caught_by_the_audit_trail(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = take_checkpoint(store)
    position = position_of(store, "tea-house", 4)
    with tampering(store) as db:
        replace_in_state(db, position, b'"note":"3 orders > 48h"', b'"note":"no late orders"')
        relink_from(db, position, store_key(store))
    report = assert_caught(store, capsys, first=position, kind="audit_trail")
    # The chain itself is consistent again: only the cross-checks and a checkpoint can tell.
    assert "chain" not in {problem.kind for problem in report.problems}
    against = assert_caught(store, capsys, first=position, kind="audit_trail", against=before)
    assert "checkpoint" in kinds_at(against, before.position)


def test_a_rewritten_amount_with_every_later_link_recomputed_is_caught_by_the_balances(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    position = position_of(store, "kimono-house", 6)  # the customs deduction of 2,000 yen
    with tampering(store) as db:
        replace_in_state(db, position, b'"amount_collected_minor":2000', b'"amount_collected_minor":1000')
        relink_from(db, position, store_key(store))
    report = assert_caught(store, capsys, first=position, kind="audit_trail")
    newest = position_of(store, "kimono-house", newest_version(store, "kimono-house"))
    assert "balances" in kinds_at(report, newest)


def test_a_rewrite_hidden_in_events_links_and_views_fails_only_against_a_checkpoint(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = take_checkpoint(store)
    position = position_of(store, "tea-house", 4)
    with tampering(store) as db:
        replace_in_state(db, position, b'"note":"3 orders > 48h"', b'"note":"no late orders"')
        relink_from(db, position, store_key(store))
        db.execute("UPDATE audit_trail SET note = 'no late orders' WHERE position = ?", (position,))
    # Consistent everywhere inside the file: plain verify cannot see it.
    assert auditor(store).verify().ok
    assert take_checkpoint(store) != before

    report = assert_caught(store, capsys, first=before.position, kind="checkpoint", against=before)
    assert [problem.kind for problem in report.problems] == ["checkpoint"]
    assert "rewritten" in report.problems[0].detail


# ----------------------------------------------------------- checkpoints


def test_verify_against_takes_the_checkpoint_as_json_or_as_a_file(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = run_cli(capsys, "--db", str(store), "checkpoint", "--json")
    assert printed.code == 0
    checkpoint = json.loads(printed.out)
    assert checkpoint == take_checkpoint(store).model_dump()
    kept = tmp_path / "checkpoint.json"
    kept.write_text(printed.out)

    for against in (printed.out, str(kept)):
        outcome = run_cli(capsys, "--db", str(store), "verify", "--json", "--against", against)
        assert (outcome.code, outcome.err) == (0, "")
        data = json.loads(outcome.out)
        assert data["ok"] is True
        assert data["checkpoint"] == checkpoint


def test_a_store_that_only_grew_still_extends_an_older_checkpoint(store: Path) -> None:
    before = take_checkpoint(store)
    ledger = DepositLedger(str(store), actor="risk-ops", clock=FakeClock(START))
    try:
        ledger.deduct("kimono-house", "1000", reason="late_shipment", case="kimono-house-LS-9", at=START)
    finally:
        ledger.close()
    assert take_checkpoint(store).position > before.position
    assert auditor(store).verify(before).ok


def test_a_checkpoint_of_another_history_fails(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    theirs = Checkpoint(position=head(store), chain_hash="ab" * 32)
    report = assert_caught(store, capsys, first=theirs.position, kind="checkpoint", against=theirs)
    assert "rewritten" in report.problems[0].detail


def test_a_checkpoint_of_an_empty_store_is_extended_by_any_history(tmp_path: Path, store: Path) -> None:
    empty = tmp_path / "empty.db"
    DepositLedger(str(empty), actor="risk-ops", clock=FakeClock(START)).close()
    genesis = auditor(empty).checkpoint()
    assert genesis == Checkpoint(position=0, chain_hash=GENESIS.hex())
    assert auditor(empty).verify(genesis).ok
    assert auditor(store).verify(genesis).ok
    not_genesis = auditor(store).verify(Checkpoint(position=0, chain_hash="ab" * 32))
    assert [(problem.position, problem.kind) for problem in not_genesis.problems] == [(0, "checkpoint")]


def test_a_checkpoint_in_upper_case_hex_is_the_same_checkpoint(store: Path) -> None:
    # Hashes get retyped and reformatted on their way through reports.
    checkpoint = take_checkpoint(store)
    shouted = checkpoint.model_dump_json().replace(checkpoint.chain_hash, checkpoint.chain_hash.upper())
    assert auditor(store).verify(parse_checkpoint(shouted)).ok


@pytest.mark.parametrize(
    "against",
    [
        "not a checkpoint",
        "{}",
        '{"position": 3}',
        '{"position": "three", "chain_hash": "' + "00" * 32 + '"}',
        '{"position": -1, "chain_hash": "' + "00" * 32 + '"}',
        '{"position": 3, "chain_hash": "abc"}',
        '{"position": 3, "chain_hash": "' + "zz" * 32 + '"}',
        "{not json",
    ],
)
def test_a_malformed_checkpoint_exits_2(store: Path, capsys: pytest.CaptureFixture[str], against: str) -> None:
    outcome = run_cli(capsys, "--db", str(store), "verify", "--json", "--against", against)
    assert outcome.code == 2
    assert outcome.out == ""
    assert len(outcome.err_lines) == 1 and "checkpoint" in outcome.err


def test_a_checkpoint_file_that_does_not_exist_exits_2(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_cli(capsys, "--db", str(store), "verify", "--against", str(tmp_path / "missing.json"))
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1 and "missing.json" in outcome.err


def test_verify_of_a_missing_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.db"
    outcome = run_cli(capsys, "--db", str(missing), "verify", "--json")
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1
    assert not missing.exists()


# ------------------------------------------------------------ the keyed chain


def append_forged_payment(path: Path, key: ChainKey | None, *, with_frozen: bool = True) -> int:
    """The long shop's last payment again under a new trade number, appended as someone with write access would.

    Its links are recomputed under ``key`` (None: unkeyed), and the views are
    rebuilt to agree, so that only the chain (or the rules) can tell. The forged
    Paid's position.
    """
    forged_at = head(path) + 1
    version = newest_version(path, LONG_SHOP)
    with tampering(path) as db:
        paid, frozen = (
            read_event(db, position_of(path, LONG_SHOP, v)) for v in (SNAPSHOT_VERSION + 1, SNAPSHOT_VERSION + 2)
        )
        assert paid.topic.endswith("Paid") and frozen.topic.endswith("Frozen")
        forged = [paid, frozen] if with_frozen else [paid]
        for offset, event in enumerate(forged):
            db.execute(
                "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    forged_at + offset,
                    event.originator_id,
                    version + 1 + offset,
                    event.topic,
                    event.state.replace(b"MT-0101", b"MT-9999"),
                ),
            )
        relink_from(db, forged_at, key)
    ledger = DepositLedger(str(path), actor="intruder", clock=FakeClock(START))
    try:
        for name in list(ledger.views.views):
            ledger.views.rebuild(name)
    finally:
        ledger.close()
    return forged_at


@pytest.mark.parametrize("key", [None, ChainKey(bytes(range(32)))], ids=["unkeyed-links", "wrongly-keyed-links"])
def test_a_rule_abiding_payment_appended_without_the_key_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str], key: ChainKey | None
) -> None:
    # Before the chain was keyed, recomputing the links made this forgery invisible.
    forged_at = append_forged_payment(store, key)
    report = assert_caught(store, capsys, first=forged_at, kind="chain")
    # Written behind the ledger, the payment holds no trade number either.
    assert {problem.kind for problem in report.problems} == {"chain", "trade_number"}
    assert "keyed" in report.problems[0].detail


def test_a_payment_appended_with_the_key_is_what_only_the_key_can_do(store: Path) -> None:
    # The limit of the chain: whoever holds the key writes links as good as the ledger's.
    # That is why the key lives outside the database, readable by the ledger's owner alone.
    before = take_checkpoint(store)
    append_forged_payment(store, store_key(store))
    # Only the trade-number table, written by the ledger alone, tells it apart.
    assert {problem.kind for problem in auditor(store).verify(before).problems} == {"trade_number"}


def test_a_payment_left_unfrozen_is_caught_even_with_the_key(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Replay alone accepts money in hand that no Frozen placed; no command ever leaves it so.
    forged_at = append_forged_payment(store, store_key(store), with_frozen=False)
    report = assert_caught(store, capsys, first=forged_at, kind="unfrozen")
    assert {problem.kind for problem in report.problems} == {"unfrozen", "trade_number"}
    assert report.problems[0].shop_id == LONG_SHOP


def test_verify_with_a_wrong_key_says_so_in_one_line(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = store_key(store).key_id
    monkeypatch.setenv("DEPOSIT_LEDGER_CHAIN_KEY", "ab" * 32)
    for command in (["verify"], ["checkpoint"]):
        outcome = run_cli(capsys, "--db", str(store), *command)
        assert outcome.code == 2, outcome.err
        assert len(outcome.err_lines) == 1, outcome.err
        assert f"keyed with key {key_id}" in outcome.err_lines[0]
        assert "Traceback" not in outcome.err


def test_a_checkpoint_is_signed_by_the_chains_key(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = take_checkpoint(store)
    assert checkpoint.key_id == store_key(store).key_id
    assert checkpoint.signature is not None and len(checkpoint.signature) == 64
    assert auditor(store).verify(checkpoint).ok

    forged = checkpoint.model_copy(update={"signature": "0" * 64})
    report = assert_caught(store, capsys, first=checkpoint.position, kind="checkpoint", against=forged)
    assert "signature" in report.problems[0].detail


def test_a_forged_key_record_is_caught(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tampering(store) as db:
        position = int(db.execute("SELECT position FROM chain_keys").fetchone()[0])
        db.execute("UPDATE chain_keys SET proof = ? WHERE position = ?", (bytes(32), position))
    assert_caught(store, capsys, first=position, kind="chain_key")


def test_a_chain_rewritten_unkeyed_beside_the_generated_key_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Dropping the key records and recomputing every link unkeyed would pass for a store made
    # before chain keys, but the key generated beside the store says the chain was keyed.
    with tampering(store) as db:
        db.execute("DELETE FROM chain_keys")
        relink_from(db, 1, None)
    report = auditor(store).verify()
    assert [problem.kind for problem in report.problems] == ["chain_key"]
    outcome = run_cli(capsys, "--db", str(store), "verify")
    assert outcome.code == 1
