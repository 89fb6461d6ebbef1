"""The deposit model: ``ShopDeposit``, its events, exact money and the rules.

Pure Python and pydantic: no I/O, no clock, nothing from the rest of the project.
"""

from domain.balance import Balance, DepositState, Phase, Status, frozen_change
from domain.deposit import (
    DEFAULT_SETTLEMENT_WINDOW,
    STORED_TYPES,
    DepositSnapshot,
    ShopDeposit,
    deposit_id,
    project_deposit,
    require_deposit,
)
from domain.errors import (
    DuplicateConflict,
    LedgerError,
    MalformedInput,
    OutOfOrder,
    Refused,
    ShopAlreadyOpen,
    ShopNotFound,
    WrongStatus,
)
from domain.events import (
    HISTORY_EVENTS,
    Channel,
    ClosureRequested,
    Deducted,
    DeductionReason,
    DepositEvent,
    Forfeited,
    Frozen,
    Opened,
    Paid,
    Refunded,
    RefundLine,
    Stamp,
)

__all__ = [
    "DEFAULT_SETTLEMENT_WINDOW",
    "HISTORY_EVENTS",
    "STORED_TYPES",
    "Balance",
    "Channel",
    "ClosureRequested",
    "Deducted",
    "DeductionReason",
    "DepositEvent",
    "DepositSnapshot",
    "DepositState",
    "DuplicateConflict",
    "Forfeited",
    "Frozen",
    "LedgerError",
    "MalformedInput",
    "Opened",
    "OutOfOrder",
    "Paid",
    "Phase",
    "RefundLine",
    "Refunded",
    "Refused",
    "ShopAlreadyOpen",
    "ShopDeposit",
    "ShopNotFound",
    "Stamp",
    "Status",
    "WrongStatus",
    "deposit_id",
    "frozen_change",
    "project_deposit",
    "require_deposit",
]
