"""The relay: reads the store's log in commit order and feeds the webhook subscriptions, or a message bus.

**Webhooks.** For each subscription the relay first *takes* the events after its
position: in one transaction it queues the messages the subscription wants (the
event, the notices it brings, the deadline notices it settles), notes the
deadlines it starts, and moves the position (:class:`~.outbox.FeedBook`). Then it
*delivers* what is due: per shop, the oldest undelivered message first, and the
next one only after it succeeded, so a shop's messages arrive in commit order
while other shops go on. A failed attempt is retried with backoff
(:func:`~.sender.retry_delay`), then parked; a parked message holds back its
shop's later ones until ``webhooks retry`` gets it through. Finally it decides the
deadlines the clock has passed (:mod:`.notices`).

A relay stopped at any moment resends at most the message whose answer it had not
yet written down (the receiver sees the same ``webhook-id`` again, never an older
message after a newer one).

**Bus.** The relay publishes every event, batch by batch, waits for the broker's
acknowledgement, then moves the bus's position.

Clock, jitter and sleep are given to the relay, so that tests control time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from domain import DepositEvent, Opened, Refused, deposit_id
from ledger.app.service import DepositLedger
from ledger.faces.feeds.bus import SUBJECT_PREFIX, Bus, BusMessage, subject_for
from ledger.faces.feeds.messages import FeedMessage, ShopCard, event_message
from ledger.faces.feeds.notices import (
    NOTICE_TYPES,
    Deadline,
    deadline_notice,
    deadlines_set_by,
    event_notices,
)
from ledger.faces.feeds.outbox import PENDING, AttemptResult, Delivery, FeedBook, from_ms, to_ms
from ledger.faces.feeds.sender import WebhookSender, retry_delay, system_draw
from ledger.faces.feeds.subscriptions import Subscription
from ledger.store.recorder import PostgresLedgerRecorder
from ledger.store.urls import UNAVAILABLE, NotifyListener

READ_BATCH = 1000
"""Events taken per transaction."""

ROUND_LIMIT = 500
"""Deliveries attempted per round (one transaction records a round's answers)."""

SENDER_THREADS = 8
"""Shops delivered to at the same time (each shop's messages one after another)."""

SHOP_CARDS_CACHED = 10_000
"""Shops whose id, site and currency the relay remembers."""

DEADLINE_SEQ = 1_000_000
"""Where a deadline notice decided by the clock goes among the messages made at one position: after them."""

POLL_INTERVAL_S = 1.0
"""How often a following relay looks for new events without being told."""

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
"""The waits between attempts to reach a store or broker that went away."""

STOP_CHECK_S = 0.2
"""How often a waiting relay checks whether it was asked to stop."""

Clock = Callable[[], datetime]
Draw = Callable[[], float]
Sleep = Callable[[float], None]


class UnknownDelivery(Refused):
    """No delivery has that id."""


@dataclass
class RelayReport:
    """What a relay has done since it started."""

    events_taken: int = 0
    queued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    parked: int = 0
    published: int = 0
    notices_decided: int = 0


class ShopDirectory:
    """Each deposit's shop id, site and currency, from its ``Opened`` event (remembered, bounded)."""

    def __init__(self, ledger: DepositLedger) -> None:
        """Look shops up in ``ledger``'s events."""
        self._ledger = ledger
        self._cards: OrderedDict[UUID, ShopCard] = OrderedDict()

    def card(self, event: DepositEvent) -> ShopCard:
        """The card of the event's deposit."""
        if isinstance(event, Opened):
            card = ShopCard(event.shop_id, event.site, event.currency)
            self._remember(event.originator_id, card)
            return card
        return self.card_of(event.originator_id)

    def card_of(self, deposit: UUID) -> ShopCard:
        """The card of one deposit, from its first event."""
        card = self._cards.get(deposit)
        if card is not None:
            self._cards.move_to_end(deposit)
            return card
        first = next(iter(self._ledger.events.get(deposit, lte=1)))
        assert isinstance(first, Opened), f"deposit {deposit} does not start with Opened"
        card = ShopCard(first.shop_id, first.site, first.currency)
        self._remember(deposit, card)
        return card

    def _remember(self, deposit: UUID, card: ShopCard) -> None:
        self._cards[deposit] = card
        if len(self._cards) > SHOP_CARDS_CACHED:
            self._cards.popitem(last=False)


class Relay:
    """Feeds one store's events to its webhook subscriptions, or (given a bus) to that bus."""

    def __init__(
        self,
        ledger: DepositLedger,
        *,
        sender: WebhookSender | None = None,
        bus: Bus | None = None,
        clock: Clock | None = None,
        draw: Draw = system_draw,
        subject_prefix: str = SUBJECT_PREFIX,
    ) -> None:
        """``clock`` (default: the ledger's) decides what is due; ``draw`` gives the retry jitter in [0, 1)."""
        self.ledger = ledger
        self.bus = bus
        self.clock = clock or ledger.clock
        self.subject_prefix = subject_prefix
        self._draw = draw
        self._sender = sender
        self._owns_sender = False
        self.book = FeedBook(ledger.store)
        self.book.ensure_tables()
        self.directory = ShopDirectory(ledger)
        self.report = RelayReport()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Close what the relay opened (not the ledger, the sender or the bus it was given)."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._owns_sender and self._sender is not None:
            self._sender.close()
        self.book.close()

    # ---------------------------------------------------------------- one pass

    def run_once(self) -> RelayReport:
        """Take every new event, deliver (or publish) what is due, decide the deadlines passed."""
        if self.bus is not None:
            self._publish_pending(self.bus)
            return self.report
        for subscription in self.book.subscriptions():
            self._take_pending(subscription)
            self._decide_passed_deadlines(subscription)
            self._deliver_due(subscription)
        return self.report

    def next_due(self) -> datetime | None:
        """When the next retry or deadline falls due (None: nothing waits on the clock)."""
        if self.bus is not None:
            return None
        moments = [from_ms(ms)] if (ms := self.book.next_attempt_ms()) is not None else []
        for subscription in self.book.subscriptions():
            deadlines = self.book.deadlines(subscription.id)
            if deadlines:
                moments.append(deadlines[0].due_at)
        return min(moments, default=None)

    def retry(self, delivery_id: str) -> Delivery:
        """Send a delivery again now (delivered or parked alike), then deliver whatever else is due."""
        delivery = self.book.requeue(delivery_id, to_ms(self.clock()))
        if delivery is None:
            raise UnknownDelivery(f"no delivery {delivery_id}: see deposit-ledger webhooks deliveries")
        subscription = self.book.subscription(delivery.subscription)
        assert subscription is not None
        self._deliver_due(subscription)
        after = self.book.delivery(delivery_id)
        assert after is not None
        return after

    # ------------------------------------------------------------------ reading

    def _read(self, after: int) -> list[tuple[int, DepositEvent | None]]:
        notifications = self.ledger.recorder.select_notifications(start=after + 1, limit=READ_BATCH)
        read: list[tuple[int, DepositEvent | None]] = []
        for notification in notifications:
            event = self.ledger.mapper.to_domain_event(notification)
            read.append((notification.id, event if isinstance(event, DepositEvent) else None))
        return read

    # ------------------------------------------------------------------- taking

    def _take_pending(self, subscription: Subscription) -> None:
        target = f"webhook:{subscription.id}"
        wants_notices = any(subscription.wants(notice) for notice in NOTICE_TYPES)
        while True:
            read_from = self.book.position(target)
            read = self._read(read_from)
            if not read:
                return
            waiting: dict[str, list[Deadline]] = {}
            for deadline in self.book.deadlines(subscription.id):
                waiting.setdefault(deadline.shop_id, []).append(deadline)
            messages: list[FeedMessage] = []
            noted: list[Deadline] = []
            decided: list[Deadline] = []
            for position, event in read:
                if event is None:
                    continue
                card = self.directory.card(event)
                made: list[FeedMessage] = []
                # Deadlines the shop's time has gone past: its events are in effective-time order,
                # so the deposit as it stood at the due time is settled now.
                for deadline in list(waiting.get(card.shop_id, ())):
                    if deadline.due_at < event.effective_at:
                        waiting[card.shop_id].remove(deadline)
                        decided.append(deadline)
                        notice = deadline_notice(self.ledger, deadline, card, position, len(made))
                        if notice is not None:
                            made.append(notice)
                if subscription.wants(event.type_name):
                    made.append(event_message(event, card, position, len(made)))
                if wants_notices:
                    for notice_type, notice in event_notices(self.ledger, event, card, position, len(made)):
                        if subscription.wants(notice_type):
                            made.append(notice)
                    for deadline in deadlines_set_by(event, card, position, self.ledger.policies):
                        if subscription.wants(deadline.notice_type):
                            noted.append(deadline)
                            waiting.setdefault(card.shop_id, []).append(deadline)
                messages.extend(made)
            now_ms = to_ms(self.clock())
            if not self.book.take(subscription.id, read_from, read[-1][0], messages, noted, decided, now_ms):
                return  # another relay took these events
            self.report.events_taken += len(read)
            self.report.queued += len(messages)
            self.report.notices_decided += len(decided)

    def _decide_passed_deadlines(self, subscription: Subscription) -> None:
        now = self.clock()
        passed = [deadline for deadline in self.book.deadlines(subscription.id) if deadline.due_at <= now]
        if not passed:
            return
        position = self.book.position(f"webhook:{subscription.id}")
        messages = []
        for offset, deadline in enumerate(passed):
            card = self.directory.card_of(deposit_id(deadline.shop_id))
            notice = deadline_notice(self.ledger, deadline, card, position, DEADLINE_SEQ + offset)
            if notice is not None:
                messages.append(notice)
        if self.book.take(subscription.id, position, position, messages, (), passed, to_ms(now)):
            self.report.queued += len(messages)
            self.report.notices_decided += len(passed)

    # --------------------------------------------------------------- delivering

    def _deliver_due(self, subscription: Subscription) -> None:
        # Round by round: each shop's oldest waiting message, all shops at once, then one
        # transaction records every answer. A shop's next message is sent only after the
        # answer to its previous one is recorded, so a relay killed at any moment resends
        # only messages whose answers it had not recorded: never an older one after a newer.
        while heads := self._due_heads(subscription):
            results = list(self._threads().map(lambda head: self._send(subscription, head), heads))
            self.book.record(results)

    def _due_heads(self, subscription: Subscription) -> list[Delivery]:
        # Per shop: its oldest undelivered message, if that is due (not parked, not waiting for a retry).
        now_ms = to_ms(self.clock())
        heads: dict[str, Delivery] = {}
        seen: set[str] = set()
        for delivery in self.book.waiting(subscription.id, ROUND_LIMIT):
            if delivery.shop_id in seen:
                continue
            seen.add(delivery.shop_id)
            if delivery.status == PENDING and delivery.next_attempt_ms <= now_ms:
                heads[delivery.shop_id] = delivery
        # Shops past the first ROUND_LIMIT waiting messages are reached as those are delivered;
        # a shop held back by a parked message costs a read of its waiting rows per round.
        return list(heads.values())

    def _send(self, subscription: Subscription, delivery: Delivery) -> AttemptResult:
        # Signed with the real time: receivers check it against their own clocks. The
        # relay's clock (given, in tests) decides only what is due.
        error = self._webhook_sender().send(
            subscription.url, subscription.secret, delivery.message_id, delivery.body, datetime.now(tz=UTC)
        )
        at_ms = to_ms(self.clock())
        if error is None:
            self.report.delivered += 1
            return AttemptResult(delivery, at_ms, None, None)
        self.report.failed_attempts += 1
        delay = retry_delay(delivery.attempts + 1, self._draw)
        if delay is None:
            self.report.parked += 1
        next_ms = None if delay is None else at_ms + int(delay.total_seconds() * 1000)
        return AttemptResult(delivery, at_ms, error, next_ms)

    def _webhook_sender(self) -> WebhookSender:
        if self._sender is None:
            self._sender = WebhookSender()
            self._owns_sender = True
        return self._sender

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=SENDER_THREADS, thread_name_prefix="webhook")
        return self._pool

    # --------------------------------------------------------------- publishing

    def _publish_pending(self, bus: Bus) -> None:
        while True:
            read_from = self.book.position(bus.target)
            read = self._read(read_from)
            if not read:
                return
            messages = []
            for position, event in read:
                if event is None:
                    continue
                card = self.directory.card(event)
                message = event_message(event, card, position)
                subject = subject_for(card.site, card.shop_id, event.type_name, self.subject_prefix)
                messages.append(BusMessage(subject, message.id, message.body))
            bus.publish(messages)
            if not self.book.advance(bus.target, read_from, read[-1][0]):
                return  # another relay published these first; the broker dropped our copies
            self.report.events_taken += len(read)
            self.report.published += len(messages)


class RelayWorker:
    """Keeps a relay going: wakes on new events (NOTIFY on PostgreSQL, polling on SQLite) and on due retries."""

    def __init__(
        self,
        open_relay: Callable[[], Relay],
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        sleep: Sleep = time.sleep,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        """``open_relay`` opens a relay afresh (at start and after every reconnection)."""
        assert poll_interval_s > 0
        self._open_relay = open_relay
        self.poll_interval_s = poll_interval_s
        self._sleep = sleep
        self._on_notice = on_notice
        self._stop_requested = False
        self.report = RelayReport()

    def request_stop(self) -> None:
        """Stop after the round in hand (safe in a signal handler: it only sets a flag)."""
        self._stop_requested = True

    def follow(self) -> RelayReport:
        """Relay until asked to stop; reconnect with backoff when the store or the broker goes away."""
        backoff_s = BACKOFF_FIRST_S
        while not self._stop_requested:
            try:
                with self._session() as (relay, listener):
                    self._notice("relaying" + (f" to {relay.bus.target}" if relay.bus else " to webhooks"))
                    while not self._stop_requested:
                        self.report = relay.run_once()
                        backoff_s = BACKOFF_FIRST_S
                        self._wait(relay, listener)
            except UNAVAILABLE as error:
                self._notice(f"unavailable ({str(error).strip().splitlines()[0]}); reconnecting in {backoff_s:.1f}s")
                self._pause(backoff_s)
                backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
        self._notice(f"stopped: {self.report.delivered} delivered, {self.report.published} published")
        return self.report

    @contextmanager
    def _session(self) -> Iterator[tuple[Relay, NotifyListener | None]]:
        relay = self._open_relay()
        listener = None
        try:
            recorder = relay.ledger.recorder
            if isinstance(recorder, PostgresLedgerRecorder):
                listener = NotifyListener(relay.ledger.store, recorder.channel_name)
            yield relay, listener
        finally:
            if listener is not None:
                listener.close()
            relay.close()

    def _wait(self, relay: Relay, listener: NotifyListener | None) -> None:
        wait_s = self.poll_interval_s
        due = relay.next_due()
        if due is not None:
            wait_s = max(0.0, min(wait_s, (due - relay.clock()).total_seconds()))
        deadline = time.monotonic() + wait_s
        while not self._stop_requested:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return
            if listener is not None:
                if listener.wait(min(STOP_CHECK_S, remaining_s)):
                    return
            else:
                self._sleep(min(STOP_CHECK_S, remaining_s))

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested and (remaining_s := deadline - time.monotonic()) > 0:
            self._sleep(min(STOP_CHECK_S, remaining_s))

    def _notice(self, line: str) -> None:
        if self._on_notice is not None:
            self._on_notice(line)
