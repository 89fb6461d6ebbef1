"""What a reconciliation found, and its JSON: counts and totals in memory, the entries on disk.

A bill of a million lines matches a million entries: the report keeps only its
counts and totals, and streams the entries of each outcome from the working
file when they are printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

from domain.money import format_minor

OUTCOMES = ("matched", "missing_in_ledger", "missing_in_channel", "amount_mismatch")
"""The report's lists, in the order they are printed (a fixed contract)."""

DISCREPANCIES = OUTCOMES[1:]
"""The outcomes that make a reconciliation fail (exit 1)."""

WRITE_BATCH = 10_000
"""Entries encoded between two writes of the JSON report."""

_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
"""One encoder for every entry: ``json.dumps`` with options builds a new one per call."""

NEAR_MIDNIGHT = "near_midnight"
"""Ledger entries within the midnight window that this bill lacks: the neighbouring day's bill may hold them."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a report: a bill line, a ledger entry, or both.

    Amounts are integer minor units of ``currency``; ``at`` is the channel's time
    when the bill has the line, else the ledger's (ISO-8601, UTC).
    """

    kind: str
    ref: str
    currency: str
    at: str
    shop_id: str | None = None
    ledger_amount_minor: int | None = None
    channel_amount_minor: int | None = None
    refund_no: str | None = None
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        """``{ref, shop_id?, ledger_amount?, channel_amount?, at}`` and what it is; absent keys are left out."""
        found: dict[str, Any] = {"ref": self.ref, "kind": self.kind}
        if self.shop_id is not None:
            found["shop_id"] = self.shop_id
        found["currency"] = self.currency
        if self.ledger_amount_minor is not None:
            found["ledger_amount"] = format_minor(self.ledger_amount_minor, self.currency)
        if self.channel_amount_minor is not None:
            found["channel_amount"] = format_minor(self.channel_amount_minor, self.currency)
        found["at"] = self.at
        if self.refund_no:
            found["refund_no"] = self.refund_no
        if self.line is not None:
            found["line"] = self.line
        return found


@dataclass
class Side:
    """Money on one side of the reconciliation, per currency: payments and refunds, in minor units."""

    payments: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, currency: str, amount_minor: int) -> None:
        """Count one payment or refund."""
        book = self.payments if kind == "payment" else self.refunds
        book[currency] = book.get(currency, 0) + amount_minor

    def as_json(self) -> dict[str, Any]:
        """Per currency: payments, refunds and their net, as decimal strings."""
        currencies = sorted(set(self.payments) | set(self.refunds))
        return {
            code: {
                "payments": format_minor(self.payments.get(code, 0), code),
                "refunds": format_minor(self.refunds.get(code, 0), code),
                "net": format_minor(self.payments.get(code, 0) - self.refunds.get(code, 0), code),
            }
            for code in currencies
        }


@dataclass
class ReconciliationReport:
    """The outcome of one bill against the ledger."""

    channel: str
    bill_date: date
    bill_sha256: str
    bill_lines: int
    lines_ignored: int
    counts: dict[str, int]
    ledger: Side
    bill: Side
    fees_charged: dict[str, int]
    fees_returned: dict[str, int]
    entries: Callable[[str], Iterator[Entry]]
    """The entries of one outcome (or ``near_midnight``), in the order printed: by time, then reference."""

    @property
    def ok(self) -> bool:
        """True when every line matched: nothing missing on either side, no amount differs."""
        return not any(self.counts[outcome] for outcome in DISCREPANCIES)

    def fees_json(self) -> dict[str, Any]:
        """Per currency: the channel's fees charged on payments, returned with refunds, and net."""
        currencies = sorted(set(self.fees_charged) | set(self.fees_returned))
        return {
            code: {
                "charged": format_minor(self.fees_charged.get(code, 0), code),
                "returned": format_minor(self.fees_returned.get(code, 0), code),
                "net": format_minor(self.fees_charged.get(code, 0) - self.fees_returned.get(code, 0), code),
            }
            for code in currencies
        }

    def write_json(self, out: IO[str], recorded: dict[str, Any] | None = None) -> None:
        """The ``reconcile --json`` object, written as it is read: the lists are never all in memory.

        ``recorded`` (with ``--record``) says which version of the day's reconciliation holds it.
        """
        head: dict[str, Any] = {
            "channel": self.channel,
            "bill_date": self.bill_date.isoformat(),
            "bill_sha256": self.bill_sha256,
            "bill_lines": self.bill_lines,
            "lines_ignored": self.lines_ignored,
            "ok": self.ok,
            "counts": {
                **{outcome: self.counts[outcome] for outcome in OUTCOMES},
                NEAR_MIDNIGHT: self.counts[NEAR_MIDNIGHT],
            },
            "totals": {"ledger": self.ledger.as_json(), "channel": self.bill.as_json()},
            "fees": self.fees_json(),
        }
        if recorded is not None:
            head["recorded"] = recorded
        out.write(json.dumps(head, ensure_ascii=False, indent=2)[:-2] + ",\n")
        for number, outcome in enumerate((*OUTCOMES, NEAR_MIDNIGHT)):
            out.write(f'  "{outcome}": [')
            pending: list[str] = []
            for index, entry in enumerate(self.entries(outcome)):
                pending.append(("," if index else "") + "\n    " + _ENCODE(entry.as_json()))
                if len(pending) == WRITE_BATCH:
                    out.write("".join(pending))
                    out.flush()
                    pending.clear()
            out.write("".join(pending))
            closing = "\n  ]" if self.counts[outcome] else "]"
            out.write(closing + ("," if number < len(OUTCOMES) else "") + "\n")
        out.write("}\n")
