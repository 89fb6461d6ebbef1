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

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from domain.money import MAX_AMOUNT_MINOR

ShopId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
"""1 to 64 letters, digits and ``_ . : -``, starting with a letter or digit."""

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
    """The shop's deposit account is opened with the amount the platform requires."""

    TOPIC: ClassVar[str] = "ShopDeposit.Opened"

    shop_id: ShopId
    site: SiteCode | None
    currency: CurrencyCode
    required_minor: PositiveAmountMinor


class Paid(DepositEvent):
    """Money arrived through a payment channel; it is frozen (or settles a debt) next."""

    TOPIC: ClassVar[str] = "ShopDeposit.Paid"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor
    channel: Channel
    trade_no: TradeNo
    payer: PayerAccount | None = None


class Frozen(DepositEvent):
    """Paid money now counts for the shop and cannot be withdrawn."""

    TOPIC: ClassVar[str] = "ShopDeposit.Frozen"

    currency: CurrencyCode
    amount_minor: PositiveAmountMinor


class Deducted(DepositEvent):
    """The platform took money for a violation.

    ``amount_collected_minor`` is what this event takes: from the frozen balance, or,
    when ``settles_debt`` is true, from a payment that arrived while the case was
    owed. ``amount_owed_minor`` is what the case still owes after this event.
    """

    TOPIC: ClassVar[str] = "ShopDeposit.Deducted"

    currency: CurrencyCode
    amount_collected_minor: AmountMinor
    amount_owed_minor: AmountMinor
    reason: DeductionReason
    case_id: CaseId
    note: Note = ""
    settles_debt: bool = False


class ClosureRequested(DepositEvent):
    """The merchant closes the shop; the refund may follow once settlement is due."""

    TOPIC: ClassVar[str] = "ShopDeposit.ClosureRequested"

    settlement_due: AwareDatetime


class RefundLine(BaseModel):
    """How much of a refund goes back through one original payment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    trade_no: TradeNo
    amount_minor: PositiveAmountMinor


class Refunded(DepositEvent):
    """The remaining frozen balance went back to the channels it came from; the deposit is closed."""

    TOPIC: ClassVar[str] = "ShopDeposit.Refunded"

    currency: CurrencyCode
    amount_minor: AmountMinor
    lines: tuple[RefundLine, ...]


class Forfeited(DepositEvent):
    """The platform force-closed the shop and kept the remaining frozen balance."""

    TOPIC: ClassVar[str] = "ShopDeposit.Forfeited"

    currency: CurrencyCode
    amount_minor: AmountMinor
    reason: Reason


HISTORY_EVENTS: tuple[type[DepositEvent], ...] = (
    Opened,
    Paid,
    Frozen,
    Deducted,
    ClosureRequested,
    Refunded,
    Forfeited,
)
"""Every event type that can appear in a deposit's history, in lifecycle order."""


def event_fields(event: DepositEvent) -> dict[str, Any]:
    """The event's own fields, without the envelope every event shares."""
    return event.model_dump(exclude=_ENVELOPE)


_ENVELOPE = {"originator_id", "originator_version", "effective_at", "recorded_at", "actor"}
