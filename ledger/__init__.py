"""The application around the deposit model: commands, queries, store and faces."""

from ledger.app.service import CommandResult, ConcurrencyExhausted, DepositLedger

__all__ = ["CommandResult", "ConcurrencyExhausted", "DepositLedger"]
