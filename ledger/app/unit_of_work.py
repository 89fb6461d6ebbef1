"""The unit of work: how a command's decision becomes one atomic save, alone or in a batch.

Batching, retries and the conflict policy live here and nowhere else.

- A command alone waits for its turn to write (the deposit's lock on PostgreSQL,
  the file's write lock on SQLite), gets its deposit from the repository, lets the
  domain decide, and saves what was decided. If another writer saved that deposit
  first, it is decided again on the deposit as stored: at once when the copy used
  was merely behind (:class:`StaleDeposit`), else after a random pause that doubles
  each time, so that writers who collided do not collide again in step; after
  ``MAX_ATTEMPTS`` it gives up (:class:`ConcurrencyExhausted`), having written nothing.
- Inside a :meth:`UnitOfWork.batch`, each deposit is loaded once and kept, the
  commands are decided on the batch's copies, and their events are saved together
  when the batch ends. A refused command leaves no trace in the batch. A conflict
  at the batch's save raises ``IntegrityError``: :meth:`UnitOfWork.retried`
  decides the whole batch again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain import DepositEvent, InvariantBroken, LedgerError, Paid, ShopDeposit, ShopNotFound, project_deposit
from domain import deposit_id as deposit_of
from ledger.app.repository import CheckedOut, DepositRepository, StaleDeposit
from ledger.store.recorder import Alongside
from ledger.store.trade_numbers import TradeNumberClaimed

MAX_ATTEMPTS = 8
"""How many times a command is tried when another writer saved the same deposit first."""

RETRY_PAUSE_FIRST_S = 0.01
"""The longest random pause before the second try; it doubles before each further try (1.28 s before the
eighth), so that a command gives up only after contention lasting a few seconds."""

MAX_BATCH_DEPOSITS = 100_000
"""Deposits one batch may hold in memory until it is saved: a bound on a batch's memory."""

_Result = TypeVar("_Result")


class ConcurrencyExhausted(LedgerError):
    """Other writers kept saving the same deposit first; nothing was written."""


def retry_pause_s(attempt: int) -> float:
    """A random pause before try ``attempt + 1``: up to ``RETRY_PAUSE_FIRST_S``, doubling with each try."""
    return random.uniform(0, RETRY_PAUSE_FIRST_S * 2 ** (attempt - 1))


class Batch:
    """What the commands of one :meth:`UnitOfWork.batch` have done so far, waiting for its single save.

    ``events`` are the events its commands recorded, in order. Each deposit is
    loaded once and kept; a command that succeeds hands its events over at once,
    and a command that raises after changing a deposit has that deposit rebuilt
    as the batch last accepted it (:meth:`attempt`).
    """

    def __init__(
        self,
        load: Callable[[str], CheckedOut | None],
        load_many: Callable[[list[str]], dict[str, ShopDeposit | None]],
    ) -> None:
        """A batch that gets deposits through ``load`` (one) and ``load_many`` (several at once, up to date)."""
        self._load = load
        self._load_many = load_many
        self.deposits: dict[str, ShopDeposit | None] = {}
        self.accepted_versions: dict[str, int] = {}
        self.changed: dict[str, ShopDeposit] = {}
        self.events: list[DepositEvent] = []
        self.trade_numbers: dict[tuple[str, str], str] = {}
        """The (channel, trade number) pairs the batch's payments hold, and the shop of each."""
        self.unconfirmed: dict[str, int] = {}
        """Deposits taken from the process's cache as they were, not checked against the store, by the version
        taken: one that records events is checked by their insert, the others when the batch is saved."""
        self.alongside: list[Alongside] = []
        """Writes of the caller's own that commit with the batch's events: :meth:`DepositLedger.record_alongside`."""
        self._touched: list[str] = []

    def find(self, shop_id: str) -> ShopDeposit | None:
        """The shop's deposit as the batch left it, loaded from the store on first use."""
        if shop_id not in self.deposits:
            checked_out = self._load(shop_id)
            if checked_out is not None and checked_out.unconfirmed:
                self.unconfirmed[shop_id] = checked_out.deposit.version
            self._hold({shop_id: None if checked_out is None else checked_out.deposit})
        self._touched.append(shop_id)
        return self.deposits[shop_id]

    def prefetch(self, shop_ids: Iterable[str]) -> None:
        """Load the deposits of many shops at once, before the commands ask for them one by one."""
        wanted = [shop_id for shop_id in dict.fromkeys(shop_ids) if shop_id not in self.deposits]
        if wanted:
            self._hold(self._load_many(wanted))

    def _hold(self, loaded: dict[str, ShopDeposit | None]) -> None:
        if len(self.deposits) + len(loaded) > MAX_BATCH_DEPOSITS:
            raise LedgerError(f"a batch holds at most {MAX_BATCH_DEPOSITS} deposits: save it and start another")
        for shop_id, deposit in loaded.items():
            self.deposits[shop_id] = deposit
            self.accepted_versions[shop_id] = deposit.version if deposit is not None else 0

    def accept(self, deposit: ShopDeposit) -> None:
        """Take the events a command recorded; they are saved with the batch."""
        events = deposit.collect_events()
        self.events.extend(events)
        for event in events:
            if type(event) is Paid:
                self.trade_numbers[(event.channel.value, event.trade_no)] = deposit.shop_id
        self.deposits[deposit.shop_id] = deposit
        self.accepted_versions[deposit.shop_id] = deposit.version
        self.changed[deposit.shop_id] = deposit

    def staged(self, deposit: UUID) -> list[DepositEvent]:
        """The events the batch holds for one deposit, oldest first."""
        return [event for event in self.events if event.originator_id == deposit]

    def attempt(self, command: Callable[[], _Result]) -> _Result:
        """Run one command; if it raises, undo whatever it did to the batch's deposits."""
        self._touched = []
        try:
            return command()
        except BaseException:
            for shop_id in self._touched:
                deposit = self.deposits[shop_id]
                if deposit is not None and deposit.version != self.accepted_versions[shop_id]:
                    self._rebuild(shop_id, deposit.id)
            raise

    def _rebuild(self, shop_id: str, deposit: UUID) -> None:
        # A command that raised half way (after recording some events): replay the
        # batch's accepted events onto the deposit as stored.
        stored = self._load(shop_id)
        rebuilt = project_deposit(None if stored is None else stored.deposit, self.staged(deposit))
        if rebuilt is None or rebuilt.version != self.accepted_versions[shop_id]:
            raise InvariantBroken(f"deposit {deposit} rebuilt at another version than the batch accepted")
        self.deposits[shop_id] = rebuilt
        if shop_id in self.changed:
            self.changed[shop_id] = rebuilt


class UnitOfWork:
    """Gets deposits for commands, saves what they decide, and decides again on a conflict."""

    def __init__(
        self,
        deposits: DepositRepository,
        *,
        save: Callable[..., Any],
        deposit_lock: Callable[[str], AbstractContextManager[Any]],
        writing_turn: Callable[[], AbstractContextManager[None]],
        refusal_of: Callable[[TradeNumberClaimed], LedgerError],
    ) -> None:
        """Work on ``deposits``; ``save`` stores deposits and events atomically.

        ``deposit_lock`` (by the deposit id's hex digits) and ``writing_turn`` are the
        store's ways of queueing writers; ``refusal_of`` words the refusal of a payment
        whose trade number another shop's row was found to hold when saving.
        """
        self.deposits = deposits
        self._save = save
        self._deposit_lock = deposit_lock
        self._writing_turn = writing_turn
        self._refusal_of = refusal_of
        self.current: Batch | None = None
        """The batch being decided, if any."""

    def find(self, shop_id: str) -> ShopDeposit | None:
        """The shop's deposit to read: as the batch left it, else as stored."""
        if self.current is not None:
            return self.current.find(shop_id)
        return self.deposits.load(deposit_of(shop_id))

    def open(self, shop_id: str, opening: Callable[[ShopDeposit | None], ShopDeposit]) -> ShopDeposit:
        """Save the deposit ``opening`` makes, given what the shop has already (which it refuses)."""

        def attempt() -> ShopDeposit:
            deposit = opening(self.find(shop_id))
            self._commit(deposit)
            return deposit

        return self._run(shop_id, attempt)

    def change(
        self,
        shop_id: str,
        decide: Callable[[ShopDeposit], bool],
        answer: Callable[[ShopDeposit, bool], _Result],
    ) -> _Result:
        """Let ``decide`` change the shop's deposit (True: it recorded events), save them, and answer.

        ``answer`` is given the deposit as saved and whether it changed (False: a
        duplicate), while the deposit is still this command's alone.
        """

        def attempt() -> _Result:
            deposit, unconfirmed = self._check_out(shop_id)
            version = deposit.version
            try:
                changed = decide(deposit)
            except LedgerError:
                if unconfirmed:
                    self.deposits.confirm_current(deposit.id, version)  # refused by the store's state, not a copy's
                raise
            if changed:
                try:
                    self._commit(deposit)
                except TradeNumberClaimed as claimed:
                    raise self._refusal_of(claimed) from None
                except IntegrityError as conflict:
                    if unconfirmed:  # decided on a copy that was behind: decide again on the stored one, at once
                        raise StaleDeposit(f"deposit {deposit.id} changed in another process") from conflict
                    raise
            elif unconfirmed:
                self.deposits.confirm_current(deposit.id, version)
            answered = answer(deposit, changed)
            if self.current is None:
                self.deposits.check_in(deposit)
            return answered

        return self._run(shop_id, attempt)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Decide many commands on kept deposits and save their events together when the block ends.

        Nothing is saved if the block raises. Concurrent writers are not retried
        here: the save raises ``IntegrityError`` (see :meth:`retried`).
        """
        if self.current is not None:
            raise RuntimeError("batches do not nest")
        # On SQLite a batch, like a command alone, uses a cached deposit as it is: the insert
        # of its events, or the check of those it left unchanged, finds out if it was behind.
        batch = self.current = Batch(self.deposits.check_out, self.deposits.take_many)
        try:
            yield batch
        finally:
            self.current = None
        self._confirm_unchanged(batch)
        if batch.events:
            self._save(*batch.events, *batch.changed.values(), alongside=batch.alongside)
        for deposit in batch.deposits.values():
            if deposit is not None:
                self.deposits.check_in(deposit)

    def _confirm_unchanged(self, batch: Batch) -> None:
        # The batch's answers about cached deposits it did not change (refusals, duplicates) hold
        # if those deposits were current: one query for them all, else the batch is decided again.
        unchanged = {
            deposit_of(shop_id): version
            for shop_id, version in batch.unconfirmed.items()
            if shop_id not in batch.changed
        }
        if unchanged:
            self.deposits.confirm_versions(unchanged)

    def _check_out(self, shop_id: str) -> CheckedOut:
        # Inside a batch the batch holds the deposit until it is saved.
        if self.current is not None:
            found = self.current.find(shop_id)
            checked_out = None if found is None else CheckedOut(found, unconfirmed=False)
        else:
            checked_out = self.deposits.check_out(shop_id)
        if checked_out is None:
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        return checked_out

    def _commit(self, deposit: ShopDeposit) -> None:
        # Save a command's events now, or hand them to the batch that saves them later.
        if self.current is not None:
            self.current.accept(deposit)
        else:
            self._save(deposit)

    def _run(self, shop_id: str, attempt: Callable[[], _Result]) -> _Result:
        if self.current is not None:
            # Nothing is written until the batch is saved: nothing to retry, only to undo.
            return self.current.attempt(attempt)
        with self._deposit_lock(deposit_of(shop_id).hex):
            for number in range(1, MAX_ATTEMPTS + 1):
                try:
                    # Writers queue for their turn before reading the deposit, so that another's write
                    # can hardly make theirs stale: the deposit's lock on PostgreSQL (taken above), the
                    # file's write lock here on SQLite. A turn that fails is rolled back whole.
                    with self._writing_turn():
                        return attempt()
                except StaleDeposit:
                    continue  # nobody to wait for: the next attempt reads the deposit as stored
                except IntegrityError:
                    if number < MAX_ATTEMPTS:
                        time.sleep(retry_pause_s(number))
        raise ConcurrencyExhausted(f"gave up after {MAX_ATTEMPTS} conflicting writes; nothing was written")
