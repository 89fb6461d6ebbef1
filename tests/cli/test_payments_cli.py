"""Payments on the command line: one trade number one payment, and the channel's own time."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run, at, stored_rows


def test_a_trade_number_used_by_one_shop_is_refused_on_another_in_one_line(cli: Run, store_url: str) -> None:
    for shop in ("s7", "s8"):
        assert cli(f"open {shop} --currency CNY --required 2000 --at {at()}").code == 0
    assert cli(f"pay s7 2000 --channel alipay --ref T777 --at {at(days=1)}").code == 0
    before = stored_rows(store_url)

    refused = cli(f"pay s8 2000 --channel alipay --ref T777 --at {at(days=1)} --json")

    assert (refused.code, refused.out) == (1, "")
    assert refused.err_lines == [
        "deposit-ledger: alipay trade number T777 was paid into shop s7: one payment, one shop"
    ]
    assert stored_rows(store_url) == before
    assert cli("verify").code == 0


def test_pay_keeps_the_channel_time_and_history_shows_it(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli(f"open tea-house --currency CNY --required 2000 --at {at()}").code == 0
    assert cli(f"deduct tea-house 50 --reason late_shipment --case LS-1 --at {at(days=2)}").code == 0

    paid = cli(f"pay tea-house 2000 --channel alipay --ref A1 --at {at(days=3)} --channel-time {at(days=1)}")
    assert paid.code == 0, paid.err

    (payment,) = [entry for entry in cli("history tea-house --json").json() if entry["type"] == "Paid"]
    assert (payment["effective_at"], payment["channel_time"]) == ("2025-01-09T01:00:00Z", "2025-01-07T01:00:00Z")
    table = cli("history tea-house")
    assert table.code == 0 and "channel_time 2025-01-07T01:00:00Z" in table.out
    late = cli(f"pay tea-house 1 --channel alipay --ref A2 --at {at(days=3)} --channel-time {at(days=4)}")
    assert late.code == 2 and "after the payment's effective time" in late.err


def test_audit_shows_each_channel_share_of_a_refund(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli(f"open tea-house --currency CNY --required 2000 --at {at()}").code == 0
    assert cli(f"pay tea-house 1500 --channel alipay --ref A1 --at {at(days=1)}").code == 0
    assert cli(f"pay tea-house 500 --channel wechat_pay --ref W1 --at {at(days=1)}").code == 0
    assert cli(f"close tea-house --at {at(days=2)}").code == 0
    assert cli(f"refund tea-house --at {at(days=100)}").code == 0

    rows = [row for row in cli("audit tea-house --json").json() if row["type"] == "Refunded"]

    assert [(row["share"], row["amount"], row["frozen_after"], row["channel"], row["ref"]) for row in rows] == [
        (1, "500.00", "1500.00", "wechat_pay", "W1"),
        (2, "1500.00", "0.00", "alipay", "A1"),
    ]
    table = cli("audit tea-house")
    assert table.code == 0
    lines = [" ".join(line.split()) for line in table.out.splitlines()]
    assert any(line.endswith("channel wechat_pay") for line in lines) and any(line.endswith("ref W1") for line in lines)
    assert any(line.endswith("channel alipay") for line in lines) and any(line.endswith("ref A1") for line in lines)
