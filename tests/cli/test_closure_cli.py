"""Money around closure on the command line: payments while closing, debts that outlive closure,
write-offs, and refunds that wait for every appeal window. On both backends; ``verify`` stays clean."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import SHOW_KEYS, at, stored_rows
from tests.cli.test_cli import MALFORMED, REFUSED, done, ok
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean


def open_paid(cli: Any, shop: str = "tea-house", paid: str = "2000") -> None:
    done(cli(f"open {shop} --currency CNY --required 2000 --at {at()}"))
    done(cli(f"pay {shop} {paid} --channel alipay --ref {shop}-A1 --at {at(hours=1)}"))


def owing_forfeited_shop(cli: Any, shop: str = "gone-shop") -> None:
    """A shop force-closed while it owes 500.00 on case LS-9 (deducted on day 1)."""
    open_paid(cli, shop)
    done(cli(f"deduct {shop} 2500 --reason order_brushing --case LS-9 --at {at(days=1)}"))
    done(cli(f"force-close {shop} --reason fraud --at {at(days=2)}"))


def test_a_payment_while_closing_is_frozen_and_refunded_with_the_rest(cli: Any, store_url: str) -> None:
    open_paid(cli)
    done(cli(f"close tea-house --at {at(days=1)}"))
    state = ok(cli(f"pay tea-house 300 --channel wechat_pay --ref W1 --at {at(days=2)} --json"))
    assert (state["status"], state["paid"], state["frozen"]) == ("closing", "2300.00", "2300.00")
    refunded = ok(cli(f"refund tea-house --at {at(days=92)} --json"))
    assert (refunded["status"], refunded["refunded"], refunded["frozen"]) == ("closed", "2300.00", "0.00")
    refund = ok(cli("history tea-house --json"))[-1]
    assert [(line["channel"], line["trade_no"], line["amount"]) for line in refund["lines"]] == [
        ("wechat_pay", "W1", "300.00"),
        ("alipay", "tea-house-A1", "2000.00"),
    ]
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_a_closed_shop_shows_its_debt_alone_as_shortfall(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    open_paid(cli, "quiet-shop")
    done(cli(f"force-close quiet-shop --reason fraud --at {at(days=2)}"))
    assert ok(cli("show gone-shop --json"))["shortfall"] == "500.00"
    assert ok(cli("balance quiet-shop --json"))["shortfall"] == "0.00"
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_after_closure_a_payment_only_settles_the_debt(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    before = stored_rows(store_url)
    refused = cli(f"pay gone-shop 600 --channel alipay --ref A9 --at {at(days=3)}")
    assert refused.code == REFUSED
    assert refused.err_lines == [
        "deposit-ledger: shop gone-shop is forfeited: a payment only settles its debt of 500.00 CNY, not 600.00 CNY"
    ]
    assert stored_rows(store_url) == before
    state = ok(cli(f"pay gone-shop 200 --channel alipay --ref A9 --at {at(days=3)} --json"))
    assert (state["status"], state["owed"], state["deducted"], state["frozen"]) == (
        "forfeited",
        "300.00",
        "2200.00",
        "0.00",
    )
    state = ok(cli(f"pay gone-shop 300 --channel wechat_pay --ref W9 --at {at(days=4)} --json"))
    assert (state["owed"], state["shortfall"], state["deducted"]) == ("0.00", "0.00", "2500.00")
    assert cli(f"pay gone-shop 1 --channel alipay --ref A10 --at {at(days=5)}").code == REFUSED
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_shops_owing_lists_debts_whatever_the_status(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    open_paid(cli, "paid-shop")
    done(cli(f"open short-shop --currency CNY --required 2000 --at {at()}"))
    done(cli(f"deduct short-shop 50 --reason other --case O-1 --at {at(days=1)}"))
    listed = ok(cli("shops --owing --json"))
    assert [(row["shop_id"], row["status"], row["owed"]) for row in listed] == [
        ("gone-shop", "forfeited", "500.00"),
        ("short-shop", "awaiting_payment", "50.00"),
    ]
    assert [row["shop_id"] for row in ok(cli("shops --underfunded --json"))] == ["short-shop"]
    done(cli("shops --owing"))


def test_a_debt_is_written_off_once_its_deduction_is_final(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    before = stored_rows(store_url)
    early = cli(f"write-off gone-shop --case LS-9 --reason 'shop gone' --at {at(days=5)}")
    assert early.code == REFUSED
    assert "cannot be written off until after 2025-02-06T01:00:00+00:00" in early.err
    assert stored_rows(store_url) == before

    state = ok(cli(f"write-off gone-shop --case LS-9 --reason 'merchant unreachable' --at {at(days=40)} --json"))
    assert list(state) == SHOW_KEYS
    assert (state["owed"], state["written_off"], state["shortfall"], state["status"]) == (
        "0.00",
        "500.00",
        "0.00",
        "forfeited",
    )
    again = ok(cli(f"write-off gone-shop --case LS-9 --reason 'merchant unreachable' --at {at(days=41)} --json"))
    assert again["duplicate"] is True
    event = ok(cli("history gone-shop --json"))[-1]
    assert (event["type"], event["case_id"], event["amount"], event["reason"]) == (
        "WrittenOff",
        "LS-9",
        "500.00",
        "merchant unreachable",
    )
    row = ok(cli("audit gone-shop --json"))[-1]
    assert (row["type"], row["amount"], row["case"], row["reason"]) == (
        "WrittenOff",
        "500.00",
        "LS-9",
        "merchant unreachable",
    )
    assert ok(cli("shops --owing --json")) == []
    assert ok(cli("balance gone-shop --json"))["written_off"] == "500.00"
    assert cli(f"pay gone-shop 1 --channel alipay --ref A9 --at {at(days=42)}").code == REFUSED
    done(cli("show gone-shop"))
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_write_off_is_refused_where_nothing_is_lost(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    open_paid(cli)
    done(cli(f"deduct tea-house 2500 --reason other --case O-1 --at {at(days=1)}"))
    before = stored_rows(store_url)
    cases = [
        (
            f"write-off tea-house --case O-1 --reason x --at {at(days=40)}",
            REFUSED,
            "is underfunded and cannot write off a debt",
        ),
        (f"write-off gone-shop --case NOPE --reason x --at {at(days=40)}", REFUSED, "has no deduction on case NOPE"),
        (f"write-off gone-shop --case LS-9 --reason '' --at {at(days=40)}", MALFORMED, "invalid reason"),
        (f"write-off gone-shop --case 'bad case' --reason x --at {at(days=40)}", MALFORMED, "case"),
        (f"write-off gone-shop --case LS-9 --at {at(days=40)}", MALFORMED, "--reason"),
    ]
    for line, code, words in cases:
        result = cli(line)
        assert (result.code, len(result.err_lines)) == (code, 1), (line, result.err)
        assert words in result.err, (line, result.err)
        assert "Traceback" not in result.err
    assert stored_rows(store_url) == before


def test_a_debt_under_appeal_cannot_be_written_off(cli: Any, store_url: str) -> None:
    owing_forfeited_shop(cli)
    done(cli(f"appeal gone-shop --case LS-9 --at {at(days=3)}"))
    refused = cli(f"write-off gone-shop --case LS-9 --reason x --at {at(days=40)}")
    assert (refused.code, refused.err_lines) == (
        REFUSED,
        ["deposit-ledger: the debt of case LS-9 cannot be written off while its appeal is open"],
    )
    done(cli(f"resolve-appeal gone-shop --case LS-9 --rejected --at {at(days=41)}"))
    assert ok(cli(f"write-off gone-shop --case LS-9 --reason x --at {at(days=41)} --json"))["written_off"] == "500.00"
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_a_refund_waits_for_the_appeal_window_of_a_deduction_made_while_closing(cli: Any, store_url: str) -> None:
    open_paid(cli)
    done(cli(f"close tea-house --at {at(days=1)}"))
    done(cli(f"deduct tea-house 100 --reason after_sales_dispute --case AS-1 --at {at(days=80)}"))
    before = stored_rows(store_url)
    refused = cli(f"refund tea-house --at {at(days=95)}")
    assert (refused.code, refused.err_lines) == (
        REFUSED,
        [
            "deposit-ledger: shop tea-house cannot be refunded until after 2025-04-26T01:00:00+00:00: "
            "the deduction on case AS-1 can be appealed until then"
        ],
    )
    assert stored_rows(store_url) == before
    done(cli(f"appeal tea-house --case AS-1 --at {at(days=100)}"))
    assert "while the appeal on case AS-1 is open" in cli(f"refund tea-house --at {at(days=111)}").err
    done(cli(f"resolve-appeal tea-house --case AS-1 --upheld --at {at(days=112)}"))
    # The appeal was filed while closing: the settlement window starts again at its outcome.
    assert cli(f"refund tea-house --at {at(days=113)}").code == REFUSED
    state = ok(cli(f"refund tea-house --at {at(days=203)} --json"))
    assert (state["status"], state["refunded"], state["deducted"]) == ("closed", "2000.00", "0.00")
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_a_refund_goes_ahead_once_the_last_appeal_window_has_passed(cli: Any, store_url: str) -> None:
    open_paid(cli)
    done(cli(f"close tea-house --at {at(days=1)}"))
    done(cli(f"deduct tea-house 100 --reason after_sales_dispute --case AS-1 --at {at(days=80)}"))
    assert cli(f"refund tea-house --at {at(days=110, hours=-8)}").code == REFUSED  # the window's last moment
    state = ok(cli(f"refund tea-house --at {at(days=111)} --json"))
    assert (state["status"], state["refunded"], state["deducted"]) == ("closed", "1900.00", "100.00")
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_daily_caps_count_days_in_the_site_s_time_zone(cli: Any, store_url: str) -> None:
    # CN: fake_listing ¥500 a violation, at most ¥5,000 a Beijing day. 23:30 UTC on the 6th is
    # 07:30 on the 7th in Beijing: a new day there, though the same UTC day as 01:00 UTC.
    done(cli(f"open tea-house --site CN --category jewelry --at {at()}"))
    done(cli(f"pay tea-house 20000 --channel alipay --ref A1 --at {at(hours=1)}"))
    for number in range(10):  # 2025-01-06 01:00 UTC onwards: ¥5,000 on Beijing's 6 January
        done(cli(f"deduct tea-house --reason fake_listing --case FL-{number} --at {at(hours=8)}"))
    beijing_next_day = "2025-01-06T23:30:00+00:00"
    state = ok(cli(f"deduct tea-house --reason fake_listing --case FL-10 --at {beijing_next_day} --json"))
    assert state["deducted"] == "5500.00"
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_the_policy_shows_each_site_s_time_zone(run: Any) -> None:
    policy = ok(run("policy --json"))
    assert policy["sites"]["CN"]["time_zone"] == "Asia/Shanghai"
    assert "Asia/Shanghai" in done(run("policy")).out
