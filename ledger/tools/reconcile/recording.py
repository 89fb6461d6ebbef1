"""Keeping a reconciliation's outcome in the store, as events of its own aggregate, and listing them.

The events go into the same log as the deposits' (chained, verified, exported
with them), under their own topic: the views pass over them, ``verify`` checks
their histories, and ``export journal`` leaves them out (they are no command).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from domain import Channel, InvariantBroken
from domain.reconciliation import BillOutcome, BillReconciled, reconciliation_id
from ledger.app.parse import parse_actor
from ledger.app.service import DepositLedger
from ledger.app.unit_of_work import MAX_ATTEMPTS, ConcurrencyExhausted
from ledger.store.recorder import stored_id
from ledger.tools.reconcile.ledger_side import READ_BATCH
from ledger.tools.reconcile.report import ReconciliationReport


def outcome_of(report: ReconciliationReport) -> BillOutcome:
    """The figures of ``report`` that a recorded reconciliation keeps."""
    return BillOutcome(
        bill_sha256=report.bill_sha256,
        bill_lines=report.bill_lines,
        matched=report.counts["matched"],
        missing_in_ledger=report.counts["missing_in_ledger"],
        missing_in_channel=report.counts["missing_in_channel"],
        amount_mismatch=report.counts["amount_mismatch"],
        near_midnight=report.counts["near_midnight"],
    )


def record_reconciliation(
    ledger: DepositLedger, report: ReconciliationReport, actor: str | None = None
) -> tuple[BillReconciled, bool]:
    """Record the report's outcome for its (channel, day); the event and whether it is new.

    The same outcome as the latest recorded version records nothing (a re-run is
    idempotent); another outcome is the next version, the earlier ones stay.
    """
    channel = Channel(report.channel)
    identity = reconciliation_id(channel, report.bill_date)
    outcome = outcome_of(report)
    who = parse_actor(actor or ledger.default_actor)
    for _ in range(MAX_ATTEMPTS):
        latest = next(iter(ledger.events.get(identity, desc=True, limit=1)), None)
        if isinstance(latest, BillReconciled) and latest.outcome == outcome:
            return latest, False
        event = BillReconciled(
            originator_id=identity,
            originator_version=latest.originator_version + 1 if latest is not None else 1,
            recorded_at=ledger.clock(),
            actor=who,
            channel=channel,
            bill_date=report.bill_date,
            outcome=outcome,
        )
        try:
            ledger.save(event)
        except IntegrityError:
            continue  # another run recorded this version first: compare with it
        return event, True
    raise ConcurrencyExhausted(f"gave up after {MAX_ATTEMPTS} conflicting writes; nothing was written")


def reconciliations(
    ledger: DepositLedger, *, channel: Channel | None = None, start: date | None = None, end: date | None = None
) -> list[BillReconciled]:
    """Every recorded version, by bill day, channel and version; ``start`` and ``end`` bound the day (inclusive).

    Read from the log by topic, a few thousand rows at a time: there are a few
    versions a day, never as many as the deposits' events.
    """
    found = [
        event
        for event in _recorded(ledger)
        if (channel is None or event.channel is channel)
        and (start is None or event.bill_date >= start)
        and (end is None or event.bill_date <= end)
    ]
    return sorted(found, key=lambda event: (event.bill_date, event.channel.value, event.originator_version))


def _recorded(ledger: DepositLedger) -> Iterator[BillReconciled]:
    store = ledger.store
    query = (
        f"SELECT originator_id, originator_version, topic, state FROM {store.events_table} "
        f"WHERE topic = ? ORDER BY {store.position_column}"
    )
    with store.read_snapshot() as connection:
        cursor: Any = connection.cursor() if store.kind == "sqlite" else connection.cursor(name="reconciliations")
        cursor.execute(query, (BillReconciled.TOPIC,))
        while batch := cursor.fetchmany(READ_BATCH):
            for originator_id, version, topic, state in batch:
                stored = StoredEvent(
                    originator_id=UUID(stored_id(originator_id)),
                    originator_version=version,
                    topic=topic,
                    state=bytes(state),
                )
                event = ledger.mapper.to_domain_event(stored)
                if not isinstance(event, BillReconciled):
                    raise InvariantBroken(f"a {type(event).__name__} stored under the reconciliation's topic")
                yield event
