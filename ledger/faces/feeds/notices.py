"""Notices derived from events and the clock, for systems that do not want raw events.

- ``DepositShort``: an event left a funded deposit short and started a top-up clock
  (``Deducted`` or ``RequirementChanged`` with ``top_up_due``): how much, and by when.
- ``ShopRestricted``: that top-up deadline passed with the shortfall still open.
- ``RefundDue``: the settlement window of a closing shop is over and nothing (a hold,
  an open appeal, a deduction still appealable) stands in the way of its refund: told at
  the first moment the refund would pass, the settlement due time or the end of the last
  appeal window after it.
- ``AppealOpened`` (from ``AppealFiled``) and ``AppealResolved`` (from
  ``AppealRejected``: rejected; ``DeductionReversed``: upheld).

**Deterministic.** A notice derived from an event has the id of that event's
position; a deadline notice has the id of its shop and its due time. Whether a
deadline notice is sent is decided from the deposit *as it stood at the due time*
(its events effective by then), never from the moment the relay happens to look.
Deciding again (after a crash, by a second relay, for a second subscription) gives
the same answer and the same id, so nothing is invented or dropped. A deadline is
decided as soon as either the shop records an event effective after it (the
deposit's events are in effective-time order, so the past is then settled) or the
clock passes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain import (
    AppealFiled,
    AppealRejected,
    ClosureRequested,
    Deducted,
    DeductionReversed,
    DepositEvent,
    DepositState,
    PolicyHistory,
    Refused,
    RequirementChanged,
    Stamp,
    Status,
    deposit_id,
    project_deposit,
)
from domain.money import format_minor
from ledger.faces.feeds.messages import FeedMessage, ShopCard, body_bytes, iso, notice_message_id
from ledger.faces.reports import event_json

if TYPE_CHECKING:
    from ledger.app.service import DepositLedger

DEPOSIT_SHORT = "DepositShort"
SHOP_RESTRICTED = "ShopRestricted"
REFUND_DUE = "RefundDue"
APPEAL_OPENED = "AppealOpened"
APPEAL_RESOLVED = "AppealResolved"

NOTICE_TYPES: tuple[str, ...] = (DEPOSIT_SHORT, SHOP_RESTRICTED, REFUND_DUE, APPEAL_OPENED, APPEAL_RESOLVED)
"""The notices a subscription can ask for."""

DEADLINE_NOTICES: tuple[str, ...] = (SHOP_RESTRICTED, REFUND_DUE)
"""The notices that the clock, not an event, brings due."""

RELAY_ACTOR = "deposit-ledger relay"
"""Who a trial refund is stamped for when the relay asks the deposit whether one is due."""


@dataclass(frozen=True)
class Deadline:
    """A moment at which a notice may fall due: ``position`` is the event that set it."""

    shop_id: str
    notice_type: str
    due_at: datetime
    position: int


JUST_AFTER = timedelta(milliseconds=1)
"""Deadlines are kept to the millisecond: the first such moment after an appeal window's last one."""


def deadlines_set_by(event: DepositEvent, card: ShopCard, position: int, policies: PolicyHistory) -> list[Deadline]:
    """The deadlines an event starts: a top-up clock, a settlement window, a deduction's appeal window.

    A deduction's window is the one of the policy version in force when it was made.
    """
    deadlines = []
    if isinstance(event, Deducted | RequirementChanged) and event.top_up_due is not None:
        deadlines.append(Deadline(card.shop_id, SHOP_RESTRICTED, event.top_up_due, position))
    if isinstance(event, Deducted) and not event.settles_debt:
        # A new deduction can be appealed until its window ends, and a refund waits for that:
        # the refund may first fall due just after it (decided then, like any deadline).
        window_ends_at = event.effective_at + policies.appeal_window_for(event.effective_at).appeal_window
        first_after = window_ends_at - timedelta(microseconds=window_ends_at.microsecond % 1000) + JUST_AFTER
        deadlines.append(Deadline(card.shop_id, REFUND_DUE, first_after, position))
    if isinstance(event, ClosureRequested | AppealRejected | DeductionReversed) and event.settlement_due is not None:
        deadlines.append(Deadline(card.shop_id, REFUND_DUE, event.settlement_due, position))
    return deadlines


def event_notices(
    ledger: DepositLedger, event: DepositEvent, card: ShopCard, position: int, first_seq: int
) -> list[tuple[str, FeedMessage]]:
    """The notices an event brings, as (type, message), numbered from ``first_seq``."""
    made: list[tuple[str, dict[str, Any]]] = []
    if isinstance(event, Deducted | RequirementChanged) and event.top_up_due is not None:
        state = ledger.replay(card.shop_id, version=event.originator_version)
        made.append((DEPOSIT_SHORT, {"cause": event.type_name, **_shortfall(state)}))
    elif isinstance(event, AppealFiled):
        made.append((APPEAL_OPENED, event_json(event, card.currency)))
    elif isinstance(event, AppealRejected):
        made.append((APPEAL_RESOLVED, {"outcome": "rejected", **event_json(event, card.currency)}))
    elif isinstance(event, DeductionReversed):
        made.append((APPEAL_RESOLVED, {"outcome": "upheld", **event_json(event, card.currency)}))
    messages = []
    for offset, (notice_type, fields) in enumerate(made):
        data = {"shop_id": card.shop_id, "site": card.site, "position": position, **fields}
        message = FeedMessage(
            id=notice_message_id(notice_type, card.shop_id, str(position)),
            type=notice_type,
            shop_id=card.shop_id,
            site=card.site,
            position=position,
            seq=first_seq + offset,
            body=body_bytes(notice_type, event.recorded_at, data),
        )
        messages.append((notice_type, message))
    return messages


def deadline_notice(
    ledger: DepositLedger, deadline: Deadline, card: ShopCard, position: int, seq: int
) -> FeedMessage | None:
    """The notice a passed deadline brings, or None if the deposit had moved on by then.

    Decided from the deposit as it stood at the due time; ``position`` and ``seq``
    only place the message among the shop's others.
    """
    state = ledger.replay(card.shop_id, as_of=deadline.due_at)
    fields: dict[str, Any]
    if deadline.notice_type == SHOP_RESTRICTED:
        if state.top_up_due != deadline.due_at or state.status is not Status.RESTRICTED:
            return None
        fields = _shortfall(state)
    else:
        if not _refund_first_allowed_at(ledger, card.shop_id, deadline.due_at):
            return None
        fields = {
            "currency": state.currency,
            "refundable": format_minor(state.frozen_minor, state.currency),
            "settlement_due": iso(state.settlement_due) if state.settlement_due is not None else None,
        }
    data = {"shop_id": card.shop_id, "site": card.site, "position": deadline.position, **fields}
    return FeedMessage(
        id=notice_message_id(deadline.notice_type, card.shop_id, iso(deadline.due_at)),
        type=deadline.notice_type,
        shop_id=card.shop_id,
        site=card.site,
        position=position,
        seq=seq,
        body=body_bytes(deadline.notice_type, deadline.due_at, data),
    )


def _shortfall(state: DepositState) -> dict[str, Any]:
    return {
        "version": state.version,
        "currency": state.currency,
        "required": format_minor(state.required_minor, state.currency),
        "frozen": format_minor(state.frozen_minor, state.currency),
        "shortfall": format_minor(state.shortfall_minor, state.currency),
        "top_up_due": iso(state.top_up_due) if state.top_up_due is not None else None,
    }


def _refund_first_allowed_at(ledger: DepositLedger, shop_id: str, due_at: datetime) -> bool:
    # Several deadlines may be candidates (the settlement due time, each appeal window's end):
    # the notice belongs to the first moment a refund would pass, so it is told once.
    before = ledger.replay(shop_id, as_of=due_at - JUST_AFTER)
    if before.status is Status.CLOSING and _refund_allowed(ledger, before, due_at - JUST_AFTER):
        return False
    return _refund_allowed(ledger, ledger.replay(shop_id, as_of=due_at), due_at)


def _refund_allowed(ledger: DepositLedger, state: DepositState, due_at: datetime) -> bool:
    # Ask the deposit itself, as it stood then, whether a refund at the due time would pass:
    # the refund's own rules (open holds, open appeals, the window) decide, not a copy of them.
    if state.status is not Status.CLOSING:
        return False
    events = ledger.events.get(deposit_id(state.shop_id), lte=state.version)
    deposit = project_deposit(None, (event for event in events if isinstance(event, DepositEvent)))
    assert deposit is not None
    try:
        trial = Stamp(effective_at=due_at, recorded_at=due_at, actor=RELAY_ACTOR)
        deposit.refund(stamp=trial, terms=ledger.policies.terms_at(due_at))
    except Refused:
        return False
    return True
