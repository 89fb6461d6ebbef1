"""Where the application gets a shop's deposit: loading, the in-process cache, and its freshness.

The one object that knows how a deposit is rebuilt (from its latest snapshot and
the events after it), which deposits this process keeps between commands, and
when a kept one may be used as it is. Commands never build a deposit themselves.

The cache follows one rule: a kept deposit is trusted as of its version, the
version this process last committed or read, and no further. Before it decides
anything it is either brought up to date (PostgreSQL, where several writers are
the point) or used as it is and confirmed afterwards (SQLite, where one process is
the usual writer: a write that was behind fails on its version and is decided
again; an answer that writes nothing asks the store once). docs/performance.md
tells what each costs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import EventStore, IntegrityError

from domain import (
    Balance,
    DepositEvent,
    InvariantBroken,
    Opened,
    ShopDeposit,
    ShopNotFound,
    deposit_id,
    project_deposit,
)
from ledger.store.snapshots import DepositSnapshot, OutdatedSnapshot, project_stored

DEPOSIT_CACHE_SIZE = 2_000
"""Deposits kept in memory between commands; each is checked for newer events before use."""


class StaleDeposit(IntegrityError):
    """A cached deposit was behind the store: the command is decided again on the stored one."""


class LatestVersions(Protocol):
    """The recorder's one query for many deposits' latest versions."""

    def latest_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Each deposit's latest version; deposits without events are absent."""


class CheckedOut(NamedTuple):
    """A deposit taken for one command's exclusive use."""

    deposit: ShopDeposit
    unconfirmed: bool
    """Taken from the cache without asking the store: what the command decides must be confirmed."""


class DepositRepository:
    """Loads deposits and keeps the recently used ones, each trusted as of its own version."""

    def __init__(
        self,
        aggregates: Repository[UUID],
        events: EventStore[UUID],
        snapshots: EventStore[UUID] | None,
        recorder: LatestVersions,
        *,
        confirm_after_use: bool,
    ) -> None:
        """Read through the library's ``aggregates`` repository and event stores.

        ``confirm_after_use`` (SQLite) uses a cached deposit as it is and leaves the
        store to refuse a write that was behind; otherwise (PostgreSQL) a cached
        deposit is brought up to date before it is used.
        """
        self._aggregates = aggregates
        self._events = events
        self._snapshots = snapshots
        self._recorder = recorder
        self._confirm_after_use = confirm_after_use
        self._cache: OrderedDict[UUID, ShopDeposit] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------- loading

    def load(self, deposit: UUID, version: int | None = None) -> ShopDeposit | None:
        """The deposit as stored (at ``version``, else its latest), or None if it has no events."""
        try:
            found: ShopDeposit = self._aggregates.get(deposit, version=version, projector_func=project_stored)
        except AggregateNotFoundError:
            return None
        except OutdatedSnapshot:
            # A snapshot from before holds and appeals existed: replay the whole history
            # instead. The next snapshot interval writes a current one.
            events = self._events.get(deposit, lte=version)
            return project_deposit(None, (event for event in events if isinstance(event, DepositEvent)))
        return found

    def figures(self, deposit: UUID, version: int | None = None) -> Balance | None:
        """A deposit's figures alone, at ``version`` (else now), or None if it had no events by then.

        From its latest snapshot at or before ``version`` and the events after it: what a
        query needs, without the rules' bookkeeping (which, for a long history, is most
        of a snapshot).
        """
        start, figures = 0, None
        if self._snapshots is not None:
            try:
                snapshot = next(iter(self._snapshots.get(deposit, desc=True, limit=1, lte=version)), None)
            except OutdatedSnapshot:
                snapshot = None  # from before holds and appeals existed: replay the whole history
            if isinstance(snapshot, DepositSnapshot):
                start, figures = snapshot.originator_version, snapshot.figures()
        for event in self._events.get(deposit, gt=start, lte=version):
            if not isinstance(event, DepositEvent):
                raise InvariantBroken(f"{type(event).__name__} in the history of {deposit}")
            if figures is None:
                if not isinstance(event, Opened):
                    raise InvariantBroken(f"history of {deposit} starts with {event.type_name}")
                figures = Balance.opened(event)
            else:
                figures.apply(event)
        return figures

    def history(self, deposit: UUID, version: int | None = None) -> list[DepositEvent]:
        """The deposit's events up to ``version`` (else all), oldest first."""
        return [event for event in self._events.get(deposit, lte=version) if isinstance(event, DepositEvent)]

    def version_as_of(self, shop_id: str, moment: datetime) -> int:
        """The deposit's version as it stood at the effective time ``moment``; ``ShopNotFound`` before it opened.

        Effective times never go backwards within a deposit (the rules refuse it), so
        the events effective by ``moment`` are a prefix: its end is found by binary
        search, one event read per step, so a long history costs a few reads.
        """
        key = deposit_id(shop_id)
        last = next(iter(self._events.get(key, desc=True, limit=1)), None)
        if not isinstance(last, DepositEvent):
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        low, high = 0, last.originator_version
        while low < high:
            middle = (low + high + 1) // 2
            event = next(iter(self._events.get(key, gt=middle - 1, lte=middle)))
            if not isinstance(event, DepositEvent):
                raise InvariantBroken(f"{type(event).__name__} in the history of {key}")
            if event.effective_at <= moment:
                low = middle
            else:
                high = middle - 1
        if low == 0:
            raise ShopNotFound(f"shop {shop_id} had no deposit yet at {moment.isoformat()}")
        return low

    def shop_of(self, deposit: UUID) -> str:
        """The shop a deposit was opened for: its first event says."""
        opened = next(iter(self._events.get(deposit, lte=1)), None)
        if not isinstance(opened, Opened):
            raise InvariantBroken(f"deposit {deposit} does not start with Opened")
        return opened.shop_id

    # ----------------------------------------------------- the kept deposits

    def check_out(self, shop_id: str) -> CheckedOut | None:
        """The shop's deposit for one command's exclusive use, or None if it has none.

        Out of the cache while the command runs: a command that fails half way simply
        never checks it back in, so a half-changed object cannot serve the next one.
        """
        found = self._uncache(deposit_id(shop_id))
        if found is None:
            loaded = self.load(deposit_id(shop_id))
            return None if loaded is None else CheckedOut(loaded, unconfirmed=False)
        if self._confirm_after_use:
            return CheckedOut(found, unconfirmed=True)
        return CheckedOut(self._brought_up(found), unconfirmed=False)

    def take_many(self, shop_ids: list[str]) -> dict[str, ShopDeposit | None]:
        """Many shops' deposits, up to date, for a batch.

        One query per few hundred tells which exist and how far each has gone: cached
        deposits that are current need nothing more, shops without a deposit need no
        load at all; only the rest are loaded.
        """
        ids = {shop_id: deposit_id(shop_id) for shop_id in shop_ids}
        with self._cache_lock:
            cached = {shop_id: self._cache.pop(key, None) for shop_id, key in ids.items()}
        latest = self._recorder.latest_versions(list(ids.values()))
        found: dict[str, ShopDeposit | None] = {}
        for shop_id, key in ids.items():
            version, deposit = latest.get(key), cached[shop_id]
            if version is None:
                found[shop_id] = None
            elif deposit is not None and deposit.version <= version:
                found[shop_id] = deposit if deposit.version == version else self._brought_up(deposit)
            else:
                found[shop_id] = self.load(key)
        return found

    def check_in(self, deposit: ShopDeposit) -> None:
        """Keep a deposit the store holds as it is (just committed, or confirmed) for the next command."""
        with self._cache_lock:
            self._cache[deposit.id] = deposit
            self._cache.move_to_end(deposit.id)
            while len(self._cache) > DEPOSIT_CACHE_SIZE:
                self._cache.popitem(last=False)

    def confirm_current(self, deposit: UUID, version: int) -> None:
        """``StaleDeposit`` unless ``version`` is the deposit's latest in the store."""
        if next(iter(self._events.get(deposit, gt=version, limit=1)), None) is not None:
            raise StaleDeposit(f"deposit {deposit} changed in another process since it was cached")

    def confirm_versions(self, versions: dict[UUID, int]) -> None:
        """``StaleDeposit`` unless each deposit's latest version in the store is the one given: one query."""
        latest = self._recorder.latest_versions(list(versions))
        stale = [deposit for deposit, version in versions.items() if latest.get(deposit, 0) != version]
        if stale:
            raise StaleDeposit(f"deposit {stale[0]} changed in another process since it was cached")

    def _uncache(self, deposit: UUID) -> ShopDeposit | None:
        with self._cache_lock:
            return self._cache.pop(deposit, None)

    def _brought_up(self, deposit: ShopDeposit) -> ShopDeposit:
        # A cached deposit with the events other processes saved since it was cached.
        newer = self._events.get(deposit.id, gt=deposit.version)
        brought_up = project_deposit(deposit, (event for event in newer if isinstance(event, DepositEvent)))
        if brought_up is None:
            raise InvariantBroken(f"deposit {deposit.id} vanished while being brought up to date")
        return brought_up
