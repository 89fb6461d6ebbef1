"""The immutable events of a shop deposit, as pydantic v2 models.

Every event names its deposit (``originator_id``) and its place in the deposit's
history (``originator_version``), when it happened in business terms
(``effective_at``), when the ledger recorded it (``recorded_at``) and who asked for
it (``actor``). Amounts are integers of the currency's minor unit, always next to
the ISO 4217 code they are counted in.

Each class has a stable ``TOPIC``, which is what the event store records: moving
or renaming a class in Python never orphans stored events. A change of an
event's fields raises its ``class_version`` and adds an ``upcast_vN_vM`` static
method that rewrites the stored dict of the older version.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from domain.money import MAX_AMOUNT_MINOR

SHOP_ID_MAX_CHARS = 64
"""The longest shop id, in characters (Unicode code points, NFC)."""

SHOP_ID_MAX_BYTES = 128
"""The longest shop id in UTF-8: 42 CJK characters, 64 Latin ones. Every store column, index and
key derived from a shop id holds this many bytes."""


def _nfc_within_bytes(shop_id: str) -> str:
    # One spelling per shop: its deposit id is derived from these exact code points.
    if not unicodedata.is_normalized("NFC", shop_id):
        raise ValueError("a shop id is stored in Unicode normal form C")
    if len(shop_id.encode("utf-8")) > SHOP_ID_MAX_BYTES:
        raise ValueError(f"a shop id has at most {SHOP_ID_MAX_BYTES} bytes in UTF-8")
    return shop_id


ShopId = Annotated[
    str,
    StringConstraints(pattern=rf"^[\p{{L}}\p{{Nd}}][\p{{L}}\p{{M}}\p{{Nd}}_.:-]{{0,{SHOP_ID_MAX_CHARS - 1}}}$"),
    AfterValidator(_nfc_within_bytes),
]
"""1 to 64 letters of any script (with their combining marks), digits and ``_ . : -``, starting
with a letter or digit, in NFC, at most 128 bytes in UTF-8: ``tea-house``, ``杭州茶叶铺``. No
whitespace, control, format (bidi, zero-width) or symbol characters."""

CaseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]
"""The platform's case (violation ticket) number: 1 to 64 characters."""

TradeNo = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
"""The payment channel's trade number (Alipay ``trade_no``, WeChat ``transaction_id``)."""

SiteCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
"""The marketplace site the shop sells on, upper case: ``CN``, ``US``, ``UK-CB``."""

Actor = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")]
"""Who asked for the change: an operator, a service account, a batch job."""

Note = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
"""Free text for people, up to 500 characters."""

Reason = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A one-line reason given by the platform, up to 200 characters."""

PayerAccount = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""The account the money came from, as the channel reports it."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 code, validated against Babel's currency list at the edge."""

AmountMinor = Annotated[int, Field(ge=0, le=MAX_AMOUNT_MINOR)]
"""An amount in integer minor units (fen, cent; yen for JPY)."""

PositiveAmountMinor = Annotated[int, Field(gt=0, le=MAX_AMOUNT_MINOR)]
"""An amount in integer minor units that must be above zero."""

CategoryCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
"""A product category as the policy names it, lower case: ``apparel``, ``jewelry``, ``3c-electronics``."""

PolicyVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")]
"""The version label of a deposit policy: ``2026.1``, ``2026-06-01``."""

RuleText = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""How the policy priced a deduction, in words, up to 300 characters."""


class Channel(StrEnum):
    """The payment channels a deposit is paid through and refunded to."""

    ALIPAY = "alipay"
    WECHAT_PAY = "wechat_pay"


class DeductionReason(StrEnum):
    """Why the platform deducts from a deposit (the seed's list, plus ``other``)."""

    FAKE_LISTING = "fake_listing"
    ORDER_BRUSHING = "order_brushing"
    LATE_SHIPMENT = "late_shipment"
    AFTER_SALES_DISPUTE = "after_sales_dispute"
    OTHER = "other"


class Stamp(BaseModel):
    """Who asked for a command and when: the part every event of the command shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor


class DepositEvent(BaseModel):
    """Base of every event in a deposit's history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str]
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int = Field(ge=1)
    effective_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor

    @property
    def type_name(self) -> str:
        """The event's name as the ledger reports it: ``Paid``, ``Frozen``..."""
        return type(self).__name__


class Opened(DepositEvent):
    """The shop's deposit account is opened with the amount the platform requires.

    Version 2 added the shop's ``categories`` and the ``policy_version`` the
    requirement was derived from (both empty when it was given by hand).
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Opened"
    class_version: ClassVar[int] = 2

    shop_id: ShopId
    site: SiteCode | None
    currency: CurrencyCode
    required_minor: PositiveAmountMinor
    categories: tuple[CategoryCode, ...] = ()
    policy_version: PolicyVersion | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 1 deposits were opened with a required amount given by hand."""
        state["categories"] = []
        state["policy_version"] = None


class Paid(DepositEvent):
    """Money arrived through a payment channel; it is frozen (or settles a debt) next.

    ``channel_time`` is when the channel itself says it was paid, when it was
    told: a notification that arrives late cannot be dated back before events
    already recorded, so the effective time is when the ledger took it in.
    Version 2 added it.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Paid"
    class_version: ClassVar[int] = 2

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    channel: Channel
    trade_no: TradeNo
    payer: PayerAccount | None = None
    channel_time: AwareDatetime | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 1 payments kept no channel time."""
        state["channel_time"] = None


class Frozen(DepositEvent):
    """Paid money now counts for the shop and cannot be withdrawn."""

    TOPIC: ClassVar[str] = "ShopDeposit.Frozen"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor


class Deducted(DepositEvent):
    """The platform took money for a violation.

    ``amount_collected_minor`` is what this event takes: from the case's hold and
    the frozen balance, or, when ``settles_debt`` is true, from money that came
    into the deposit while the case was owed (a payment, a released hold, a
    reversed deduction). ``amount_owed_minor`` is what the case still owes after
    this event.

    Version 2 added what came from the case's hold, how the policy priced the
    deduction (``order_value_minor``, ``rule``, ``policy_version``) and the
    ``top_up_due`` time it started, if it left a fully funded deposit short.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Deducted"
    class_version: ClassVar[int] = 2

    currency: CurrencyCode
    amount_collected_minor: AmountMinor
    amount_owed_minor: AmountMinor
    reason: DeductionReason
    case_id: CaseId
    note: Note = ""
    settles_debt: bool = False
    collected_from_hold_minor: AmountMinor = 0
    order_value_minor: PositiveAmountMinor | None = None
    rule: RuleText | None = None
    policy_version: PolicyVersion | None = None
    top_up_due: AwareDatetime | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 1 deductions had explicit amounts, no holds and no top-up clock."""
        state["collected_from_hold_minor"] = 0
        state["order_value_minor"] = None
        state["rule"] = None
        state["policy_version"] = None
        state["top_up_due"] = None


class ClosureRequested(DepositEvent):
    """The merchant closes the shop; the refund may follow once settlement is due.

    Version 2 added the ``policy_version`` whose settlement window set the due time
    (empty in closures recorded before policies).
    """

    TOPIC: ClassVar[str] = "ShopDeposit.ClosureRequested"
    class_version: ClassVar[int] = 2

    settlement_due: AwareDatetime
    policy_version: PolicyVersion | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 1 closures used the ledger's configured window."""
        state["policy_version"] = None


class RefundLine(BaseModel):
    """How much of a refund goes back through one original payment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    trade_no: TradeNo
    amount_minor: PositiveAmountMinor


class Refunded(DepositEvent):
    """The remaining frozen balance went back to the channels it came from; the deposit is closed.

    Recorded again on a closed deposit when an upheld appeal restores money to it
    after the refund: the correcting refund of that money.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Refunded"

    currency: CurrencyCode
    amount_minor: AmountMinor
    lines: tuple[RefundLine, ...]


class Forfeited(DepositEvent):
    """The platform force-closed the shop and kept the remaining frozen balance.

    Recorded again on a forfeited deposit when an upheld appeal restores money to
    it after the forced closure: that money goes where the rest of the deposit went.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Forfeited"

    currency: CurrencyCode
    amount_minor: AmountMinor
    reason: Reason


class RequirementChanged(DepositEvent):
    """The required deposit changed: the shop's categories changed, or a new policy applies.

    ``top_up_due`` is set when a higher requirement leaves a fully funded deposit
    short: the shop must top up by then or be restricted.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.RequirementChanged"

    currency: CurrencyCode
    old_required_minor: PositiveAmountMinor
    new_required_minor: PositiveAmountMinor
    categories: tuple[CategoryCode, ...]
    why: Reason
    policy_version: PolicyVersion
    top_up_due: AwareDatetime | None = None


class HoldPlaced(DepositEvent):
    """Part of the frozen balance is held for an open case: it cannot be refunded until released."""

    TOPIC: ClassVar[str] = "ShopDeposit.HoldPlaced"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    case_id: CaseId
    note: Note = ""


class HoldReleased(DepositEvent):
    """Held money comes back: it settles what is owed first, then is frozen again (``Frozen``)."""

    TOPIC: ClassVar[str] = "ShopDeposit.HoldReleased"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    case_id: CaseId
    note: Note = ""


class AppealFiled(DepositEvent):
    """The merchant appealed the deduction of a case, within the policy's appeal window."""

    TOPIC: ClassVar[str] = "ShopDeposit.AppealFiled"

    case_id: CaseId
    window_ends_at: AwareDatetime
    policy_version: PolicyVersion | None = None
    note: Note = ""


class AppealRejected(DepositEvent):
    """The appeal failed: the deduction stands.

    ``settlement_due`` is the restarted settlement due time when the appeal was
    filed while the deposit was closing (else empty).
    """

    TOPIC: ClassVar[str] = "ShopDeposit.AppealRejected"

    case_id: CaseId
    settlement_due: AwareDatetime | None = None
    policy_version: PolicyVersion | None = None
    note: Note = ""


class DeductionReversed(DepositEvent):
    """The appeal was upheld: what the case collected comes back, what it still owed is cancelled.

    The restored money settles what other cases owe first, then is frozen again
    (``Deducted`` with ``settles_debt``, ``Frozen``); on a deposit already closed
    it is then refunded or forfeited like the rest of it.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.DeductionReversed"

    currency: CurrencyCode
    case_id: CaseId
    reason: DeductionReason
    amount_restored_minor: AmountMinor
    amount_cancelled_minor: AmountMinor
    settlement_due: AwareDatetime | None = None
    policy_version: PolicyVersion | None = None
    note: Note = ""


class ExcessRefunded(DepositEvent):
    """Frozen money above the requirement went back to the channels it came from; the shop stays open."""

    TOPIC: ClassVar[str] = "ShopDeposit.ExcessRefunded"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    lines: tuple[RefundLine, ...]


class WrittenOff(DepositEvent):
    """The platform gave up collecting what a case still owes: the debt becomes a recorded loss.

    Recorded only on a closed or forfeited deposit, once the case's deduction is
    final (no appeal open, none possible any more). No money moves: the case owes
    ``amount_minor`` less, and the deposit's ``written_off`` figure grows by as much.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.WrittenOff"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    case_id: CaseId
    reason: Reason


HISTORY_EVENTS: tuple[type[DepositEvent], ...] = (
    Opened,
    Paid,
    Frozen,
    Deducted,
    ClosureRequested,
    Refunded,
    Forfeited,
    RequirementChanged,
    HoldPlaced,
    HoldReleased,
    AppealFiled,
    AppealRejected,
    DeductionReversed,
    ExcessRefunded,
    WrittenOff,
)
"""Every event type that can appear in a deposit's history, in lifecycle order."""


def event_fields(event: DepositEvent) -> dict[str, Any]:
    """The event's own fields, without the envelope every event shares."""
    return event.model_dump(exclude=_ENVELOPE)


_ENVELOPE = {"originator_id", "originator_version", "effective_at", "recorded_at", "actor"}
