"""The relay's bookkeeping, in the store beside the events: subscriptions, positions, deliveries, deadlines.

- ``feed_subscriptions``: one row per webhook URL.
- ``feed_positions``: per target (``webhook:<id>``, ``nats:<stream>``), the position of
  the last event it has taken. It moves in the same transaction as what was taken
  (the deliveries queued, the deadlines noted), and only from the position the
  taker read: a second relay racing over the same events fails its move instead
  of queueing them twice. That is the exactly-once bookkeeping.
- ``feed_deliveries``: one row per message per subscription, with its body (the
  same bytes on every retry), attempts, next attempt and last error. ``pending``
  until a 2xx answer makes it ``delivered``; ``parked`` after the last retry.
- ``feed_deadlines``: deadlines (top-up, settlement) a subscription waits on.

Times are kept as integer milliseconds since the epoch, UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.faces.feeds.messages import FeedMessage
from ledger.faces.feeds.notices import Deadline
from ledger.faces.feeds.subscriptions import Subscription
from ledger.store.urls import Store

PENDING = "pending"
DELIVERED = "delivered"
PARKED = "parked"

MAX_ERROR_LENGTH = 300
"""Characters of an error kept per delivery: enough for a status line and a reason."""


def to_ms(moment: datetime) -> int:
    """A moment as integer milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Integer milliseconds since the epoch as a UTC moment."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Delivery:
    """One message on its way to one subscription."""

    id: str
    subscription: str
    message_id: str
    type: str
    shop_id: str
    position: int
    seq: int
    body: bytes
    status: str
    attempts: int
    next_attempt_ms: int
    last_attempt_ms: int | None
    last_error: str | None
    delivered_ms: int | None

    @property
    def failing(self) -> bool:
        """Parked, or waiting for a retry after a failed attempt."""
        return self.status == PARKED or (self.status == PENDING and self.attempts > 0)


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt at a delivery came to: ``error`` is None on success."""

    delivery: Delivery
    at_ms: int
    error: str | None
    next_attempt_ms: int | None
    """When to try again; None: no more tries, park it."""


_DELIVERY_COLUMNS = (
    "id, subscription, message_id, type, shop_id, position, seq, body, status, attempts, next_attempt_ms, "
    "last_attempt_ms, last_error, delivered_ms"
)


class FeedBook:
    """The relay's tables in one store, on a connection of its own."""

    def __init__(self, store: Store) -> None:
        """Open a connection to ``store``; call :meth:`ensure_tables` before first use."""
        self.store = store
        self.connection = store.connect()

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    def ensure_tables(self) -> None:
        """Create the tables and indexes if they are missing (safe to run concurrently)."""
        position = "BIGINT"
        with self.store.write_transaction(self.connection) as cursor:
            self.store.serialise_schema_changes(cursor)
            for statement in (
                "CREATE TABLE IF NOT EXISTS feed_subscriptions (id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, "
                "types TEXT NOT NULL, secret TEXT NOT NULL, created_ms BIGINT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS feed_positions (target TEXT PRIMARY KEY, position {position} NOT NULL)",
                "CREATE TABLE IF NOT EXISTS feed_deliveries (id TEXT PRIMARY KEY, subscription TEXT NOT NULL, "
                "message_id TEXT NOT NULL, type TEXT NOT NULL, shop_id TEXT NOT NULL, "
                f"position {position} NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, "
                "attempts INTEGER NOT NULL, next_attempt_ms BIGINT NOT NULL, last_attempt_ms BIGINT, "
                "last_error TEXT, delivered_ms BIGINT)",
                "CREATE INDEX IF NOT EXISTS feed_deliveries_waiting ON feed_deliveries "
                "(subscription, position, seq) WHERE status <> 'delivered'",
                "CREATE INDEX IF NOT EXISTS feed_deliveries_by_subscription ON feed_deliveries "
                "(subscription, position, seq)",
                "CREATE TABLE IF NOT EXISTS feed_deadlines (target TEXT NOT NULL, shop_id TEXT NOT NULL, "
                "notice_type TEXT NOT NULL, due_ms BIGINT NOT NULL, position BIGINT NOT NULL, "
                "PRIMARY KEY (target, shop_id, notice_type, due_ms))",
            ):
                cursor.execute(statement)

    # ------------------------------------------------------------ subscriptions

    def add_subscription(self, subscription: Subscription, head: int) -> tuple[Subscription, bool]:
        """Record a subscription starting after position ``head``; (the stored one, whether it is new)."""
        with self.store.write_transaction(self.connection) as cursor:
            cursor.execute(
                "INSERT INTO feed_subscriptions (id, url, types, secret, created_ms) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    subscription.id,
                    subscription.url,
                    ",".join(subscription.types),
                    subscription.secret,
                    to_ms(subscription.created_at),
                ),
            )
            created = cursor.fetchone() is not None
            if created:
                cursor.execute(
                    "INSERT INTO feed_positions (target, position) VALUES (?, ?) "
                    "ON CONFLICT (target) DO UPDATE SET position = excluded.position",
                    (webhook_target(subscription.id), head),
                )
        stored = self.subscription(subscription.id)
        assert stored is not None
        return stored, created

    def subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        cursor = self.connection.cursor()
        cursor.execute("SELECT id, url, types, secret, created_ms FROM feed_subscriptions ORDER BY created_ms, id")
        return [_subscription(row) for row in cursor.fetchall()]

    def subscription(self, subscription_id: str) -> Subscription | None:
        """One subscription, or None."""
        cursor = self.connection.cursor()
        cursor.execute(
            "SELECT id, url, types, secret, created_ms FROM feed_subscriptions WHERE id = ?", (subscription_id,)
        )
        row = cursor.fetchone()
        return _subscription(row) if row else None

    def remove_subscription(self, subscription_id: str) -> bool:
        """Forget a subscription with its position, deliveries and deadlines; False if there was none."""
        target = webhook_target(subscription_id)
        with self.store.write_transaction(self.connection) as cursor:
            cursor.execute("DELETE FROM feed_subscriptions WHERE id = ? RETURNING id", (subscription_id,))
            removed = cursor.fetchone() is not None
            cursor.execute("DELETE FROM feed_deliveries WHERE subscription = ?", (subscription_id,))
            cursor.execute("DELETE FROM feed_positions WHERE target = ?", (target,))
            cursor.execute("DELETE FROM feed_deadlines WHERE target = ?", (target,))
        return removed

    # ---------------------------------------------------------------- positions

    def position(self, target: str) -> int:
        """The position of the last event ``target`` has taken (0: none yet)."""
        cursor = self.connection.cursor()
        cursor.execute("SELECT position FROM feed_positions WHERE target = ?", (target,))
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def advance(self, target: str, read_from: int, to: int) -> bool:
        """Move ``target`` from ``read_from`` to ``to``; False if another relay moved it first."""
        with self.store.write_transaction(self.connection) as cursor:
            return _advance(cursor, target, read_from, to)

    def take(
        self,
        subscription_id: str,
        read_from: int,
        to: int,
        messages: Sequence[FeedMessage],
        noted: Iterable[Deadline],
        decided: Iterable[Deadline],
        now_ms: int,
    ) -> bool:
        """Queue ``messages``, note and drop deadlines, and move the position, in one transaction.

        False (and nothing written) if the position is no longer ``read_from``.
        """
        target = webhook_target(subscription_id)
        with self.store.write_transaction(self.connection) as cursor:
            if not _advance(cursor, target, read_from, to):
                return False  # nothing was written: another relay took these events
            if messages:
                cursor.executemany(
                    f"INSERT INTO feed_deliveries ({_DELIVERY_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, NULL) ON CONFLICT (id) DO NOTHING",
                    [
                        (
                            delivery_id(subscription_id, message.id),
                            subscription_id,
                            message.id,
                            message.type,
                            message.shop_id,
                            message.position,
                            message.seq,
                            message.body.decode(),
                            PENDING,
                            now_ms,
                        )
                        for message in messages
                    ],
                )
            for deadline in noted:
                cursor.execute(
                    "INSERT INTO feed_deadlines (target, shop_id, notice_type, due_ms, position) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (target, deadline.shop_id, deadline.notice_type, to_ms(deadline.due_at), deadline.position),
                )
            for deadline in decided:
                cursor.execute(
                    "DELETE FROM feed_deadlines WHERE target = ? AND shop_id = ? AND notice_type = ? AND due_ms = ?",
                    (target, deadline.shop_id, deadline.notice_type, to_ms(deadline.due_at)),
                )
        return True

    def deadlines(self, subscription_id: str) -> list[Deadline]:
        """The deadlines a subscription waits on, soonest first."""
        cursor = self.connection.cursor()
        cursor.execute(
            "SELECT shop_id, notice_type, due_ms, position FROM feed_deadlines WHERE target = ? "
            "ORDER BY due_ms, shop_id, notice_type",
            (webhook_target(subscription_id),),
        )
        return [Deadline(row[0], row[1], from_ms(int(row[2])), int(row[3])) for row in cursor.fetchall()]

    # --------------------------------------------------------------- deliveries

    def waiting(self, subscription_id: str, limit: int) -> list[Delivery]:
        """The oldest deliveries of a subscription not yet delivered, in shop order (position, seq)."""
        cursor = self.connection.cursor()
        cursor.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM feed_deliveries WHERE subscription = ? AND status <> 'delivered' "
            f"ORDER BY position, seq LIMIT {int(limit)}",
            (subscription_id,),
        )
        return [_delivery(row) for row in cursor.fetchall()]

    def next_attempt_ms(self) -> int | None:
        """When the soonest pending delivery of any subscription is due, or None."""
        cursor = self.connection.cursor()
        cursor.execute("SELECT MIN(next_attempt_ms) FROM feed_deliveries WHERE status = 'pending'")
        row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def record(self, results: Sequence[AttemptResult]) -> None:
        """Write what the attempts came to, in one transaction."""
        if not results:
            return
        with self.store.write_transaction(self.connection) as cursor:
            for result in results:
                if result.error is None:
                    cursor.execute(
                        "UPDATE feed_deliveries SET status = ?, attempts = attempts + 1, last_attempt_ms = ?, "
                        "delivered_ms = ?, last_error = NULL WHERE id = ?",
                        (DELIVERED, result.at_ms, result.at_ms, result.delivery.id),
                    )
                else:
                    status = PENDING if result.next_attempt_ms is not None else PARKED
                    cursor.execute(
                        "UPDATE feed_deliveries SET status = ?, attempts = attempts + 1, last_attempt_ms = ?, "
                        "next_attempt_ms = ?, last_error = ? WHERE id = ?",
                        (
                            status,
                            result.at_ms,
                            result.next_attempt_ms if result.next_attempt_ms is not None else result.at_ms,
                            result.error[:MAX_ERROR_LENGTH],
                            result.delivery.id,
                        ),
                    )

    def deliveries(self, *, failed_only: bool = False, limit: int = 100) -> list[Delivery]:
        """The newest deliveries (or only the failing ones), newest first."""
        where = "WHERE status = 'parked' OR (status = 'pending' AND attempts > 0)" if failed_only else ""
        cursor = self.connection.cursor()
        cursor.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM feed_deliveries {where} "
            f"ORDER BY position DESC, seq DESC, subscription LIMIT {int(limit)}"
        )
        return [_delivery(row) for row in cursor.fetchall()]

    def delivery(self, delivery_id_: str) -> Delivery | None:
        """One delivery, or None."""
        cursor = self.connection.cursor()
        cursor.execute(f"SELECT {_DELIVERY_COLUMNS} FROM feed_deliveries WHERE id = ?", (delivery_id_,))
        row = cursor.fetchone()
        return _delivery(row) if row else None

    def requeue(self, delivery_id_: str, now_ms: int) -> Delivery | None:
        """Make a delivery pending again, due now, its retries counted afresh; None if there is none."""
        with self.store.write_transaction(self.connection) as cursor:
            cursor.execute(
                "UPDATE feed_deliveries SET status = ?, attempts = 0, next_attempt_ms = ? WHERE id = ? RETURNING id",
                (PENDING, now_ms, delivery_id_),
            )
            found = cursor.fetchone() is not None
        return self.delivery(delivery_id_) if found else None


def webhook_target(subscription_id: str) -> str:
    """The name a subscription's position is kept under."""
    return f"webhook:{subscription_id}"


def delivery_id(subscription_id: str, message_id: str) -> str:
    """The id of one message's delivery to one subscription (what ``webhooks retry`` takes)."""
    return "dlv_" + hashlib.sha256(f"{subscription_id}|{message_id}".encode()).hexdigest()[:20]


def _advance(cursor: Any, target: str, read_from: int, to: int) -> bool:
    if read_from == 0:
        # A target's first move creates its row; a racing first move finds it there.
        cursor.execute(
            "INSERT INTO feed_positions (target, position) VALUES (?, 0) ON CONFLICT (target) DO NOTHING", (target,)
        )
    cursor.execute(
        "UPDATE feed_positions SET position = ? WHERE target = ? AND position = ? RETURNING position",
        (to, target, read_from),
    )
    return cursor.fetchone() is not None


def _subscription(row: Sequence[Any]) -> Subscription:
    return Subscription(
        id=row[0], url=row[1], types=tuple(str(row[2]).split(",")), secret=row[3], created_at=from_ms(int(row[4]))
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        subscription=row[1],
        message_id=row[2],
        type=row[3],
        shop_id=row[4],
        position=int(row[5]),
        seq=int(row[6]),
        body=str(row[7]).encode(),
        status=row[8],
        attempts=int(row[9]),
        next_attempt_ms=int(row[10]),
        last_attempt_ms=None if row[11] is None else int(row[11]),
        last_error=row[12],
        delivered_ms=None if row[13] is None else int(row[13]),
    )
