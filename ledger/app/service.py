"""``DepositLedger``: the event-sourced application that holds shop deposits.

It only orchestrates: parse the edges (amounts, channels, times), load the
deposit and the deposit policy, let ``ShopDeposit`` decide, save the new events
atomically, answer with a typed result. Optimistic-concurrency conflicts are
retried a bounded number of times; the clock is read here and nowhere in the
domain, and "now" is passed in wherever a status depends on it (``restricted``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import Mapper
from eventsourcing.utils import Environment, EnvType
from pydantic import BaseModel, ConfigDict

from domain import (
    Channel,
    DeductionReason,
    DepositEvent,
    DepositPolicy,
    DepositState,
    InvariantBroken,
    MalformedInput,
    Paid,
    PolicyHistory,
    Refused,
    ShopAlreadyOpen,
    ShopDeposit,
    ShopNotFound,
    Stamp,
    Status,
    TradeNumberTaken,
    deposit_id,
)
from domain.money import normalise_currency, to_minor
from ledger.app import parse as edge
from ledger.app.parse import (
    InputsRule,
    parse_actor,
    parse_audit_place,
    parse_case_id,
    parse_category,
    parse_choice,
    parse_effective_time,
    parse_page_limit,
    parse_shop_id,
    parse_time,
    parse_version,
)
from ledger.app.policy_file import load_policy
from ledger.app.repository import DepositRepository
from ledger.app.settings import refuse_library_variables
from ledger.app.unit_of_work import Batch, UnitOfWork
from ledger.store import library_overrides
from ledger.store.chain_keys import require_ring
from ledger.store.mapper import DepositMapper
from ledger.store.recorder import Alongside, LedgerRecorder, PostgresLedgerRecorder, tables_created_by
from ledger.store.trade_numbers import TradeNumberClaimed, ensure_table, holders
from ledger.store.urls import UNAVAILABLE, Store, StoreLocked, StoreNotMigrated, resolve_store
from ledger.tools.audit import Auditor
from ledger.views.runner import ViewFailed, ViewKeeper, ViewStatus
from projections.audit_trail import AuditRow, AuditTrailView
from projections.balances import ORDERS, BalancesView, CurrencyTotals

HELD_TRADE_NUMBERS_SIZE = 10_000
"""Trade numbers this process has seen refused because another shop holds them, kept to refuse them again
without writing: a holder never changes, so what is remembered stays true."""

SNAPSHOT_INTERVAL = 200
"""A snapshot every this many events keeps loading a deposit cheap whatever its history."""

AUTO_CATCH_UP_LIMIT = 10_000
"""Views lagging by at most this many events catch up when the ledger opens; more waits for
``projections catch-up``, so that opening a store never stalls on a long replay."""

INLINE_VIEWS_ENV_VAR = "DEPOSIT_LEDGER_INLINE_VIEWS"
"""``0`` leaves the views to projection workers (``projections run --follow``); default ``1``."""

_SWITCH_VALUES = {
    **dict.fromkeys(("1", "on", "true", "yes"), True),
    **dict.fromkeys(("0", "off", "false", "no"), False),
}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(tz=UTC)


class WorkQueue(BaseModel):
    """What waits for the back office, each list the oldest first."""

    model_config = ConfigDict(frozen=True)

    open_holds: list[AuditRow]
    """The placements of the holds still open."""
    pending_appeals: list[AuditRow]
    """The filings of the appeals awaiting a decision."""
    refunds_due: list[DepositState]
    """Closing deposits whose settlement is due: their refund may be paid."""
    overdue_top_ups: list[DepositState]
    """Open deposits whose top-up is overdue (restricted)."""


class CommandResult(BaseModel):
    """What a command left behind: the deposit's new state, and whether it changed anything."""

    model_config = ConfigDict(frozen=True)

    state: DepositState
    duplicate: bool = False


class TradeNumberHolder(BaseModel):
    """The shop that holds a channel trade number, and the payment that recorded it (minor units)."""

    model_config = ConfigDict(frozen=True)

    shop_id: str
    channel: Channel
    trade_no: str
    currency: str
    amount_minor: int
    effective_at: datetime
    position: int
    """The payment's position in the store's event log."""


def _taken(channel: str, trade_no: str, holder: str) -> TradeNumberTaken:
    return TradeNumberTaken(f"{channel} trade number {trade_no} was paid into shop {holder}: one payment, one shop")


class DepositLedger(Application[UUID]):
    """The ledger of shop security deposits, on an embedded SQLite file by default."""

    name = "DepositLedger"
    is_snapshotting_enabled = True
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {ShopDeposit: SNAPSHOT_INTERVAL}

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        actor: str | None = None,
        clock: Clock = utc_now,
        settlement_window: timedelta | None = None,
        policy: PolicyHistory | DepositPolicy | str | Path | None = None,
        env: dict[str, str] | None = None,
        inline_views: bool | None = None,
        migrate: bool = True,
    ) -> None:
        """Open the ledger on ``store`` (a :class:`Store`, a path or URL; default ``deposits.db``).

        ``actor`` names who the commands are recorded for unless a command says
        otherwise (default: the operating-system user); ``clock`` supplies the
        recording time and the default effective time. ``policy`` is the deposit
        policy (its versions, or a single one) or its TOML file (default:
        ``$DEPOSIT_LEDGER_POLICY``, else the one shipped with the package), read
        when a command first needs it; each command applies the version in force
        at its effective time. ``settlement_window`` replaces every version's (for tests).

        ``inline_views`` (default: ``$DEPOSIT_LEDGER_INLINE_VIEWS``, else on) keeps
        the views current inside each command's transaction, so a command's
        writes are in the views when it returns. Off, a command returns once its
        events are committed, opening the ledger catches nothing up, and the
        views are the projection workers' job: they lag until a worker applies
        the new events.

        ``migrate`` creates the store's tables (and its PostgreSQL schema) when any
        is missing; without it such a store raises :class:`StoreNotMigrated`. A
        store whose tables exist is opened without creating anything, so opening
        never waits behind another session's lock.
        """
        refuse_library_variables()
        self.store = store if isinstance(store, Store) else resolve_store(store)
        self.inline_views = inline_views_setting() if inline_views is None else inline_views
        self.default_actor = actor or _os_user()
        self.clock = clock
        self._policy_choice = policy
        self._settlement_window = settlement_window
        self._policies: PolicyHistory | None = None
        self._held_trade_numbers: OrderedDict[tuple[str, str], str] = OrderedDict()
        # Opening checks the catalogue and takes no lock: creating tables (and their indexes)
        # waits behind any session's lock on them, so it is done only when something is missing.
        super().__init__(env={**self.store.environment(), **(env or {}), "CREATE_TABLE": "no"})
        self._recorder.chain_head.keys = require_ring(self.store)
        # The library's recorders all have create_table(); its types do not say so.
        recorders: list[Any] = [self.recorder, *([self.snapshots.recorder] if self.snapshots is not None else [])]
        view_classes = (BalancesView, AuditTrailView)
        missing = self.store.missing_tables(
            [table for recorder in recorders for table in tables_created_by(recorder)]
            + [*ViewKeeper.OWN_TABLES, *(view.table for view in view_classes)]
        )
        if missing and not migrate:
            super().close()
            raise StoreNotMigrated(
                f"{self.store.describe()} has no ledger tables (no {missing[0]}): run deposit-ledger migrate"
            )
        connection = self.store.connect()
        try:
            if missing:
                self.store.ensure_schema(connection)
                with self.store.creating_tables(connection):
                    for recorder in recorders:
                        recorder.create_table()
            self.views = ViewKeeper(self.store, self.mapper, view_classes, connection)
            if missing or not self.views.tables_current():
                self.views.ensure_tables()
            ensure_table(self.store, connection, self.mapper)
        except BaseException:
            connection.close()
            super().close()
            raise
        self.deposits = DepositRepository(
            self.repository, self.events, self.snapshots, self._recorder, confirm_after_use=self.store.kind == "sqlite"
        )
        """Loading, caching and freshness of the deposits."""
        self.work = UnitOfWork(
            self.deposits,
            save=lambda *objs, **kwargs: self.save(*objs, **kwargs),  # late: a subclass's save counts
            deposit_lock=lambda deposit_hex: self.store.deposit_lock(self.views.connection, deposit_hex),
            writing_turn=self._recorder.writing_turn,
            refusal_of=self._trade_number_taken,
        )
        """Batching, retries and the conflict policy of the commands."""
        if self.inline_views:
            self._recorder.after_insert = self.views.apply_inline
            self._recorder.after_commit = self.views.committed
            # Behind another session's lock on the events table, the views answer as they are.
            with contextlib.suppress(StoreLocked):
                self._refresh_views()

    def close(self) -> None:
        """Close the store's connections (the views' included)."""
        if hasattr(self, "views"):
            self.views.close()
        super().close()

    def batch(self) -> AbstractContextManager[Batch]:
        """Run many commands as one transaction.

        Inside the block each deposit is loaded once and kept in memory, and the
        commands' events are saved together, in the order they were recorded, when
        the block ends (or not at all if it raises). A command refused inside the
        block raises as usual and leaves no trace in the batch. Queries of one
        deposit (``deposit``, ``show``, ``history``) see the batch's commands; the
        views see them once the batch is saved. Concurrent writers are not retried
        here: the save raises ``IntegrityError`` and the caller runs the batch again (on
        SQLite also when another process wrote a deposit this process had cached: the
        batch used the cached one as it was, and its save finds that out).
        """
        return self.work.batch()

    def record_alongside(self, write: Alongside) -> None:
        """Inside a :meth:`batch`: run ``write`` in the transaction that saves the batch's events.

        ``write`` gets a cursor (``?`` placeholders) on the store, inside that
        transaction, and writes a table of the caller's own: it commits with the
        events or not at all. A batch that records no event saves nothing, and
        ``write`` is not run: the caller keeps its record some other way.
        """
        if self.work.current is None:
            raise RuntimeError("record_alongside needs a batch: only a batch's save can carry it")
        self.work.current.alongside.append(write)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's settings as the ledger gives them, and nothing from the process environment.

        The library's own way merges ``os.environ`` in, where a variable named after the
        application (``DEPOSITLEDGER_SQLITE_DBNAME``) beats the store the ledger chose, and
        any other (``COMPRESSOR_TOPIC``) changes how events are written: see
        :mod:`ledger.app.settings`.
        """
        settings = dict(type(self).env)
        if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
            settings["IS_SNAPSHOTTING_ENABLED"] = "y"
        settings.update(env or {})
        return Environment(name, settings)

    def construct_mapper(self) -> Mapper[UUID]:
        """Use the pydantic mapper with stable topics and class-version upcasting."""
        return DepositMapper(transcoder=self.factory.transcoder())

    # ----------------------------------------------------------------- commands

    def open(
        self,
        shop_id: str,
        *,
        currency: str | None = None,
        required: str | Decimal | None = None,
        site: str | None = None,
        categories: Iterable[str] = (),
        at: datetime | str | None = None,
        actor: str | None = None,
    ) -> CommandResult:
        """Open a shop's deposit account with the amount the platform requires.

        Without ``required``, the policy derives it from the ``site`` and the
        ``categories`` (the highest of their amounts) and sets the currency;
        with it, the amount is taken as given, exactly as before policies.
        """
        shop_id = parse_shop_id(shop_id)
        currency = edge.optional_text(currency, "currency")
        required = edge.optional_amount(required, "required amount")
        site = edge.optional_text(site, "site")
        site_code = site.strip().upper() if site is not None else None
        chosen = sorted({parse_category(category) for category in edge.texts(categories, "categories")})
        if chosen and site_code is None:
            raise InputsRule("categories_need_site", "categories need a site: the policy prices categories per site")
        policy_version: str | None = None
        effective_at = self._effective_at(at)
        # The version in force when the shop opens; "now" is read here, a moment before its stamp.
        opened_at = effective_at or self.clock()
        if required is None:
            if site_code is None or not chosen:
                raise InputsRule(
                    "required_or_site_and_categories",
                    "give the required amount, or a site and categories to derive it from the policy",
                )
            policy = self.policy_at(opened_at)
            code = self._site_currency(policy, site_code, currency)
            required_minor = policy.requirement_minor(site_code, chosen)
            policy_version = policy.version
        else:
            code = (
                normalise_currency(currency)
                if currency is not None
                else self._site_currency(self.policy_at(opened_at), site_code, None)
            )
            required_minor = to_minor(required, code)
            if chosen and site_code is not None:
                self.policy_at(opened_at).requirement_minor(site_code, chosen)  # names any category it lacks
        actor = self._actor(actor)

        def opening(existing: ShopDeposit | None) -> ShopDeposit:
            if existing is not None:
                raise ShopAlreadyOpen(f"shop {shop_id} already has a deposit")
            return ShopDeposit.open(
                shop_id=shop_id,
                site=site_code,
                currency=code,
                required_minor=required_minor,
                categories=chosen,
                policy_version=policy_version,
                stamp=self._stamp(effective_at, actor),
            )

        deposit = self.work.open(shop_id, opening)
        return CommandResult(state=deposit.state(self.clock()))

    def pay(
        self,
        shop_id: str,
        amount: str | Decimal,
        *,
        channel: str,
        ref: str,
        payer: str | None = None,
        at: datetime | str | None = None,
        actor: str | None = None,
        channel_time: datetime | str | None = None,
    ) -> CommandResult:
        """Record a payment through Alipay or WeChat Pay; it settles debts first, the rest is frozen.

        Accepted while the shop is open or closing; once it is closed or
        forfeited, only up to what it still owes. Idempotent by (channel, ref):
        the same payment again is a duplicate that changes nothing; the same
        trade number with another amount is refused.
        One trade number is one payment, ledger-wide: a (channel, ref) that
        another shop holds is refused (``TradeNumberTaken``, naming that shop).

        ``channel_time`` is when the channel says the money was paid, kept beside
        the effective time for a notification that arrives late: it may lie
        before the deposit's last event, never after the payment's effective time.
        """
        shop_id = parse_shop_id(shop_id)
        amount = edge.amount(amount)
        chosen_channel = parse_choice(Channel, channel, "channel")
        ref = edge.text(ref, "trade number")
        payer = edge.optional_text(payer, "payer")
        effective_at = self._effective_at(at)
        paid_at = self._channel_time(channel_time, effective_at)

        def pay(deposit: ShopDeposit, stamp: Stamp) -> bool:
            recorded = deposit.pay(
                amount_minor=to_minor(amount, deposit.currency),
                channel=chosen_channel,
                trade_no=ref,
                payer=payer,
                stamp=stamp,
                channel_time=paid_at,
            )
            # After the deposit's own rules, so a replay stays a duplicate: only a payment it
            # would record can be refused for a trade number another shop holds.
            if recorded:
                self._require_trade_number_free(chosen_channel, ref, shop_id)
            return recorded

        return self._change(shop_id, pay, effective_at, actor)

    def deduct(
        self,
        shop_id: str,
        amount: str | Decimal | None = None,
        *,
        reason: str,
        case: str,
        note: str = "",
        order_value: str | Decimal | None = None,
        at: datetime | str | None = None,
        actor: str | None = None,
    ) -> CommandResult:
        """Deduct a penalty for a violation; what the hold and frozen balance cannot cover is owed.

        Without ``amount`` the policy's catalogue prices it (``order_value`` for
        a share of the order), within the reason's daily cap. Idempotent by case
        id, like payments by trade number.
        """
        shop_id = parse_shop_id(shop_id)
        amount = edge.optional_amount(amount)
        order_value = edge.optional_amount(order_value, "order value")
        case = edge.text(case, "case id")
        note = edge.text(note, "note")
        if amount is not None and order_value is not None:
            raise InputsRule(
                "amount_or_order_value",
                "give an amount or an order value, not both: the order value prices by the policy",
            )
        chosen_reason = parse_choice(DeductionReason, reason, "reason")
        effective_at = self._effective_at(at)
        policies = self.policies
        if amount is None:
            return self._change(
                shop_id,
                lambda deposit, stamp: deposit.deduct_by_policy(
                    policy=policies.in_force_at(stamp.effective_at),
                    reason=chosen_reason,
                    case_id=case,
                    order_value_minor=None if order_value is None else to_minor(order_value, deposit.currency),
                    note=note,
                    stamp=stamp,
                ),
                effective_at,
                actor,
            )
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.deduct(
                amount_minor=to_minor(amount, deposit.currency),
                reason=chosen_reason,
                case_id=case,
                note=note,
                stamp=stamp,
                terms=policies.terms_at(stamp.effective_at),
            ),
            effective_at,
            actor,
        )

    def hold(
        self,
        shop_id: str,
        amount: str | Decimal,
        *,
        case: str,
        note: str = "",
        at: datetime | str | None = None,
        actor: str | None = None,
    ) -> CommandResult:
        """Hold part of the frozen balance for an open case; idempotent by case id."""
        shop_id = parse_shop_id(shop_id)
        amount = edge.amount(amount)
        case_id = parse_case_id(case)
        note = edge.text(note, "note")
        effective_at = self._effective_at(at)
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.hold(
                case_id=case_id, amount_minor=to_minor(amount, deposit.currency), note=note, stamp=stamp
            ),
            effective_at,
            actor,
        )

    def release(
        self, shop_id: str, *, case: str, note: str = "", at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """Release what a case holds: it settles what is owed, the rest is frozen again."""
        shop_id = parse_shop_id(shop_id)
        case_id = parse_case_id(case)
        note = edge.text(note, "note")
        effective_at = self._effective_at(at)
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.release(case_id=case_id, note=note, stamp=stamp),
            effective_at,
            actor,
        )

    def appeal(
        self, shop_id: str, *, case: str, note: str = "", at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """The merchant appeals the deduction of a case, within the policy's appeal window."""
        shop_id = parse_shop_id(shop_id)
        case_id = parse_case_id(case)
        note = edge.text(note, "note")
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.appeal(
                case_id=case_id, note=note, stamp=stamp, terms=policies.terms_at(stamp.effective_at)
            ),
            effective_at,
            actor,
        )

    def resolve_appeal(
        self,
        shop_id: str,
        *,
        case: str,
        upheld: bool,
        note: str = "",
        at: datetime | str | None = None,
        actor: str | None = None,
    ) -> CommandResult:
        """Record an appeal's outcome: upheld reverses the deduction, rejected lets it stand."""
        shop_id = parse_shop_id(shop_id)
        upheld = edge.flag(upheld, "upheld")
        case_id = parse_case_id(case)
        note = edge.text(note, "note")
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.resolve_appeal(
                case_id=case_id, upheld=upheld, note=note, stamp=stamp, terms=policies.terms_at(stamp.effective_at)
            ),
            effective_at,
            actor,
        )

    def change_categories(
        self,
        shop_id: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        at: datetime | str | None = None,
        actor: str | None = None,
    ) -> CommandResult:
        """Add and remove the shop's categories; the requirement follows the policy."""
        shop_id = parse_shop_id(shop_id)
        added = [parse_category(category) for category in edge.texts(add, "categories to add")]
        removed = [parse_category(category) for category in edge.texts(remove, "categories to remove")]
        if not added and not removed:
            raise InputsRule("categories_to_change", "give categories to add or to remove")
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.change_categories(
                policy=policies.in_force_at(stamp.effective_at), add=added, remove=removed, stamp=stamp
            ),
            effective_at,
            actor,
        )

    def apply_policy(
        self, shop_id: str, *, at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """Bring the shop's requirement in line with the policy in force (a new version)."""
        shop_id = parse_shop_id(shop_id)
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.apply_policy(policy=policies.in_force_at(stamp.effective_at), stamp=stamp),
            effective_at,
            actor,
        )

    def refund_excess(
        self, shop_id: str, *, at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """Refund the frozen money above the requirement; the shop stays open."""
        shop_id = parse_shop_id(shop_id)
        effective_at = self._effective_at(at)
        return self._change(
            shop_id, _always_changes(lambda deposit, stamp: deposit.refund_excess(stamp=stamp)), effective_at, actor
        )

    def close_shop(self, shop_id: str, *, at: datetime | str | None = None, actor: str | None = None) -> CommandResult:
        """The merchant closes the shop voluntarily; settlement is due after the window."""
        shop_id = parse_shop_id(shop_id)
        effective_at = self._effective_at(at)
        policies = self.policies

        def close(deposit: ShopDeposit, stamp: Stamp) -> None:
            policy = policies.in_force_at(stamp.effective_at)
            deposit.close(settlement_window=policy.settlement_window, stamp=stamp, policy_version=policy.version)

        return self._change(
            shop_id,
            _always_changes(close),
            effective_at,
            actor,
        )

    def refund(self, shop_id: str, *, at: datetime | str | None = None, actor: str | None = None) -> CommandResult:
        """Refund what remains to the channels it came from, once settlement is due and no appeal is possible."""
        shop_id = parse_shop_id(shop_id)
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            _always_changes(
                lambda deposit, stamp: deposit.refund(stamp=stamp, terms=policies.terms_at(stamp.effective_at))
            ),
            effective_at,
            actor,
        )

    def write_off(
        self, shop_id: str, *, case: str, reason: str, at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """Record what a closed or forfeited shop still owes on a case as a loss; idempotent by case id."""
        shop_id = parse_shop_id(shop_id)
        case_id = parse_case_id(case)
        reason = edge.text(reason, "reason")
        effective_at = self._effective_at(at)
        policies = self.policies
        return self._change(
            shop_id,
            lambda deposit, stamp: deposit.write_off(
                case_id=case_id, reason=reason, stamp=stamp, terms=policies.terms_at(stamp.effective_at)
            ),
            effective_at,
            actor,
        )

    def force_close(
        self, shop_id: str, *, reason: str, at: datetime | str | None = None, actor: str | None = None
    ) -> CommandResult:
        """The platform force-closes the shop; what remains is forfeited."""
        shop_id = parse_shop_id(shop_id)
        reason = edge.text(reason, "reason")
        effective_at = self._effective_at(at)
        return self._change(
            shop_id,
            _always_changes(lambda deposit, stamp: deposit.force_close(reason=reason, stamp=stamp)),
            effective_at,
            actor,
        )

    # ------------------------------------------------------------------ queries

    @property
    def policies(self) -> PolicyHistory:
        """Every version of the deposit policy, read on first use (with the settlement-window override, if any)."""
        if self._policies is None:
            choice = self._policy_choice
            if isinstance(choice, DepositPolicy):
                choice = PolicyHistory.of(choice)
            policies = choice if isinstance(choice, PolicyHistory) else load_policy(choice)
            if self._settlement_window is not None:
                window = {"settlement_window": self._settlement_window}
                policies = PolicyHistory(
                    versions=tuple(policy.model_copy(update=window) for policy in policies.versions)
                )
            self._policies = policies
        return self._policies

    def policy_at(self, at: datetime | str) -> DepositPolicy:
        """The version of the deposit policy in force at ``at`` (``Refused`` before the first)."""
        return self.policies.in_force_at(parse_time(at))

    @property
    def policy(self) -> DepositPolicy:
        """The version of the deposit policy in force now, by the ledger's clock."""
        return self.policy_at(self.clock())

    @property
    def settlement_window(self) -> timedelta:
        """How long after a voluntary closure the refund waits, now: the policy's, unless overridden."""
        return self.policy.settlement_window

    def deposit(self, shop_id: str) -> ShopDeposit:
        """The shop's deposit rebuilt from its events (and latest snapshot)."""
        shop_id = parse_shop_id(shop_id)
        deposit = self.work.find(shop_id)
        if deposit is None:
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        return deposit

    def show(self, shop_id: str) -> DepositState:
        """The shop's current figures, rebuilt from its events (and latest snapshot)."""
        if self.work.current is not None:
            return self.deposit(shop_id).state(self.clock())
        shop_id = parse_shop_id(shop_id)
        figures = self.deposits.figures(deposit_id(shop_id))
        if figures is None:
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        return figures.state(self.clock())

    def history(self, shop_id: str, *, as_of: datetime | str | None = None) -> list[DepositEvent]:
        """The events of the shop's deposit, oldest first; with ``as_of``, those effective by then.

        Inside a :meth:`batch`, the history without ``as_of`` includes the batch's events.
        """
        shop_id = parse_shop_id(shop_id)
        moment = parse_time(as_of) if as_of is not None else None
        version = self.deposits.version_as_of(shop_id, moment) if moment is not None else None
        events = self.deposits.history(deposit_id(shop_id), version)
        if self.work.current is not None and moment is None:
            events.extend(self.work.current.staged(deposit_id(shop_id)))
        if not events:
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        return events

    def replay(self, shop_id: str, *, as_of: datetime | str | None = None, version: int | None = None) -> DepositState:
        """The deposit as it stood at an effective time, or at a version, replayed from its events.

        Never reads the views; uses the latest snapshot at or before the version
        when there is one. Before the first event there is nothing to show:
        ``ShopNotFound``. The status is the one of that moment (or of the
        version's last event), so a top-up overdue then reads ``restricted``.
        """
        shop_id = parse_shop_id(shop_id)
        if version is not None:
            version = parse_version(version)
        moment = parse_time(as_of) if as_of is not None else None
        if moment is not None:
            at_time = self.deposits.version_as_of(shop_id, moment)
            version = at_time if version is None else min(version, at_time)
        figures = self.deposits.figures(deposit_id(shop_id), version)
        if figures is None:
            raise ShopNotFound(f"shop {shop_id} has no deposit at that moment")
        if version is not None and figures.version < version:
            raise Refused(f"shop {shop_id} has {figures.version} events, not {version}")
        # The status as it stood then, at the moment asked about (or at the version's last
        # event): restricted then, perhaps, though topped up since. A moment still to come
        # is answered as of now: a replay tells history, not what may happen.
        then = figures.last_effective_at if moment is None else min(moment, self.clock())
        return figures.state(then)

    def balance(self, shop_id: str) -> DepositState:
        """The shop's figures from the balances view: one indexed row, however long its history."""
        shop_id = parse_shop_id(shop_id)
        found = self.views.view(BalancesView.name)
        if not isinstance(found, BalancesView):
            raise InvariantBroken(f"the {BalancesView.name} view is a {type(found).__name__}")
        row = found.get(self.views.read(), shop_id, now=self.clock())
        if row is None:
            lag = sum(status.lag for status in self.views.status() if status.name == BalancesView.name)
            behind = f" in the balances view, which lags {lag} events (projections catch-up)" if lag else ""
            raise ShopNotFound(f"shop {shop_id} has no deposit{behind}")
        return row[0]

    def shops(
        self,
        *,
        status: str | None = None,
        site: str | None = None,
        underfunded: bool = False,
        overdue: bool = False,
        owing: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[DepositState]:
        """Deposits from the balances view, ordered by shop id.

        With ``limit``, a page: at most that many deposits, those whose shop ids sort
        after ``after`` (the last shop id of the previous page). A page costs about
        the same however deep it is.

        ``underfunded`` keeps the open deposits whose shortfall is above zero: the
        shops that must pay, whether they have paid anything yet or not.
        ``overdue`` keeps those whose top-up is overdue now: the restricted shops.
        ``owing`` keeps the deposits with a debt, whatever their status (closed
        and forfeited ones included: their debts are still collected).
        """
        filters = self._shop_filters(status, site, underfunded, overdue, owing)
        if after is not None:
            after = parse_shop_id(after)
        if limit is not None:
            limit = parse_page_limit(limit)
        return self._balances().select(self.views.read(), after=after, limit=limit, **filters)

    def shops_page(
        self,
        *,
        order: str = "shop",
        after: tuple[Any, ...] | None = None,
        limit: int = 50,
        status: str | None = None,
        site: str | None = None,
        underfunded: bool = False,
        overdue: bool = False,
        owing: bool = False,
    ) -> tuple[list[DepositState], tuple[Any, ...] | None]:
        """One page of :meth:`shops` in ``order`` (``shop``, ``shortfall``, ``top_up_due``) and the next page's key.

        ``after`` is the key the previous page returned (None: the first page).
        By shortfall the largest comes first; by top-up deadline the soonest, among
        the shops that have one.
        """
        if not isinstance(order, str) or order not in ORDERS:
            raise MalformedInput(f"unknown order {order!r}: expected one of {', '.join(ORDERS)}")
        keyed = ORDERS[order][1]
        if after is not None and not (
            isinstance(after, tuple)
            and len(after) == len(keyed)
            and all(_page_key_part(part) for part in after)
        ):
            raise MalformedInput(f"a page key by {order} is {len(keyed)} values: {', '.join(keyed)}")
        limit = parse_page_limit(limit)
        filters = self._shop_filters(status, site, underfunded, overdue, owing)
        return self._balances().page(self.views.read(), order=order, after=after, limit=limit, **filters)

    def shop_totals(
        self,
        *,
        status: str | None = None,
        site: str | None = None,
        underfunded: bool = False,
        overdue: bool = False,
        owing: bool = False,
    ) -> list[CurrencyTotals]:
        """Frozen, held and owed money per currency over the deposits :meth:`shops` would list."""
        filters = self._shop_filters(status, site, underfunded, overdue, owing)
        return self._balances().totals(self.views.read(), **filters)

    def work_queue(self, *, limit: int = 50) -> WorkQueue:
        """What waits for someone, the oldest first: open holds, appeals to decide, refunds due, overdue top-ups."""
        limit = parse_page_limit(limit)
        now = self.clock()
        cursor = self.views.read()
        trail = self.views.view(AuditTrailView.name)
        if not isinstance(trail, AuditTrailView):
            raise InvariantBroken(f"the {AuditTrailView.name} view is a {type(trail).__name__}")
        balances = self._balances()
        return WorkQueue(
            open_holds=trail.open_holds(cursor, limit),
            pending_appeals=trail.pending_appeals(cursor, limit),
            refunds_due=balances.refunds_due(cursor, now, limit),
            overdue_top_ups=balances.overdue_top_ups(cursor, now, limit),
        )

    def _balances(self) -> BalancesView:
        found = self.views.view(BalancesView.name)
        if not isinstance(found, BalancesView):
            raise InvariantBroken(f"the {BalancesView.name} view is a {type(found).__name__}")
        return found

    def _shop_filters(
        self, status: str | None, site: str | None, underfunded: bool, overdue: bool, owing: bool
    ) -> dict[str, Any]:
        # The filters of the shop queries, checked at the edge, with the "now" the restriction needs.
        if status is not None:
            status = parse_choice(Status, status, "status").value
        site = edge.optional_text(site, "site")
        return {
            "status": status,
            "site": site.strip().upper() if site is not None else None,
            "must_pay": edge.flag(underfunded, "underfunded"),
            "overdue": edge.flag(overdue, "overdue"),
            "owing": edge.flag(owing, "owing"),
            "now": self.clock(),
        }

    def audit(self, shop_id: str, *, after: tuple[int, int] | None = None, limit: int | None = None) -> list[AuditRow]:
        """The shop's audit-trail rows, oldest first.

        With ``limit``, a page: at most that many rows, those after ``after`` (the
        ``(position, share)`` of the previous page's last row). A page costs about
        the same however deep it is; past the last row it is empty.
        """
        shop_id = parse_shop_id(shop_id)
        if after is not None:
            after = parse_audit_place(after)
        if limit is not None:
            limit = parse_page_limit(limit)
        found = self.views.view(AuditTrailView.name)
        if not isinstance(found, AuditTrailView):
            raise InvariantBroken(f"the {AuditTrailView.name} view is a {type(found).__name__}")
        cursor = self.views.read()
        rows = found.rows(cursor, deposit_id(shop_id), after=after, limit=limit)
        if not rows and (after is None or not found.rows(cursor, deposit_id(shop_id), limit=1)):
            raise ShopNotFound(f"shop {shop_id} has no deposit")
        return rows

    def trade_number_holder(self, channel: str, trade_no: str) -> TradeNumberHolder | None:
        """Which shop holds a channel's trade number, and the payment it was: one indexed lookup.

        None when no shop holds it. Each (channel, trade number) is held by one
        shop at most, from the payment that first recorded it.
        """
        chosen = parse_choice(Channel, channel, "channel")
        trade_no = edge.text(trade_no, "trade number")
        claim = holders(self.views.read(), [(chosen.value, trade_no)]).get((chosen.value, trade_no))
        if claim is None:
            return None
        notification = next(iter(self.recorder.select_notifications(start=claim.position, limit=1)), None)
        paid = self.mapper.to_domain_event(notification) if notification is not None else None
        if not isinstance(paid, Paid):
            raise InvariantBroken(f"position {claim.position} holds no payment of {channel} {trade_no}")
        return TradeNumberHolder(
            shop_id=self.deposits.shop_of(paid.originator_id),
            channel=paid.channel,
            trade_no=paid.trade_no,
            currency=paid.currency,
            amount_minor=paid.amount_minor,
            effective_at=paid.effective_at,
            position=claim.position,
        )

    def auditor(self) -> Auditor:
        """Verification, checkpoints and exports over this ledger's store."""
        return Auditor(self.store, self.mapper)

    def projection_status(self) -> list[ViewStatus]:
        """Each view's position, the head of the event log, the lag and any stopping error."""
        return self.views.status()

    # ------------------------------------------------------------------ helpers

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save atomically; views not brought up to date inside the save catch up at once."""
        recordings = library_overrides.save(self, objs, kwargs)
        if self.inline_views and not self.views.current_after_insert:
            # Once the events are committed (inside a writing turn, at its end: the views
            # write on a connection of their own), the views that did not follow catch up.
            self._recorder.when_committed(self._refresh_views_if_reachable)
        return recordings

    @property
    def _recorder(self) -> LedgerRecorder | PostgresLedgerRecorder:
        # The recorder, as the ledger chose it (the library types it as any recorder).
        if not isinstance(self.recorder, LedgerRecorder | PostgresLedgerRecorder):
            raise InvariantBroken(f"the store gave a {type(self.recorder).__name__}, not the ledger's recorder")
        return self.recorder

    def _refresh_views_if_reachable(self) -> None:
        # Views that cannot follow just now (the database going away) must not turn a
        # committed command into a failure. They lag, and the next command, a catch-up or
        # a worker brings them up.
        with contextlib.suppress(*UNAVAILABLE):
            self._refresh_views()

    def _record(self, processing_event: ProcessingEvent[UUID]) -> Any:
        try:
            return library_overrides.record(self, processing_event)
        except TradeNumberClaimed as claimed:
            # Remembered, so that deciding again (a batch run anew) refuses those payments.
            for claim in claimed.claims:
                self._remember_held(claim.pair, self.deposits.shop_of(UUID(claim.deposit_hex)))
            raise

    def _require_trade_number_free(self, channel: Channel, trade_no: str, shop_id: str) -> None:
        # Refuse a trade number known to be held by another shop: by a payment earlier in the
        # batch, or as a refused insert taught this process. Anything else is decided by the
        # trade-number table's unique key when the payment is inserted.
        pair = (channel.value, trade_no)
        holder = self.work.current.trade_numbers.get(pair) if self.work.current is not None else None
        if holder is None:
            holder = self._held_trade_numbers.get(pair)
        if holder is not None and holder != shop_id:
            raise _taken(channel.value, trade_no, holder)

    def _trade_number_taken(self, claimed: TradeNumberClaimed) -> TradeNumberTaken:
        # Another shop holds a trade number a payment claimed: its row decided, and says which shop.
        first = claimed.claims[0]
        holder = self._held_trade_numbers.get(first.pair) or self.deposits.shop_of(UUID(first.deposit_hex))
        return _taken(first.channel, first.trade_no, holder)

    def _remember_held(self, pair: tuple[str, str], shop_id: str) -> None:
        held = self._held_trade_numbers
        held[pair] = shop_id
        held.move_to_end(pair)
        while len(held) > HELD_TRADE_NUMBERS_SIZE:
            held.popitem(last=False)

    def _refresh_views(self) -> None:
        # A short lag is caught up at once, so commands and queries never wait on a long
        # replay: a longer one is `projections catch-up`'s (or a worker's) job, and the
        # faces warn meanwhile. A view stopped by a poison event stays stopped, reported
        # by `projections status`; commands and queries carry on.
        lagging = [status.name for status in self.views.status() if 0 < status.lag <= AUTO_CATCH_UP_LIMIT]
        if lagging:
            with contextlib.suppress(ViewFailed):
                self.views.catch_up(lagging)

    def _site_currency(self, policy: DepositPolicy, site: str | None, currency: str | None) -> str:
        # The currency a policy-derived deposit is kept in; a --currency given beside it must agree.
        if site is None or (site not in policy.sites and currency is not None):
            if currency is None:
                raise InputsRule("currency_or_priced_site", "give a currency, or a site the policy prices")
            return normalise_currency(currency)
        code = policy.site(site).currency
        if currency is not None and normalise_currency(currency) != code:
            raise MalformedInput(f"policy {policy.version} keeps site {site} deposits in {code}, not {currency}")
        return code

    def _change(
        self,
        shop_id: str,
        command: Callable[[ShopDeposit, Stamp], bool],
        effective_at: datetime | None,
        actor: str | None,
    ) -> CommandResult:
        # Get the deposit, let the domain decide (True: it recorded events), commit: the unit of work's.
        actor = self._actor(actor)
        return self.work.change(
            shop_id,
            lambda deposit: command(deposit, self._stamp(effective_at, actor)),
            lambda deposit, changed: CommandResult(state=deposit.state(self.clock()), duplicate=not changed),
        )

    def _actor(self, actor: object) -> str:
        # Checked before the deposit is loaded: a bad name is malformed whatever the deposit's state.
        return parse_actor(self.default_actor if actor is None else actor)

    def _stamp(self, effective_at: datetime | None, actor: str | None) -> Stamp:
        recorded_at = self.clock()
        return Stamp(effective_at=effective_at or recorded_at, recorded_at=recorded_at, actor=self._actor(actor))

    def _effective_at(self, at: datetime | str | None) -> datetime | None:
        return None if at is None else parse_effective_time(at, self.clock())

    def _channel_time(self, value: datetime | str | None, effective_at: datetime | None) -> datetime | None:
        # The channel's own time of a payment: not in the future, not after the payment takes effect.
        if value is None:
            return None
        moment = parse_time(value)
        if moment > (effective_at or self.clock()):
            when = "effective time" if effective_at is not None else "present"
            raise MalformedInput(
                f"channel time {moment.isoformat()} lies after the payment's {when}: "
                "the channel cannot have been paid later than the ledger took the payment in"
            )
        return moment

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        library_overrides.take_snapshots(self, processing_event, SNAPSHOT_INTERVAL)


def inline_views_setting() -> bool:
    """Whether commands keep the views current themselves: ``$DEPOSIT_LEDGER_INLINE_VIEWS``, default on."""
    value = os.environ.get(INLINE_VIEWS_ENV_VAR, "").strip().lower()
    if not value:
        return True
    try:
        return _SWITCH_VALUES[value]
    except KeyError:
        raise MalformedInput(f"{INLINE_VIEWS_ENV_VAR}={value!r}: expected 1 or 0 (on or off)") from None


def _page_key_part(part: object) -> bool:
    # A value of a page key as the views store them: text, or an integer a BIGINT column holds.
    if isinstance(part, str):
        return len(part) <= 200
    return isinstance(part, int) and not isinstance(part, bool) and abs(part) < 2**63


def _os_user() -> str:
    # getpass reads LOGNAME/USER first, then the password database, which a
    # container may lack: record "unknown" rather than fail the command.
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _always_changes(command: Callable[[ShopDeposit, Stamp], None]) -> Callable[[ShopDeposit, Stamp], bool]:
    # Commands without an idempotency key change the deposit whenever they succeed.
    def run(deposit: ShopDeposit, stamp: Stamp) -> bool:
        command(deposit, stamp)
        return True

    return run
