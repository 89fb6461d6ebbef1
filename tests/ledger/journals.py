"""Journals for the import and export tests: a story using every operation, written as JSONL or CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ledger import DepositLedger
from ledger.faces.reports import event_json, state_json
from ledger.tools.journal import FIELDS, JournalFormat


def line(op: str, shop: str, at: str, **fields: str) -> dict[str, str]:
    """One journal line as a record: the operation, the shop, the effective time, the command's fields."""
    return {"op": op, "shop": shop, "at": at, **fields}


STORY: list[dict[str, str]] = [
    line("open", "tea-house", "2025-01-06T09:00:00+08:00", currency="CNY", required="2000"),
    line("open", "sneaker-lab", "2025-01-06T10:00:00Z", currency="USD", required="500", site="us"),
    line("pay", "tea-house", "2025-01-07T09:00:00Z", amount="2000", channel="alipay", ref="A1"),
    line("pay", "sneaker-lab", "2025-01-07T10:00:00Z", amount="300", channel="wechat_pay", ref="W1", payer="lab@wx"),
    line(
        "deduct",
        "sneaker-lab",
        "2025-01-08T10:00:00Z",
        amount="600",
        reason="order_brushing",
        case="OB-3",
        note="two lines,\nand a comma",
    ),
    line(
        "deduct",
        "tea-house",
        "2025-01-09T10:00:00Z",
        amount="50",
        reason="late_shipment",
        case="LS-1",
        actor="risk-bot",
    ),
    line("pay", "sneaker-lab", "2025-01-10T10:00:00Z", amount="700", channel="alipay", ref="A2"),
    line("open", "flash-deals", "2025-01-10T11:00:00Z", currency="JPY", required="70000", site="JP"),
    line("pay", "flash-deals", "2025-01-10T12:00:00Z", amount="70000", channel="alipay", ref="F1"),
    line("close", "tea-house", "2025-01-11T09:00:00Z"),
    line("force-close", "flash-deals", "2025-02-01T00:00:00Z", reason="repeated order brushing"),
    line("refund", "tea-house", "2025-05-01T00:00:00Z", actor="finance"),
]
"""Three shops: a debt settled by the next payment, a refund after the window, a forced closure."""

SHOPS = ("tea-house", "sneaker-lab", "flash-deals")


def write_journal(path: Path, records: list[dict[str, Any]], file_format: JournalFormat) -> Path:
    """Write ``records`` as a journal file: one JSON object per line, or CSV under a header of every field."""
    with path.open("w", newline="", encoding="utf-8") as out:
        if file_format == "jsonl":
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(records)
    return path


def books(ledger: DepositLedger, shops: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Every shop's ``show`` and ``history`` as the CLI prints them, without the recording times."""
    result: dict[str, Any] = {}
    for shop in shops:
        state = ledger.show(shop)
        history = [event_json(event, state.currency) for event in ledger.history(shop)]
        for entry in history:
            del entry["recorded_at"]
        result[shop] = {"show": state_json(state), "history": history}
    return result


POLICY_STORY: list[dict[str, str]] = [
    line("open", "beauty-bar", "2025-01-06T09:00:00Z", site="CN", category="apparel"),
    line("pay", "beauty-bar", "2025-01-06T10:00:00Z", amount="2000", channel="alipay", ref="A1"),
    line("categories", "beauty-bar", "2025-01-07T09:00:00Z", add="beauty"),
    line("pay", "beauty-bar", "2025-01-08T09:00:00Z", amount="2000", channel="wechat_pay", ref="W1"),
    line("hold", "beauty-bar", "2025-01-09T09:00:00Z", amount="300", case="H-1", note="buyer complaint"),
    line("deduct", "beauty-bar", "2025-01-10T09:00:00Z", reason="late_shipment", case="H-1", order_value="2000"),
    line("deduct", "beauty-bar", "2025-01-11T09:00:00Z", amount="500", reason="fake_listing", case="F-1"),
    line("appeal", "beauty-bar", "2025-01-12T09:00:00Z", case="F-1", note="the listing was genuine"),
    line("resolve-appeal", "beauty-bar", "2025-01-13T09:00:00Z", case="F-1", outcome="upheld"),
    line("deduct", "beauty-bar", "2025-01-14T09:00:00Z", reason="order_brushing", case="OB-1"),
    line("appeal", "beauty-bar", "2025-01-15T09:00:00Z", case="OB-1"),
    line("resolve-appeal", "beauty-bar", "2025-01-16T09:00:00Z", case="OB-1", outcome="rejected", note="proven"),
    line("pay", "beauty-bar", "2025-01-17T09:00:00Z", amount="4000", channel="alipay", ref="A2"),
    line("categories", "beauty-bar", "2025-01-18T09:00:00Z", remove="beauty"),
    line("refund-excess", "beauty-bar", "2025-01-19T09:00:00Z"),
    line("hold", "beauty-bar", "2025-01-20T09:00:00Z", amount="100", case="H-2"),
    line("force-close", "beauty-bar", "2025-01-21T09:00:00Z", reason="counterfeit goods"),
    line("open", "late-appeal", "2025-02-01T00:00:00Z", site="UK", category="beauty,apparel"),
    line("pay", "late-appeal", "2025-02-01T01:00:00Z", amount="2000", channel="alipay", ref="L1"),
    line("close", "late-appeal", "2025-02-02T00:00:00Z"),
    line("pay", "late-appeal", "2025-03-01T00:00:00Z", amount="100", channel="wechat_pay", ref="L-W1"),
    line("deduct", "late-appeal", "2025-04-20T00:00:00Z", amount="150", reason="other", case="X-1"),
    line("appeal", "late-appeal", "2025-05-10T00:00:00Z", case="X-1"),
    line("resolve-appeal", "late-appeal", "2025-05-12T00:00:00Z", case="X-1", outcome="upheld"),
    line("refund", "late-appeal", "2025-08-11T00:00:00Z"),
    line("open", "debtor", "2025-02-01T00:00:00Z", currency="CNY", required="100"),
    line("deduct", "debtor", "2025-02-02T00:00:00Z", amount="80", reason="other", case="D-1"),
    line("force-close", "debtor", "2025-02-03T00:00:00Z", reason="fraud"),
    line("pay", "debtor", "2025-02-04T00:00:00Z", amount="30", channel="alipay", ref="D1"),
    line("write-off", "debtor", "2025-03-05T00:00:00Z", case="D-1", reason="merchant unreachable"),
]
"""The policy's commands: categories, holds, priced deductions, appeals both ways, an excess refund, a forced
closure over a hold, a payment while closing, a refund that waited for an appeal filed while closing (the
settlement window restarts at its outcome), and a debt partly paid after a forced closure, the rest written
off."""

POLICY_SHOPS = ("beauty-bar", "late-appeal", "debtor")
