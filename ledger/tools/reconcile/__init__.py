"""Reconciliation of the ledger with the payment channels' daily bills (对账单).

- :mod:`.bill`: what a bill line is, whichever channel wrote it, and its errors;
- :mod:`.wechat_pay` and :mod:`.alipay`: the two channels' bill readers;
- :mod:`.ledger_side`: the ledger's payments and refund shares of one channel, streamed;
- :mod:`.matching`: both sides joined on disk, in bounded memory, into a report;
- :mod:`.report`: what the report holds and its JSON.
"""

from ledger.tools.reconcile.matching import reconcile_bill
from ledger.tools.reconcile.report import ReconciliationReport

__all__ = ["ReconciliationReport", "reconcile_bill"]
