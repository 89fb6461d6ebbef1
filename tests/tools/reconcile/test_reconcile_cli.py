"""``deposit-ledger reconcile``: both channels' bills against the ledger, every discrepancy, on both backends."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import Run
from tests.tools.reconcile.bills import BEIJING, Row, alipay_bill, channel_bill, wechat_bill

DAY = date(2025, 1, 6)
CHANNELS = ("alipay", "wechat_pay")
OPENED = "2025-01-01T08:00:00+08:00"


def beijing(text: str) -> str:
    """An ``--at`` value for a Beijing wall-clock time on DAY (``"09:30"``), or a full date and time."""
    moment = datetime.fromisoformat(text if "T" in text else f"{DAY.isoformat()}T{text}:00")
    return moment.replace(tzinfo=BEIJING).isoformat()


def at_beijing(text: str) -> datetime:
    return datetime.fromisoformat(beijing(text))


@pytest.fixture
def paid_shops(cli: Run) -> Run:
    """Two shops paid on DAY through both channels."""
    assert cli(f"open tea-house --currency CNY --required 3000 --at {OPENED}").code == 0
    assert cli(f"open noodle-bar --currency CNY --required 1000 --at {OPENED}").code == 0
    for line in (
        f"pay tea-house 2000 --channel alipay --ref A-1001 --at {beijing('09:30')}",
        f"pay tea-house 1000 --channel wechat_pay --ref W-2001 --at {beijing('10:00')}",
        f"pay noodle-bar 999.99 --channel alipay --ref A-1002 --at {beijing('11:15')}",
        f"pay noodle-bar 0.01 --channel wechat_pay --ref W-2002 --at {beijing('12:00')}",
    ):
        assert cli(line).code == 0, line
    return cli


def rows_for(channel: str) -> list[Row]:
    """The bill rows the channel would publish for `paid_shops`."""
    if channel == "alipay":
        return [
            Row("payment", "A-1001", 200000, at_beijing("09:30"), "ORD-1", fee_minor=1200),
            Row("payment", "A-1002", 99999, at_beijing("11:15"), "ORD-2", fee_minor=600),
        ]
    return [
        Row("payment", "W-2001", 100000, at_beijing("10:00"), "ORD-3", fee_minor=600),
        Row("payment", "W-2002", 1, at_beijing("12:00"), "ORD-4", fee_minor=0),
    ]


def write(tmp_path: Path, channel: str, rows: list[Row], day: date = DAY) -> Path:
    path = tmp_path / f"{channel}-{day}.csv"
    path.write_bytes(channel_bill(channel, day, rows))
    return path


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_bill_that_agrees_with_the_ledger_matches_every_line(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    bill = write(tmp_path, channel, rows_for(channel))

    outcome = paid_shops(f"reconcile {bill} --channel {channel} --json")

    assert outcome.code == 0, outcome.err
    report = outcome.json()
    assert list(report)[:5] == ["channel", "bill_date", "bill_sha256", "bill_lines", "lines_ignored"]
    assert report["bill_date"] == "2025-01-06"
    assert report["counts"] == {
        "matched": 2,
        "missing_in_ledger": 0,
        "missing_in_channel": 0,
        "amount_mismatch": 0,
        "near_midnight": 0,
    }
    assert [entry["ref"] for entry in report["matched"]] == [row.trade_no for row in rows_for(channel)]
    shops = {entry["ref"]: entry["shop_id"] for entry in report["matched"]}
    assert set(shops.values()) == {"tea-house", "noodle-bar"}
    expected = "2999.99" if channel == "alipay" else "1000.01"
    assert report["totals"]["ledger"]["CNY"] == {"payments": expected, "refunds": "0.00", "net": expected}
    assert report["totals"]["channel"] == report["totals"]["ledger"]
    assert report["missing_in_ledger"] == report["missing_in_channel"] == report["amount_mismatch"] == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_fees_are_reported_beside_the_deposits_never_in_them(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    bill = write(tmp_path, channel, rows_for(channel))

    report = paid_shops(f"reconcile {bill} --channel {channel} --json").json()

    charged = "18.00" if channel == "alipay" else "6.00"
    assert report["fees"] == {"CNY": {"charged": charged, "returned": "0.00", "net": charged}}
    matched = {entry["ref"]: entry for entry in report["matched"]}
    first = rows_for(channel)[0]
    assert matched[first.trade_no]["channel_amount"] == matched[first.trade_no]["ledger_amount"]


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_kind_of_discrepancy_is_listed_and_fails_the_run(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    first, second = rows_for(channel)
    planted = [
        first.moved(amount_minor=first.amount_minor - 1),  # the channel moved a fen less
        Row("payment", "NOT-IN-LEDGER", 5000, at_beijing("15:00"), "ORD-9"),  # never credited
        # `second` is left out: a payment the ledger holds that the channel never made
    ]
    bill = write(tmp_path, channel, planted)

    outcome = paid_shops(f"reconcile {bill} --channel {channel} --json")

    assert outcome.code == 1
    assert outcome.err_lines == [
        f"deposit-ledger: the {channel} bill does not match the ledger: "
        "1 missing_in_ledger, 1 missing_in_channel, 1 amount_mismatch"
    ]
    report = outcome.json()
    assert report["ok"] is False
    [mismatch] = report["amount_mismatch"]
    assert mismatch["ref"] == first.trade_no
    assert mismatch["ledger_amount"] == f"{first.amount_minor // 100}.{first.amount_minor % 100:02d}"
    assert int(mismatch["channel_amount"].replace(".", "")) == first.amount_minor - 1
    [unknown] = report["missing_in_ledger"]
    assert unknown["ref"] == "NOT-IN-LEDGER" and "shop_id" not in unknown and "ledger_amount" not in unknown
    assert unknown["channel_amount"] == "50.00" and unknown["line"] > 1
    [absent] = report["missing_in_channel"]
    assert absent["ref"] == second.trade_no and absent["shop_id"] == "noodle-bar"
    assert "channel_amount" not in absent
    assert report["matched"] == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_table_names_each_discrepancy(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    first, _ = rows_for(channel)
    bill = write(tmp_path, channel, [first, Row("payment", "NOT-IN-LEDGER", 5000, at_beijing("15:00"))])

    outcome = paid_shops(f"reconcile {bill} --channel {channel}")

    assert outcome.code == 1
    assert "discrepancies" in outcome.out
    assert "missing_in_ledger: 1" in outcome.out and "NOT-IN-LEDGER" in outcome.out
    assert "missing_in_channel: 1" in outcome.out


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_ledger_reference_may_be_the_merchant_order_number(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    first, second = rows_for(channel)
    bill = write(tmp_path, channel, [first, second.moved(trade_no="4200000001", order_no=second.trade_no)])

    report = paid_shops(f"reconcile {bill} --channel {channel} --json").json()

    assert report["counts"]["matched"] == 2


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_payment_near_midnight_falls_on_either_days_bill(cli: Run, tmp_path: Path, channel: str) -> None:
    assert cli(f"open late-shop --currency CNY --required 500 --at {OPENED}").code == 0
    # Recorded by the ledger two minutes after midnight; the channel booked it before midnight.
    assert cli(f"pay late-shop 500 --channel {channel} --ref LATE-1 --at {beijing('2025-01-07T00:02:00')}").code == 0
    on_day = write(tmp_path, channel, [Row("payment", "LATE-1", 50000, at_beijing("23:59"))])
    next_day = write(tmp_path, channel, [], day=DAY + timedelta(days=1))

    first = cli(f"reconcile {on_day} --channel {channel} --json")
    second = cli(f"reconcile {next_day} --channel {channel} --date 2025-01-07 --json")

    assert first.code == 0, first.err
    assert first.json()["counts"]["matched"] == 1
    assert second.code == 0, second.err
    assert second.json()["counts"]["near_midnight"] == 1
    assert second.json()["near_midnight"][0]["ref"] == "LATE-1"


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_payment_well_inside_the_day_is_not_excused(cli: Run, tmp_path: Path, channel: str) -> None:
    assert cli(f"open day-shop --currency CNY --required 500 --at {OPENED}").code == 0
    assert cli(f"pay day-shop 500 --channel {channel} --ref DAY-1 --at {beijing('2025-01-07T00:20:00')}").code == 0
    next_day = write(tmp_path, channel, [], day=DAY + timedelta(days=1))

    outcome = cli(f"reconcile {next_day} --channel {channel} --date 2025-01-07 --json")

    assert outcome.code == 1
    assert outcome.json()["missing_in_channel"][0]["ref"] == "DAY-1"


def test_a_refund_split_over_both_channels_matches_each_channels_refund_rows(cli: Run, tmp_path: Path) -> None:
    assert cli(f"open split-shop --currency CNY --required 1500 --at {OPENED}").code == 0
    assert cli(f"pay split-shop 1000 --channel alipay --ref A-77 --at {beijing('2025-01-01T10:00:00')}").code == 0
    assert cli(f"pay split-shop 500 --channel wechat_pay --ref W-77 --at {beijing('2025-01-01T11:00:00')}").code == 0
    assert cli(f"close split-shop --at {beijing('2025-01-02T10:00:00')}").code == 0
    refund_day = date(2025, 4, 10)
    assert cli(f"refund split-shop --at {beijing('2025-04-10T15:00:00')}").code == 0
    refund_at = at_beijing("2025-04-10T15:00:05")
    alipay = tmp_path / "alipay.csv"
    alipay.write_bytes(alipay_bill(refund_day, [Row("refund", "A-77", 100000, refund_at, "", "RB-1", 600)]))
    wechat = tmp_path / "wechat.csv"
    wechat.write_bytes(wechat_bill([Row("refund", "W-77", 50000, refund_at, "", "50300001", 300)]))

    on_alipay = cli(f"reconcile {alipay} --channel alipay --json")
    on_wechat = cli(f"reconcile {wechat} --channel wechat_pay --json")

    assert on_alipay.code == 0, on_alipay.err
    [share] = on_alipay.json()["matched"]
    assert share == {
        "ref": "A-77",
        "kind": "refund",
        "shop_id": "split-shop",
        "currency": "CNY",
        "ledger_amount": "1000.00",
        "channel_amount": "1000.00",
        "at": "2025-04-10T07:00:05Z",
        "refund_no": "RB-1",
        "line": 6,
    }
    assert on_alipay.json()["fees"]["CNY"] == {"charged": "0.00", "returned": "6.00", "net": "-6.00"}
    assert on_alipay.json()["totals"]["ledger"]["CNY"]["refunds"] == "1000.00"
    assert on_wechat.code == 0, on_wechat.err
    assert [entry["ledger_amount"] for entry in on_wechat.json()["matched"]] == ["500.00"]

    # A channel that refunded less than the ledger's share: the merchant is still waiting.
    short = tmp_path / "short.csv"
    short.write_bytes(wechat_bill([Row("refund", "W-77", 40000, refund_at, "", "50300001")]))
    outcome = cli(f"reconcile {short} --channel wechat_pay --json")
    assert outcome.code == 1
    assert outcome.json()["amount_mismatch"][0]["ledger_amount"] == "500.00"


@pytest.mark.parametrize("channel", CHANNELS)
def test_running_twice_gives_the_same_report(paid_shops: Run, tmp_path: Path, channel: str) -> None:
    first, _ = rows_for(channel)
    bill = write(tmp_path, channel, [first, Row("payment", "NOT-IN-LEDGER", 5000, at_beijing("15:00"))])

    once = paid_shops(f"reconcile {bill} --channel {channel} --json")
    twice = paid_shops(f"reconcile {bill} --channel {channel} --json")

    assert once == twice
    import hashlib

    assert once.json()["bill_sha256"] == hashlib.sha256(bill.read_bytes()).hexdigest()


@pytest.mark.parametrize("channel", CHANNELS)
def test_record_keeps_each_outcome_once_as_a_new_version_and_verify_covers_it(
    paid_shops: Run, tmp_path: Path, channel: str
) -> None:
    first, second = rows_for(channel)
    short = write(tmp_path, channel, [first])

    recorded = paid_shops(f"--actor finance-ops reconcile {short} --channel {channel} --record --json")
    again = paid_shops(f"--actor finance-ops reconcile {short} --channel {channel} --record --json")
    full = write(tmp_path, channel, [first, second])
    corrected = paid_shops(f"reconcile {full} --channel {channel} --record --json")

    assert recorded.code == again.code == 1 and corrected.code == 0, corrected.err
    assert recorded.json()["recorded"] == {"version": 1, "new": True, "actor": "finance-ops"}
    assert again.json()["recorded"] == {"version": 1, "new": False, "actor": "finance-ops"}
    assert corrected.json()["recorded"]["version"] == 2
    listed = paid_shops(f"reconciliations --channel {channel} --json").json()
    assert [(row["version"], row["ok"], row["counts"]["missing_in_channel"]) for row in listed] == [
        (1, False, 1),
        (2, True, 0),
    ]
    assert listed[0]["bill_sha256"] == recorded.json()["bill_sha256"]
    assert listed[0]["actor"] == "finance-ops" and listed[0]["bill_date"] == "2025-01-06"
    assert paid_shops("reconciliations --from 2025-01-07 --json").json() == []
    assert paid_shops("reconciliations --to 2025-01-06").code == 0

    verified = paid_shops("verify --json")
    assert verified.code == 0, verified.err
    assert verified.json()["reconciliations_checked"] == 1
    assert verified.json()["deposits_checked"] == 2
    # The deposits' views and commands carry on past the reconciliation's events.
    assert paid_shops(f"pay tea-house 1 --channel alipay --ref A-1003 --at {beijing('18:00')}").code == 0
    assert paid_shops("balance tea-house --json").json()["paid"] == "3001.00"
    assert paid_shops("projections rebuild --json").code == 0
    assert paid_shops("verify").code == 0
    assert paid_shops("export journal --format jsonl").code == 0


def test_a_recorded_reconciliation_edited_in_the_store_fails_verify(
    paid_shops: Run, tmp_path: Path, store_url: str
) -> None:
    from ledger.store.urls import resolve_store

    bill = write(tmp_path, "alipay", rows_for("alipay"))
    assert paid_shops(f"reconcile {bill} --channel alipay --record").code == 0
    store = resolve_store(store_url)
    connection = store.connect()
    try:
        connection.cursor().execute(
            f"UPDATE {store.events_table} SET state = ? WHERE topic = ?",
            (b'{"recorded_at":"2025-01-07T00:00:00Z"}', "Reconciliation.BillReconciled"),
        )
    finally:
        connection.close()

    outcome = paid_shops("verify --json")

    assert outcome.code == 1
    kinds = {problem["kind"] for problem in outcome.json()["problems"]}
    assert kinds == {"chain", "reconciliation"}
