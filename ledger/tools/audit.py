"""Proving the books: verify the whole store, take checkpoints, export the trail for auditors.

``verify`` reads one consistent snapshot of the store in two streaming passes,
holding at most one deposit in memory:

1. **Chain**, in position order: every stored event must follow from the link
   before it, keyed with the key its key record names (unkeyed before the first),
   every link must have its event, every key record must be proven by its keys,
   and (with a checkpoint) the chain recomputed from the genesis over today's
   events must reach the checkpoint's hash at its position, and a signed
   checkpoint's signature must be its key's.
2. **Deposits**, one at a time in version order: the events must decode and
   replay under the rules' arithmetic, and no command may leave money in hand
   unfrozen (a ``Paid`` without its ``Frozen``); the balances row must equal the replayed
   figures; every event must have exactly its audit-trail row; every payment
   must hold its (channel, trade number) in ``trade_numbers``; every snapshot
   must equal the replay at its version. Rows of the views and trade numbers
   that no event explains are reported too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain as chain_rows
from itertools import groupby
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from pydantic import BaseModel, ConfigDict

from domain import DepositEvent, MalformedInput, Opened, Paid, ShopDeposit
from domain.money import format_minor
from domain.reconciliation import RECONCILIATION_TYPES, BillReconciled, reconciliation_id
from ledger.store import chain, trade_numbers
from ledger.store.chain import ChainKey, Checkpoint
from ledger.store.chain_keys import KeyRing, default_key_file, key_ring, wrong_key
from ledger.store.mapper import DepositMapper
from ledger.store.recorder import stored_id
from ledger.store.snapshots import DepositSnapshot, OutdatedSnapshot
from ledger.store.urls import Store
from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView
from projections.view import fixed_width_time, stored_time

READ_BATCH = 2000
"""Rows fetched from SQLite at a time while streaming."""

MAX_PROBLEMS = 1000
"""Problems kept in a report; further ones are counted, not listed."""

Progress = Callable[[int, int], None]


class Problem(BaseModel):
    """One thing that is not as the events say."""

    model_config = ConfigDict(frozen=True)

    position: int | None
    shop_id: str | None
    kind: str
    detail: str


class ViewPosition(BaseModel):
    """Where a view stands behind the head of the log, and what stopped it, if anything did."""

    model_config = ConfigDict(frozen=True)

    name: str
    position: int
    """The last event the view applied: its rows are as the events up to here say."""
    head: int
    stopped: str | None
    """Why it stopped (``position N: reason``), or None when it is only behind (catching up)."""


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    events_checked: int = 0
    deposits_checked: int = 0
    reconciliations_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    problems_not_listed: int = 0
    checkpoint: Checkpoint | None = None
    trade_numbers_held: int = 0
    """Rows of ``trade_numbers`` found to be held by the payment they name."""
    views_behind: list[ViewPosition] = field(default_factory=list)
    """The views that have not applied every event: their rows are checked up to their position."""

    @property
    def ok(self) -> bool:
        """True when nothing at all was found."""
        return not self.problems and not self.problems_not_listed

    def add(self, position: int | None, shop_id: str | None, kind: str, detail: str) -> None:
        """Record a problem (beyond ``MAX_PROBLEMS``, only count it)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(position=position, shop_id=shop_id, kind=kind, detail=detail))
        else:
            self.problems_not_listed += 1

    def first_bad_position(self) -> int | None:
        """The lowest position any problem names."""
        positions = [p.position for p in self.problems if p.position is not None]
        return min(positions) if positions else None

    def as_json(self) -> dict[str, Any]:
        """The ``verify --json`` object."""
        return {
            "ok": self.ok,
            "events_checked": self.events_checked,
            "deposits_checked": self.deposits_checked,
            "reconciliations_checked": self.reconciliations_checked,
            "problems": [problem.model_dump() for problem in self.problems],
            "problems_not_listed": self.problems_not_listed,
            "checkpoint": self.checkpoint.model_dump() if self.checkpoint else None,
            "views_behind": [view.model_dump() for view in self.views_behind],
        }


def parse_checkpoint(text_or_path: str) -> Checkpoint:
    """A checkpoint from its JSON, or from a file holding it; ``MalformedInput`` otherwise."""
    text = text_or_path
    if not text.lstrip().startswith("{"):
        path = Path(text_or_path)
        if not path.is_file():
            raise MalformedInput(f"checkpoint {text_or_path!r} is neither JSON nor a readable file")
        text = path.read_text()
    try:
        checkpoint = Checkpoint.model_validate_json(text)
        bytes.fromhex(checkpoint.chain_hash)
    except ValueError:
        raise MalformedInput("checkpoint must be JSON with an integer position and a hex chain_hash") from None
    if len(checkpoint.chain_hash) != 64 or checkpoint.position < 0:
        raise MalformedInput("checkpoint must be JSON with an integer position and a hex chain_hash")
    # Links print in lower case; a hash retyped in upper case names the same link.
    return checkpoint.model_copy(update={"chain_hash": checkpoint.chain_hash.lower()})


class Auditor:
    """Verifies, checkpoints and exports one SQLite store."""

    def __init__(self, store: Store, mapper: Mapper[Any] | None = None, keys: KeyRing | None = None) -> None:
        """Read ``store`` through connections of its own; it never writes.

        Opening the ledger application would catch the views up first: an
        auditor must see the store exactly as it is. ``keys`` are the chain's
        keys (default: those configured for the store; none is ever generated).
        """
        self.store = store
        self._keys = keys
        self.mapper = mapper or DepositMapper(transcoder=JSONTranscoder())
        self._cursors = 0
        self.balances = BalancesView()
        self.audit_trail = AuditTrailView()

    # ------------------------------------------------------------- checkpoint

    @property
    def keys(self) -> KeyRing | None:
        """The chain keys this auditor holds (read once)."""
        if self._keys is None:
            self._keys = key_ring(self.store)
        return self._keys

    def checkpoint(self) -> Checkpoint:
        """The chain's head: its position and hash, signed with the key of the chain's newest links."""
        with self.store.read_snapshot() as connection:
            cursor = connection.cursor()
            position, link = chain.last_link(cursor)
            key_id = chain.last_key_id(cursor) if self.store.table_exists(cursor, "chain_keys") else None
        key = self._key(key_id) if key_id is not None else (self.keys.current if self.keys else None)
        if key is None:
            return Checkpoint(position=position, chain_hash=link.hex())
        signature = chain.checkpoint_signature(key, position, link.hex())
        return Checkpoint(position=position, chain_hash=link.hex(), key_id=key.key_id, signature=signature)

    def _key(self, key_id: str) -> ChainKey:
        # The key with this id, or the one line that says it was not given.
        key = self.keys.find(key_id) if self.keys is not None else None
        if key is None:
            raise wrong_key(key_id, self.keys)
        return key

    # ----------------------------------------------------------------- verify

    def verify(self, against: Checkpoint | None = None, progress: Progress | None = None) -> VerifyReport:
        """Walk the whole store; report everything that the events do not explain."""
        report = VerifyReport(checkpoint=against)
        with self.store.read_snapshot() as connection:
            total = int(connection.cursor().execute(f"SELECT COUNT(*) FROM {self.store.events_table}").fetchone()[0])
            shops = _ShopNames(connection.cursor(), self.balances.table)

            def advance(done: int) -> None:
                if progress is not None:
                    progress(done, 2 * total)

            # A balances table of another release cannot be compared row by row: say so once.
            balances_comparable = (
                self.store.table_columns(connection.cursor(), self.balances.table) == self.balances.columns
            )
            if not balances_comparable:
                detail = "the balances view has another release's columns: run deposit-ledger projections rebuild"
                report.add(None, None, "balances", detail)
            views = self._view_positions(connection, report)
            trade_numbers_kept = self.store.table_exists(connection.cursor(), trade_numbers.TABLE)
            if not trade_numbers_kept:
                detail = "the store has no trade-number table: open it with the ledger once to fill it from the events"
                report.add(None, None, "trade_number", detail)
            self._verify_chain(connection, report, against, shops, advance)
            self._verify_deposits(
                connection,
                report,
                shops,
                lambda done: advance(total + done),
                balances_comparable,
                trade_numbers_kept,
                views,
            )
            self._verify_orphans(connection, report)
            if trade_numbers_kept:
                self._verify_unheld_trade_numbers(connection, report)
        report.problems.sort(key=lambda problem: (problem.position is None, problem.position or 0))
        return report

    def _verify_chain(
        self,
        connection: Any,
        report: VerifyReport,
        against: Checkpoint | None,
        shops: _ShopNames,
        advance: Callable[[int], None],
    ) -> None:
        schedule = self._key_schedule(connection, report)
        if against is not None and against.key_id is not None:
            assert against.signature is not None
            expected = chain.checkpoint_signature(self._key(against.key_id), against.position, against.chain_hash)
            if expected != against.signature:
                report.add(against.position, None, "checkpoint", "the checkpoint's signature is not its key's: forged")
        position_column = self.store.position_column
        events = self._stream(
            connection,
            f"SELECT {position_column}, originator_id, originator_version, topic, state FROM {self.store.events_table} "
            f"ORDER BY {position_column}",
        )
        links = self._stream(connection, "SELECT position, link FROM event_chain ORDER BY position")
        stored_previous = chain.GENESIS  # checks each link against the stored one before it
        recomputed = chain.GENESIS  # the chain rebuilt from today's events alone
        # Every history extends the empty one, whose head is the genesis link at position 0.
        reached_checkpoint = against is None or against.position == 0
        if against is not None and against.position == 0 and against.chain_hash != chain.GENESIS.hex():
            report.add(0, None, "checkpoint", "the checkpoint at position 0 is not the empty history's")
        key: ChainKey | None = None  # unkeyed up to the first key record
        done = 0
        for position, event, stored in _merge_by_position(events, links):
            while schedule and schedule[0][0] <= position:
                key = schedule.pop(0)[1]
            if event is None:
                assert stored is not None
                report.add(position, None, "missing_event", "the chain has a link here but the event is gone")
                stored_previous = stored
                continue
            done += 1
            if done % READ_BATCH == 0:
                advance(done)
            _, stored_originator, version, topic, state = event
            originator_id = stored_id(stored_originator)
            state = _stored_bytes(state)
            if against is not None:
                recomputed = chain.link_under(key, recomputed, position, originator_id, version, topic, state)
            if stored is None:
                report.add(
                    position,
                    shops.get(originator_id),
                    "unchained_event",
                    "the event has no link in the chain: inserted",
                )
                continue
            if chain.link_under(key, stored_previous, position, originator_id, version, topic, state) != stored:
                what = "keyed with the chain's key" if key is not None else "chained"
                report.add(
                    position, shops.get(originator_id), "chain", f"the event or its link differs from what was {what}"
                )
            stored_previous = stored
            if against is not None and position == against.position:
                reached_checkpoint = True
                if recomputed.hex() != against.chain_hash:
                    report.add(
                        position, shops.get(originator_id), "checkpoint", "history up to the checkpoint was rewritten"
                    )
        advance(done)
        report.events_checked = done
        for position, _ in schedule:
            report.add(position, None, "chain_key", "a key record beyond the last event")
        if not reached_checkpoint and against is not None:
            report.add(against.position, None, "checkpoint", "the store no longer reaches the checkpoint: truncated")

    def _key_schedule(self, connection: Any, report: VerifyReport) -> list[tuple[int, ChainKey]]:
        # From which position on which key links, each record checked against its keys'
        # proof. A key the auditor does not hold stops verify with one line.
        cursor = connection.cursor()
        records = chain.key_records(cursor) if self.store.table_exists(cursor, "chain_keys") else []
        schedule: list[tuple[int, ChainKey]] = []
        previous: tuple[str, ChainKey] | None = None
        for position, key_id, proof in records:
            key = self._key(key_id)
            previous_id, previous_key = previous if previous is not None else (None, None)
            if not chain.check_key_record_proof(position, key, previous_id, previous_key, proof):
                report.add(position, None, "chain_key", f"the record of key {key_id} is not proven by its keys: forged")
            schedule.append((position, key))
            previous = (key_id, key)
        generated = default_key_file(self.store)
        if not records and generated is not None and generated.exists():
            # The key beside the store is generated by the first write that keys the chain.
            detail = f"{generated.name} exists beside the store, but no link is keyed: the chain was rewritten unkeyed"
            report.add(None, None, "chain_key", detail)
        return schedule

    def _verify_deposits(
        self,
        connection: Any,
        report: VerifyReport,
        shops: _ShopNames,
        advance: Callable[[int], None],
        balances_comparable: bool,
        trade_numbers_kept: bool,
        views: dict[str, int],
    ) -> None:
        rows = self._stream(
            connection,
            f"SELECT {self.store.position_column}, originator_id, originator_version, topic, state "
            f"FROM {self.store.events_table} ORDER BY originator_id, originator_version",
        )
        lookups = connection.cursor()
        done = 0
        for deposit_hex, group in groupby(rows, key=lambda row: stored_id(row[1])):
            topic, history = _topic_and_history(group)
            if topic in RECONCILIATION_TYPES:
                report.reconciliations_checked += 1
                done += self._verify_reconciliation(report, deposit_hex, history)
                advance(done)
                continue
            report.deposits_checked += 1
            done += self._verify_deposit(
                lookups, report, deposit_hex, shops, history, balances_comparable, trade_numbers_kept, views
            )
            advance(done)

    def _verify_deposit(
        self,
        cursor: Any,
        report: VerifyReport,
        deposit_hex: str,
        shops: _ShopNames,
        rows: Iterator[tuple[Any, ...]],
        balances_comparable: bool,
        trade_numbers_kept: bool,
        views: dict[str, int],
    ) -> int:
        shop = shops.get(deposit_hex)
        deposit: ShopDeposit | None = None
        # A view behind the log holds what the events up to its position say, no more.
        audit_to, balances_to = views[self.audit_trail.name], views[self.balances.name]
        balance_at_view: tuple[Any, ...] | None = None
        snapshots = self._snapshot_versions(cursor, deposit_hex)
        position = 0
        count = 0
        broken = False
        command: datetime | None = None  # the events of one command share their recording time
        for row in rows:
            count += 1
            previous_position, position = position, int(row[0])
            if broken:
                continue
            try:
                event = self._decode(row)
                if deposit is not None and event.recorded_at != command:
                    _check_all_frozen(report, previous_position, shop, deposit)
                command = event.recorded_at
                if deposit is None:
                    if not isinstance(event, Opened):
                        raise ValueError(f"history starts with {event.type_name}, not Opened")
                    deposit = ShopDeposit(event)
                    shop = event.shop_id
                else:
                    if position > balances_to and balance_at_view is None and previous_position <= balances_to:
                        balance_at_view = self.balances.expected_row(deposit.balance, previous_position)
                    deposit.apply(event)
            except (AssertionError, ValueError, KeyError, LookupError) as error:
                report.add(position, shop, "replay", f"{type(error).__name__}: {error}".splitlines()[0])
                broken = True
                continue
            if position <= audit_to:
                self._verify_audit_rows(cursor, report, position, shop, deposit, event)
            if trade_numbers_kept and isinstance(event, Paid):
                self._verify_trade_number(cursor, report, position, deposit.shop_id, event, shops)
            if deposit.version in snapshots:
                snapshots.remove(deposit.version)
                snapshot = self._snapshot(cursor, deposit_hex, deposit.version)
                if isinstance(snapshot, OutdatedSnapshot):
                    continue
                if snapshot is None:
                    report.add(position, shop, "snapshot", f"snapshot at version {deposit.version} does not decode")
                elif snapshot != DepositSnapshot.take(deposit):
                    report.add(position, shop, "snapshot", f"snapshot at version {deposit.version} differs from replay")
        if deposit is None or broken:
            return count
        _check_all_frozen(report, position, shop, deposit)
        for version in sorted(snapshots):
            if not isinstance(self._snapshot(cursor, deposit_hex, version), OutdatedSnapshot):
                detail = f"snapshot at version {version} has no such version in history"
                report.add(position, shop, "snapshot", detail)
        if not balances_comparable:
            return count
        if position <= balances_to:
            balance_at_view = self.balances.expected_row(deposit.balance, position)
        stored_balance = self.balances.stored_row(cursor, deposit.id)
        if balance_at_view is None:
            # The view has not reached the deposit's first event: it must not know the deposit yet.
            if stored_balance is not None:
                detail = f"the balances row claims position {stored_balance[-1]}, beyond the view's {balances_to}"
                report.add(int(stored_balance[-1]), shop, "balances", detail)
            return count
        expected_balance = balance_at_view
        if stored_balance is None:
            report.add(position, shop, "balances", "the deposit has no balances row")
        elif stored_balance != expected_balance:
            # The row may claim a later event than the history holds: name that position.
            claimed = max(position, int(stored_balance[-1]))
            difference = _difference(expected_balance, stored_balance, self.balances.column_names())
            report.add(claimed, shop, "balances", difference)
        return count

    def _verify_reconciliation(self, report: VerifyReport, originator_hex: str, rows: Iterator[tuple[Any, ...]]) -> int:
        # A reconciliation's history: every event decodes, belongs to the (channel, day) its id
        # says, and the versions run 1, 2, 3... (a gap is a deleted version).
        count = 0
        for row in rows:
            count += 1
            position = int(row[0])
            stored = StoredEvent(
                originator_id=UUID(originator_hex), originator_version=row[2], topic=row[3], state=_stored_bytes(row[4])
            )
            try:
                event = self.mapper.to_domain_event(stored)
            except ValueError as error:
                report.add(position, None, "reconciliation", f"{type(error).__name__}: {error}".splitlines()[0])
                return count
            if not isinstance(event, BillReconciled) or event.originator_version != count:
                report.add(position, None, "reconciliation", f"version {row[2]} where version {count} was due")
                return count
            if reconciliation_id(event.channel, event.bill_date).hex != originator_hex:
                detail = f"the {event.channel.value} bill of {event.bill_date} is recorded under another id"
                report.add(position, None, "reconciliation", detail)
        return count

    def _view_positions(self, connection: Any, report: VerifyReport) -> dict[str, int]:
        """Each view's position; a view behind the head of the log is one problem that names it.

        A view stopped at an event it cannot apply is ``view_stopped`` at that event;
        one only behind (a catch-up pending, or tracking rewound) is ``view_behind`` at
        the first event it lacks. Either way its rows are checked against the events up
        to its own position and no further: its stale figures are not discrepancies.
        """
        cursor = connection.cursor()
        head = int(
            cursor.execute(
                f"SELECT COALESCE(MAX({self.store.position_column}), 0) FROM {self.store.events_table}"
            ).fetchone()[0]
        )
        names = (self.balances.name, self.audit_trail.name)
        positions = dict.fromkeys(names, head)
        if not self.store.table_exists(cursor, "view_tracking"):
            return positions
        tracked = dict(cursor.execute("SELECT name, position FROM view_tracking").fetchall())
        stopped: dict[str, tuple[int, str]] = {}
        if self.store.table_exists(cursor, "projection_errors"):
            for name, position, reason in cursor.execute("SELECT name, position, reason FROM projection_errors"):
                stopped[name] = (int(position), reason)
        for name in names:
            position = int(tracked.get(name, 0))
            if position >= head:
                continue  # a view past the head is a truncated log: reported as such
            positions[name] = position
            error = stopped.get(name)
            reason = None if error is None else f"position {error[0]}: {error[1]}"
            report.views_behind.append(ViewPosition(name=name, position=position, head=head, stopped=reason))
            applied = f"it applied events up to {position} of {head}; its rows were checked up to there"
            if error is not None:
                report.add(
                    error[0],
                    None,
                    "view_stopped",
                    f"the {name} view stopped at position {error[0]} ({error[1]}): {applied}",
                )
            else:
                report.add(
                    position + 1,
                    None,
                    "view_behind",
                    f"the {name} view is behind the log (deposit-ledger projections catch-up): {applied}",
                )
        return positions

    def _verify_audit_rows(
        self, cursor: Any, report: VerifyReport, position: int, shop: str | None, deposit: ShopDeposit, event: Any
    ) -> None:
        # Every row of the event, each channel share of a refund included, and no other.
        expected = self.audit_trail.expected_rows(
            position, deposit.shop_id, deposit.currency, deposit.frozen_minor, event
        )
        stored = self.audit_trail.stored_rows(cursor, position)
        if not stored:
            report.add(position, shop, "audit_trail", "the event has no audit-trail row")
        elif len(stored) != len(expected):
            detail = f"the event has {len(stored)} audit-trail rows, the events say {len(expected)} (one per share)"
            report.add(position, shop, "audit_trail", detail)
        else:
            for want, have in zip(expected, stored, strict=True):
                if want != have:
                    difference = _difference(want, have, self.audit_trail.column_names())
                    report.add(
                        position, shop, "audit_trail", f"share {have[1]}: {difference}" if have[1] else difference
                    )
                    break

    def _verify_trade_number(
        self, cursor: Any, report: VerifyReport, position: int, shop: str, paid: Paid, shops: _ShopNames
    ) -> None:
        # The payment must hold its pair; a pair held by another deposit is one payment counted twice.
        pair = (paid.channel.value, paid.trade_no)
        holder = trade_numbers.holders(cursor, [pair]).get(pair)
        named = f"{paid.channel.value} trade number {paid.trade_no}"
        if holder is None:
            report.add(position, shop, "trade_number", f"{named} has no row: another shop could be paid it again")
        elif holder.deposit_hex != paid.originator_id.hex:
            other = shops.get(holder.deposit_hex) or f"deposit {holder.deposit_hex}"
            detail = f"{named} was paid into shop {other} too (position {holder.position}): one payment counted twice"
            report.add(position, shop, "trade_number", detail)
        elif holder.position != position:
            report.add(position, shop, "trade_number", f"{named} names position {holder.position}, not {position}")
        else:
            report.trade_numbers_held += 1

    def _verify_unheld_trade_numbers(self, connection: Any, report: VerifyReport) -> None:
        # Rows that no payment explains would refuse a real payment of that trade number.
        cursor = connection.cursor()
        total = int(cursor.execute(f"SELECT COUNT(*) FROM {trade_numbers.TABLE}").fetchone()[0])
        if total == report.trade_numbers_held:
            return
        position_column = self.store.position_column
        unexplained = 0
        for position, channel, trade_no in self._stream(
            connection,
            f"SELECT t.position, t.channel, t.trade_no FROM {trade_numbers.TABLE} t "
            f"LEFT JOIN {self.store.events_table} e ON e.{position_column} = t.position AND e.topic = ? "
            f"WHERE e.{position_column} IS NULL ORDER BY t.position",
            (trade_numbers.PAID_TOPIC,),
        ):
            unexplained += 1
            detail = f"{channel} trade number {trade_no} names no payment at its position: inserted"
            report.add(position, None, "trade_number", detail)
        rest = total - report.trade_numbers_held - unexplained
        if rest > 0:
            detail = f"{rest} trade-number rows name a payment of another trade number or deposit: inserted"
            report.add(None, None, "trade_number", detail)

    def _verify_orphans(self, connection: Any, report: VerifyReport) -> None:
        cursor = connection.cursor()
        position_column = self.store.position_column
        head = int(
            cursor.execute(f"SELECT COALESCE(MAX({position_column}), 0) FROM {self.store.events_table}").fetchone()[0]
        )
        for name, position in cursor.execute(
            "SELECT name, position FROM view_tracking WHERE position > ?", (head,)
        ).fetchall():
            report.add(
                head + 1, None, "truncated", f"{name} applied events up to {position}, but the log ends at {head}"
            )
        # Streamed like the passes before: a forged store may hold any number of such rows.
        for position, shop in self._stream(
            connection,
            f"SELECT position, shop_id FROM {self.audit_trail.table} "
            f"WHERE position NOT IN (SELECT {position_column} FROM {self.store.events_table}) ORDER BY position",
        ):
            report.add(position, shop, "audit_trail", "the audit-trail row has no event: inserted")
        for shop, position in self._stream(
            connection,
            f"SELECT shop_id, position FROM {self.balances.table} "
            f"WHERE deposit_id NOT IN (SELECT {self.store.deposit_key} FROM {self.store.events_table}) "
            "ORDER BY shop_id",
        ):
            report.add(position, shop, "balances", "the balances row has no events: inserted")
        # Loading such a deposit would start from the snapshot: a deposit without any history.
        for deposit, version in self._stream(
            connection,
            f"SELECT originator_id, originator_version FROM {self.store.snapshots_table} "
            f"WHERE originator_id NOT IN (SELECT originator_id FROM {self.store.events_table}) ORDER BY originator_id",
        ):
            detail = f"snapshot of deposit {stored_id(deposit)} at version {version} has no events: inserted"
            report.add(None, None, "snapshot", detail)

    def _decode(self, row: tuple[Any, ...]) -> DepositEvent:
        stored = StoredEvent(
            originator_id=UUID(stored_id(row[1])),
            originator_version=row[2],
            topic=row[3],
            state=_stored_bytes(row[4]),
        )
        event = self.mapper.to_domain_event(stored)
        if not isinstance(event, DepositEvent):
            raise ValueError(f"{type(event).__name__} is not a deposit event")
        return event

    def _snapshot_versions(self, cursor: Any, deposit_hex: str) -> set[int]:
        # The versions a deposit has snapshots at; each is read when the replay reaches it, so
        # one snapshot at a time is in memory (a long history has hundreds, each as large as
        # its bookkeeping).
        cursor.execute(
            f"SELECT originator_version FROM {self.store.snapshots_table} WHERE originator_id = ?",
            (self.store.deposit_param(deposit_hex),),
        )
        return {int(version) for (version,) in cursor.fetchall()}

    def _snapshot(self, cursor: Any, deposit_hex: str, version: int) -> DepositSnapshot | OutdatedSnapshot | None:
        # The snapshot at ``version``; None for a row that is no deposit snapshot (loading the
        # deposit would fail on it); OutdatedSnapshot for one an earlier release wrote, which
        # the ledger no longer reads, so it cannot mislead.
        cursor.execute(
            f"SELECT topic, state FROM {self.store.snapshots_table} WHERE originator_id = ? AND originator_version = ?",
            (self.store.deposit_param(deposit_hex), version),
        )
        topic, state = cursor.fetchone()
        stored = StoredEvent(
            originator_id=UUID(deposit_hex), originator_version=version, topic=topic, state=_stored_bytes(state)
        )
        try:
            snapshot = self.mapper.to_domain_event(stored)
        except OutdatedSnapshot as outdated:
            return outdated
        except ValueError:
            return None
        return snapshot if isinstance(snapshot, DepositSnapshot) else None

    # ----------------------------------------------------------------- export

    def export_audit(
        self,
        out: IO[str],
        *,
        file_format: str,
        deposit: UUID | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """Stream audit-trail rows with their chain hashes as CSV or JSON lines; return the count.

        A refund's channel shares are rows of their own (``share`` 1, 2, ...), each
        carrying the chain hash of the refund's event, which holds its lines.
        """
        conditions, params = [], []
        if deposit is not None:
            conditions.append("a.deposit_id = ?")
            params.append(deposit.hex)
        if start is not None:
            conditions.append("a.effective_at >= ?")
            params.append(stored_time(start))
        if end is not None:
            conditions.append("a.effective_at <= ?")
            params.append(stored_time(end))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = (
            "SELECT a.position, a.shop_id, a.type, a.currency, a.amount_minor, a.frozen_after_minor, a.actor, "
            "a.effective_at, a.recorded_at, a.channel, a.ref, a.reason, a.case_id, a.note, c.link, a.share "
            f"FROM {self.audit_trail.table} a LEFT JOIN event_chain c ON c.position = a.position "
            f"{where} ORDER BY a.position, a.share"
        )
        writer = csv.writer(out) if file_format == "csv" else None
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        count = 0
        with self.store.read_snapshot() as connection:
            for row in self._stream(connection, query, params):
                record = _export_record(row)
                if writer is not None:
                    writer.writerow([_csv_cell(key, record[key]) for key in EXPORT_COLUMNS])
                else:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        return count

    # ---------------------------------------------------------------- helpers

    def _stream(self, connection: Any, query: str, params: Any = ()) -> Iterator[tuple[Any, ...]]:
        # Rows arrive in batches; on PostgreSQL from a server-side cursor, so that memory
        # stays flat however large the store is.
        self._cursors += 1
        name = None if self.store.kind == "sqlite" else f"verify_{self._cursors}"
        cursor = connection.cursor() if name is None else connection.cursor(name=name)
        cursor.execute(query, params)
        while batch := cursor.fetchmany(READ_BATCH):
            yield from batch


EXPORT_COLUMNS = (
    "position",
    "shop_id",
    "type",
    "currency",
    "amount",
    "frozen_after",
    "actor",
    "effective_at",
    "recorded_at",
    "channel",
    "ref",
    "reason",
    "case",
    "note",
    "chain_hash",
    "share",
)
"""The columns of ``export audit``, in order (``share`` appended: 0, or a refund's channel share 1, 2, ...)."""


CSV_TEXT_COLUMNS = frozenset({"shop_id", "actor", "channel", "ref", "reason", "case", "note"})
"""The columns of ``export audit`` that hold text people typed: neutralised in CSV, never figures or hashes."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection)."""


class _ShopNames:
    """The shop id of a deposit, for problem reports, read from the balances view when asked.

    Looked up one deposit at a time (a deposit's shop is asked once, or once per
    problem), so memory stays flat however many shops the store holds.
    """

    def __init__(self, cursor: Any, balances_table: str) -> None:
        self._cursor = cursor
        self._query = f"SELECT shop_id FROM {balances_table} WHERE deposit_id = ?"

    def get(self, deposit_hex: str) -> str | None:
        """The shop id the balances view holds for ``deposit_hex``, or None."""
        row = self._cursor.execute(self._query, (deposit_hex,)).fetchone()
        return None if row is None else str(row[0])


def _csv_cell(column: str, value: Any) -> Any:
    # Auditors open the CSV in a spreadsheet: text that would start a formula gets a leading
    # apostrophe, which the spreadsheet shows as text. Amounts (a negative one starts with "-")
    # and hashes are figures and stay exact; JSON lines always stay exact.
    if value is None:
        return ""
    if column in CSV_TEXT_COLUMNS and isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


def _export_record(row: tuple[Any, ...]) -> dict[str, Any]:
    currency = row[3]
    return {
        "position": row[0],
        "shop_id": row[1],
        "type": row[2],
        "currency": currency,
        "amount": None if row[4] is None else format_minor(row[4], currency),
        "frozen_after": format_minor(row[5], currency),
        "actor": row[6],
        "effective_at": fixed_width_time(row[7]),
        "recorded_at": fixed_width_time(row[8]),
        "channel": row[9],
        "ref": row[10],
        "reason": row[11],
        "case": row[12],
        "note": row[13],
        "chain_hash": bytes(row[14]).hex() if row[14] is not None else None,
        "share": row[15],
    }


def _check_all_frozen(report: VerifyReport, position: int, shop: str | None, deposit: ShopDeposit) -> None:
    # A command that takes money in freezes it (after settling debts) before it ends; replay's
    # arithmetic alone accepts a Paid without its Frozen, which every command forbids.
    if deposit.balance.unfrozen_minor:
        amount = format_minor(deposit.balance.unfrozen_minor, deposit.currency)
        report.add(position, shop, "unfrozen", f"{amount} paid in was never frozen by the command that took it")


def _topic_and_history(rows: Iterator[tuple[Any, ...]]) -> tuple[str, Iterator[tuple[Any, ...]]]:
    # The first event's topic says whose history it is (a deposit's or a reconciliation's).
    first = next(rows)
    return str(first[3]), chain_rows([first], rows)


def _stored_bytes(state: bytes | str) -> bytes:
    # A row edited by hand may hold text where the ledger wrote a blob.
    return state.encode() if isinstance(state, str) else bytes(state)


def _merge_by_position(
    events: Iterator[tuple[Any, ...]], links: Iterator[tuple[Any, ...]]
) -> Iterator[tuple[int, tuple[Any, ...] | None, bytes | None]]:
    # A full outer join of events and chain links on position, in position order.
    event = next(events, None)
    link = next(links, None)
    while event is not None or link is not None:
        event_position = event[0] if event is not None else None
        link_position = link[0] if link is not None else None
        if link_position is None or (event_position is not None and event_position < link_position):
            assert event is not None
            yield event[0], event, None
            event = next(events, None)
        elif event_position is None or link_position < event_position:
            assert link is not None
            yield link[0], None, bytes(link[1])
            link = next(links, None)
        else:
            assert event is not None and link is not None
            yield event[0], event, bytes(link[1])
            event, link = next(events, None), next(links, None)


def _difference(expected: tuple[Any, ...], stored: tuple[Any, ...], names: tuple[str, ...] | None = None) -> str:
    for index, (want, have) in enumerate(zip(expected, stored, strict=False)):
        if want != have:
            column = names[index] if names else f"column {index + 1}"
            return f"{column} is {have!r}, the events say {want!r}"
    return "the row differs from what the events say"
