"""Journal import and export through the Python API: rejects, re-runs, batches, the round trip."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import MalformedInput, Refused, ShopDeposit, deposit_id
from ledger import DepositLedger
from ledger.app.repository import DepositRepository
from ledger.tools import journal
from ledger.tools.journal import (
    ImportSummary,
    JournalFormat,
    JournalReader,
    LineResult,
    Rejects,
    export_journal,
    import_journal,
)
from tests.conftest import FakeClock
from tests.ledger.journals import POLICY_SHOPS, POLICY_STORY, SHOPS, STORY, books, line, write_journal

FORMATS: list[JournalFormat] = ["jsonl", "csv"]


def run_import(
    ledger: DepositLedger, path: Path, file_format: JournalFormat, *, batch_lines: int = 1000
) -> tuple[ImportSummary, list[LineResult]]:
    rejected: list[LineResult] = []
    with path.open(newline="", encoding="utf-8") as source:
        summary = import_journal(
            ledger, JournalReader(source, file_format), on_reject=rejected.append, batch_lines=batch_lines
        )
    return summary, rejected


def reasons(rejected: list[LineResult]) -> dict[int, str]:
    return {result.line.number: str(result.reason) for result in rejected}


# ------------------------------------------------------------------- applying


@pytest.mark.parametrize("file_format", FORMATS)
def test_a_journal_applies_every_operation_in_file_order(
    ledger: DepositLedger, tmp_path: Path, file_format: JournalFormat
) -> None:
    path = write_journal(tmp_path / f"story.{file_format}", STORY, file_format)

    summary, rejected = run_import(ledger, path, file_format)

    assert rejected == []
    assert (summary.lines, summary.applied, summary.duplicates, summary.rejected) == (12, 12, 0, 0)
    assert summary.events == sum(ledger.show(shop).version for shop in SHOPS)
    tea, lab, flash = (ledger.show(shop) for shop in SHOPS)
    assert (tea.status, tea.refunded_minor, tea.deducted_minor) == ("closed", 195000, 5000)
    assert (lab.status, lab.frozen_minor, lab.owed_minor, lab.site) == ("underfunded", 40000, 0, "US")
    assert (flash.status, flash.forfeited_minor) == ("forfeited", 70000)
    assert [event.actor for event in ledger.history("tea-house")][-1] == "finance"
    assert ledger.balance("sneaker-lab") == lab, "the views are current after the import"


@pytest.mark.parametrize("file_format", FORMATS)
def test_rejected_lines_carry_their_line_number_and_reason_and_the_rest_go_on(
    ledger: DepositLedger, tmp_path: Path, file_format: JournalFormat
) -> None:
    opening = {"op": "open", "shop": "tea", "at": "2025-01-01T00:00:00Z", "currency": "CNY", "required": "100"}
    records: list[dict[str, Any]] = [
        opening,
        {"op": "pay", "shop": "tea", "at": "2025-01-02T00:00:00Z", "amount": "12.345", "channel": "alipay", "ref": "X"},
        {"op": "pay", "shop": "tea", "at": "2025-01-02T00:00:00Z", "amount": "50", "channel": "alipay", "ref": "A1"},
        {"op": "pay", "shop": "ghost", "at": "2025-01-02T00:00:00Z", "amount": "5", "channel": "alipay", "ref": "G"},
        {"op": "pay", "shop": "tea", "at": "2025-01-03T00:00:00Z", "amount": "60", "channel": "alipay", "ref": "A1"},
        {"op": "refund", "shop": "tea", "at": "2025-01-03T00:00:00Z"},
        {"op": "close", "shop": "tea", "at": "2025-01-03T00:00:00Z", "amount": "1"},
        {"op": "deduct", "shop": "tea", "at": "2025-01-04T00:00:00Z", "amount": "10", "reason": "other"},
        {"op": "levy", "shop": "tea", "at": "2025-01-04T00:00:00Z"},
        {"op": "pay", "shop": "tea", "at": "2025-01-01T12:00:00Z", "amount": "5", "channel": "alipay", "ref": "A0"},
        {"op": "pay", "shop": "tea", "at": "2099-01-01T00:00:00Z", "amount": "5", "channel": "alipay", "ref": "A9"},
        {"op": "pay", "shop": "tea", "at": "yesterday", "amount": "5", "channel": "alipay", "ref": "A8"},
        {"op": "pay", "shop": "tea", "at": "2025-01-05T00:00:00Z", "amount": "50", "channel": "alipay", "ref": "A2"},
    ]
    path = write_journal(tmp_path / f"mixed.{file_format}", records, file_format)
    first = 2 if file_format == "csv" else 1  # the CSV header is line 1

    summary, rejected = run_import(ledger, path, file_format)

    found = reasons(rejected)
    assert sorted(found) == [first + n for n in range(1, 12) if n != 2]
    assert found[first + 1] == "amount 12.345 has more decimals than CNY allows (2)"
    assert found[first + 3] == "shop ghost has no deposit"
    assert found[first + 4] == "payment alipay A1 was recorded with 50.00 CNY, not 60.00 CNY"
    assert found[first + 5] == "shop tea is underfunded and cannot be refunded"
    assert found[first + 6] == "field 'amount' does not apply to close"
    assert found[first + 7] == "deduct needs the field 'case'"
    assert found[first + 8].startswith("unknown op 'levy': expected one of open, pay, deduct, hold, release, ")
    assert "before shop tea's last event" in found[first + 9]
    assert "lies in the future" in found[first + 10]
    assert "is not ISO-8601" in found[first + 11]
    assert (summary.applied, summary.duplicates, summary.rejected) == (3, 0, 10)
    state = ledger.show("tea")
    assert (state.paid_minor, state.frozen_minor, state.version) == (10000, 10000, 5)


def test_malformed_jsonl_lines_are_rejected_by_line_number(ledger: DepositLedger, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(
        '{"op":"open","shop":"tea","at":"2025-01-01T00:00:00Z","currency":"CNY","required":100.5}\n'
        "\n"
        "not json\n"
        '["op","pay"]\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":1.25,"channel":"alipay","ref":7}\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":1.25,"channel":"alipay","ref":"A1",'
        '"payer":null}\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":1.25,"channel":"alipay","ref":"A1","typo":"x"}\n',
        encoding="utf-8",
    )

    summary, rejected = run_import(ledger, path, "jsonl")

    assert reasons(rejected) == {
        3: "not JSON: Expecting value: line 1 column 1 (char 0)",
        4: "not a JSON object",
        5: "field 'ref' must be a string",
        7: "unknown field 'typo'",
    }
    assert (summary.lines, summary.applied) == (6, 2)
    assert ledger.show("tea").required_minor == 10050
    assert ledger.show("tea").paid_minor == 125, "JSON numbers are read exactly, never as floats"


def test_a_csv_header_with_an_unknown_column_is_refused_before_anything_is_applied(tmp_path: Path) -> None:
    with pytest.raises(MalformedInput, match="unknown column"):
        JournalReader(io.StringIO("op,shop,at,amout\n"), "csv")
    with pytest.raises(MalformedInput, match="must name the columns op, shop and at"):
        JournalReader(io.StringIO("op,shop\n"), "csv")


def test_a_csv_row_with_the_wrong_number_of_cells_is_rejected(ledger: DepositLedger, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        "op,shop,at,currency,required\nopen,tea,2025-01-01T00:00:00Z,CNY\nopen,tea,2025-01-01T00:00:00Z,CNY,100\n"
    )

    summary, rejected = run_import(ledger, path, "csv")

    assert reasons(rejected) == {2: "has 4 cells, the header has 5"}
    assert summary.applied == 1


def test_rejects_are_written_beside_the_line_as_it_was(ledger: DepositLedger, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("op,shop,at\nclose,ghost,2025-01-01T00:00:00Z\n")
    out = io.StringIO()
    with path.open(newline="") as source:
        reader = JournalReader(source, "csv")
        import_journal(ledger, reader, on_reject=Rejects(out, reader).write)

    assert out.getvalue().splitlines() == [
        "line,reason,op,shop,at",
        "2,shop ghost has no deposit,close,ghost,2025-01-01T00:00:00Z",
    ]


# ------------------------------------------------------------------- re-running


@pytest.mark.parametrize("file_format", FORMATS)
def test_importing_the_same_journal_again_changes_nothing(
    ledger: DepositLedger, tmp_path: Path, file_format: JournalFormat
) -> None:
    path = write_journal(tmp_path / f"story.{file_format}", STORY, file_format)
    run_import(ledger, path, file_format)
    before = books(ledger, SHOPS)
    head = ledger.recorder.max_notification_id()

    summary, rejected = run_import(ledger, path, file_format, batch_lines=5)

    assert rejected == []
    assert (summary.applied, summary.duplicates, summary.rejected, summary.events) == (0, 12, 0, 0)
    assert ledger.recorder.max_notification_id() == head
    assert books(ledger, SHOPS) == before


def test_a_repeat_within_one_journal_is_a_duplicate_and_another_open_or_close_is_refused(
    ledger: DepositLedger, tmp_path: Path
) -> None:
    opening = {"op": "open", "shop": "tea", "at": "2025-01-01T00:00:00Z", "currency": "CNY", "required": "100"}
    closing = {"op": "close", "shop": "tea", "at": "2025-01-02T00:00:00Z"}
    records = [
        opening,
        opening,
        {**opening, "required": "200"},
        {**opening, "at": "2025-01-01T00:00:01Z"},
        closing,
        closing,
        {**closing, "at": "2025-01-03T00:00:00Z"},
    ]
    path = write_journal(tmp_path / "repeats.jsonl", records, "jsonl")

    summary, rejected = run_import(ledger, path, "jsonl")

    assert (summary.applied, summary.duplicates) == (2, 2)
    assert reasons(rejected) == {
        3: "shop tea already has a deposit",
        4: "shop tea already has a deposit",
        7: "shop tea is closing and cannot be closed",
    }


# ------------------------------------------------------------------- batches


def test_a_line_refused_half_way_leaves_no_trace_in_its_batch(
    ledger: DepositLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rule that refuses only after recording an event: the batch must rebuild the deposit.
    close = ShopDeposit.close

    def close_then_refuse(self: ShopDeposit, **kwargs: Any) -> None:
        close(self, **kwargs)
        raise Refused("refused after recording")

    monkeypatch.setattr(ShopDeposit, "close", close_then_refuse)
    records = [
        {"op": "open", "shop": "tea", "at": "2025-01-01T00:00:00Z", "currency": "CNY", "required": "100"},
        {"op": "pay", "shop": "tea", "at": "2025-01-02T00:00:00Z", "amount": "100", "channel": "alipay", "ref": "A1"},
        {"op": "close", "shop": "tea", "at": "2025-01-03T00:00:00Z"},
        {"op": "pay", "shop": "tea", "at": "2025-01-04T00:00:00Z", "amount": "5", "channel": "alipay", "ref": "A2"},
    ]
    path = write_journal(tmp_path / "half.jsonl", records, "jsonl")

    summary, rejected = run_import(ledger, path, "jsonl")

    assert reasons(rejected) == {3: "refused after recording"}
    assert summary.applied == 3
    assert [event.type_name for event in ledger.history("tea")] == ["Opened", "Paid", "Frozen", "Paid", "Frozen"]
    assert ledger.show("tea").status == "active"


def test_a_batch_is_one_transaction_and_a_failing_batch_writes_nothing(ledger: DepositLedger) -> None:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    head = ledger.recorder.max_notification_id()
    with pytest.raises(RuntimeError), ledger.batch():
        ledger.pay("tea", "10", channel="alipay", ref="A1", at="2025-01-02T00:00:00Z")
        assert ledger.show("tea").paid_minor == 1000, "the batch reads its own writes"
        raise RuntimeError("stop")
    assert ledger.recorder.max_notification_id() == head
    assert ledger.show("tea").paid_minor == 0

    with ledger.batch() as batch:
        for number in range(3):
            ledger.pay("tea", "10", channel="alipay", ref=f"A{number}", at="2025-01-02T00:00:00Z")
    assert len(batch.events) == 6
    assert ledger.show("tea").version == 7
    assert ledger.balance("tea").paid_minor == 3000


def test_a_batch_looks_its_deposits_up_together_not_line_by_line(
    ledger: DepositLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("old", currency="CNY", required="100", at="2024-12-01T00:00:00Z")
    records = [line("open", "tea", "2025-01-01T00:00:00Z", currency="CNY", required="100")]
    records += [
        line("pay", shop, "2025-01-02T00:00:00Z", amount="1", channel="alipay", ref=f"{shop}-{n}")
        for n in range(20)
        for shop in ("tea", "old")
    ]
    path = write_journal(tmp_path / "many.jsonl", records, "jsonl")
    loads: list[UUID] = []
    lookups: list[int] = []
    load, latest_versions = DepositRepository.load, type(ledger.recorder).latest_versions

    def counting_load(self: DepositRepository, deposit: UUID, version: int | None = None) -> ShopDeposit | None:
        loads.append(deposit)
        return load(self, deposit, version)

    def counting_lookup(self: Any, originator_ids: list[Any]) -> dict[Any, int]:
        lookups.append(len(originator_ids))
        return latest_versions(self, originator_ids)

    monkeypatch.setattr(DepositRepository, "load", counting_load)
    monkeypatch.setattr(type(ledger.recorder), "latest_versions", counting_lookup)

    summary, _ = run_import(ledger, path, "jsonl", batch_lines=10)

    assert summary.applied == 41
    assert loads == [deposit_id("old")], "a new shop needs no load; later batches take deposits from the cache"
    assert lookups == [2, 2, 2, 2, 1], "one lookup per batch, for all its shops"


# ------------------------------------------------------------------- export


@pytest.mark.parametrize("file_format", FORMATS)
def test_an_export_imported_into_an_empty_store_reproduces_the_books(
    ledger: DepositLedger, tmp_path: Path, clock: FakeClock, file_format: JournalFormat
) -> None:
    path = write_journal(tmp_path / f"story.{file_format}", STORY, file_format)
    run_import(ledger, path, file_format)
    exported = tmp_path / f"export.{file_format}"
    with exported.open("w", newline="", encoding="utf-8") as out:
        lines = export_journal(ledger, out, file_format=file_format)
    assert lines == len(STORY)

    copy = DepositLedger(str(tmp_path / "copy.db"), actor="someone-else", clock=clock)
    try:
        summary, rejected = run_import(copy, exported, file_format)
        assert (rejected, summary.applied) == ([], len(STORY))
        assert books(copy, SHOPS) == books(ledger, SHOPS)
        assert [copy.balance(shop) for shop in SHOPS] == [ledger.balance(shop) for shop in SHOPS]
        again = io.StringIO()
        export_journal(copy, again, file_format=file_format)
        with exported.open(newline="", encoding="utf-8") as written:
            assert again.getvalue() == written.read()
    finally:
        copy.close()


def test_an_export_writes_each_command_before_reading_the_rest_of_the_log(
    ledger: DepositLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bounded memory: the log is read a page at a time and never gathered whole, so the
    # first line is out while most of the log is still unread.
    run_import(ledger, write_journal(tmp_path / "story.jsonl", STORY, "jsonl"), "jsonl")
    monkeypatch.setattr(journal, "EXPORT_PAGE", 2)
    pages = 0
    select = ledger.recorder.select_notifications

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        return select(*args, **kwargs)

    monkeypatch.setattr(ledger.recorder, "select_notifications", counted)
    pages_at_first_line: list[int] = []

    class Out(io.StringIO):
        def write(self, text: str) -> int:
            if not pages_at_first_line:
                pages_at_first_line.append(pages)
            return super().write(text)

    export_journal(ledger, Out(), file_format="jsonl")
    assert pages >= 5
    assert pages_at_first_line[0] <= 2, "the first command's line is out after its events' page (and the next)"


def test_an_export_is_one_line_per_command(ledger: DepositLedger, tmp_path: Path) -> None:
    run_import(ledger, write_journal(tmp_path / "story.jsonl", STORY, "jsonl"), "jsonl")
    out = io.StringIO()
    export_journal(ledger, out, file_format="jsonl")
    lines = out.getvalue().splitlines()
    settling_pay = lines[6]
    assert settling_pay == (
        '{"op": "pay", "shop": "sneaker-lab", "at": "2025-01-10T10:00:00.000000+00:00", '
        '"actor": "tester", "amount": "700.00", "channel": "alipay", "ref": "A2"}'
    )
    assert lines[0].startswith('{"op": "open", "shop": "tea-house", "at": "2025-01-06T01:00:00.000000+00:00"')


# ------------------------------------------------------------------- the policy's commands


@pytest.mark.parametrize("file_format", FORMATS)
def test_the_policy_commands_import_rerun_and_export_back(
    ledger: DepositLedger, tmp_path: Path, clock: FakeClock, file_format: JournalFormat
) -> None:
    path = write_journal(tmp_path / f"policy.{file_format}", POLICY_STORY, file_format)

    first, rejected = run_import(ledger, path, file_format)
    again, rejected_again = run_import(ledger, path, file_format, batch_lines=4)

    assert (rejected, rejected_again) == ([], [])
    assert (first.applied, first.duplicates) == (len(POLICY_STORY), 0)
    assert (again.applied, again.duplicates, again.events) == (0, len(POLICY_STORY), 0)
    types = [event.type_name for event in ledger.history("late-appeal")]
    assert types[-3:] == ["DeductionReversed", "Frozen", "Refunded"], "the refund waits for the appeal"
    assert ledger.show("debtor").written_off_minor == 5_000
    assert ledger.show("beauty-bar").status == "forfeited"

    exported = io.StringIO()
    assert export_journal(ledger, exported, file_format=file_format) == len(POLICY_STORY)
    copy = DepositLedger(str(tmp_path / "copy.db"), actor="someone-else", clock=clock)
    try:
        source = io.StringIO(exported.getvalue(), newline="")
        summary = import_journal(copy, JournalReader(source, file_format))
        assert (summary.applied, summary.rejected) == (len(POLICY_STORY), 0)
        assert books(copy, POLICY_SHOPS) == books(ledger, POLICY_SHOPS)
        again_exported = io.StringIO()
        export_journal(copy, again_exported, file_format=file_format)
        assert again_exported.getvalue() == exported.getvalue()
    finally:
        copy.close()


def test_amounts_in_exponent_notation_are_rejected_as_text_and_as_json_numbers(
    ledger: DepositLedger, tmp_path: Path
) -> None:
    path = tmp_path / "exponents.jsonl"
    path.write_text(
        '{"op":"open","shop":"tea","at":"2025-01-01T00:00:00Z","currency":"CNY","required":"100"}\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":"1E2","channel":"alipay","ref":"A1"}\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":2e-1,"channel":"alipay","ref":"A2"}\n'
        '{"op":"pay","shop":"tea","at":"2025-01-02T00:00:00Z","amount":100,"channel":"alipay","ref":"A3"}\n',
        encoding="utf-8",
    )

    summary, rejected = run_import(ledger, path, "jsonl")

    assert reasons(rejected) == {
        2: "amount '1E2' is not a decimal number",
        3: "amount '2e-1' is not a decimal number",
    }
    assert (summary.applied, ledger.show("tea").paid_minor) == (2, 10000)


def test_policy_lines_are_checked_like_their_commands(ledger: DepositLedger, tmp_path: Path) -> None:
    path = tmp_path / "policy.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"op":"open","shop":"tea","at":"2025-01-01T00:00:00Z","site":"CN","category":["apparel","food"]}',
                '{"op":"resolve-appeal","shop":"tea","at":"2025-01-02T00:00:00Z","case":"C1","outcome":"maybe"}',
                '{"op":"appeal","shop":"tea","at":"2025-01-02T00:00:00Z","case":"C1"}',
                '{"op":"categories","shop":"tea","at":"2025-01-02T00:00:00Z"}',
                '{"op":"apply-policy","shop":"tea","at":"2025-01-02T00:00:00Z"}',
                '{"op":"deduct","shop":"tea","at":"2025-01-02T00:00:00Z","reason":"fake_listing","case":"F1",'
                '"amount":"1","order_value":"2"}',
                '{"op":"hold","shop":"tea","at":"2025-01-02T00:00:00Z","case":"H1"}',
            ]
        )
        + "\n",
        encoding="utf-8",
    )

    summary, rejected = run_import(ledger, path, "jsonl")

    assert reasons(rejected) == {
        2: "unknown outcome 'maybe': expected upheld or rejected",
        3: "shop tea has no deduction on case C1 to appeal",
        4: "give categories to add or to remove",
        6: "give an amount or an order value, not both: the order value prices by the policy",
        7: "hold needs the field 'amount'",
    }
    assert (summary.applied, summary.duplicates) == (1, 1), "a policy already applied is a duplicate"
    state = ledger.show("tea")
    assert (state.categories, state.required_minor, state.currency) == (("apparel", "food"), 400000, "CNY")


def test_a_batch_that_loses_a_race_to_another_writer_is_decided_again(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    other = reopen()
    records = [
        line("pay", "tea", "2025-01-02T00:00:00Z", amount="10", channel="alipay", ref="A1"),
        line("pay", "tea", "2025-01-03T00:00:00Z", amount="20", channel="alipay", ref="A2"),
    ]
    path = write_journal(tmp_path / "race.jsonl", records, "jsonl")
    save = DepositLedger.save
    raced: list[bool] = []

    def racing_save(self: DepositLedger, *objs: Any, **kwargs: Any) -> Any:
        if self is ledger and not raced:
            raced.append(True)  # another process records the same payment first
            other.pay("tea", "10", channel="alipay", ref="A1", at="2025-01-02T00:00:00Z")
        return save(self, *objs, **kwargs)

    monkeypatch.setattr(DepositLedger, "save", racing_save)

    summary, rejected = run_import(ledger, path, "jsonl")

    assert (rejected, summary.applied, summary.duplicates) == ([], 1, 1)
    assert [event.type_name for event in ledger.history("tea")] == ["Opened", "Paid", "Frozen", "Paid", "Frozen"]
    assert ledger.show("tea").paid_minor == 3000
