"""The application around the deposit model: commands, queries, store and faces."""

from ledger.app.service import CommandResult, DepositLedger
from ledger.app.unit_of_work import ConcurrencyExhausted

__all__ = ["CommandResult", "ConcurrencyExhausted", "DepositLedger"]
