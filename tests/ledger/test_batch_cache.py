"""A batch uses the process's cached deposits as they are on SQLite; another process's write is still found out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from domain import Refused
from ledger import DepositLedger

pytestmark = pytest.mark.sqlite_only("on SQLite a batch trusts the cache; on PostgreSQL it always brings it up")


def test_a_batch_on_a_cached_deposit_reads_none_of_its_events(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("S1", currency="CNY", required="10.00")
    ledger.pay("S1", "1.00", channel="alipay", ref="A")
    reads: list[object] = []
    select_events = ledger.recorder.select_events

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return select_events(*args, **kwargs)

    monkeypatch.setattr(ledger.recorder, "select_events", counted)
    with ledger.batch():
        ledger.pay("S1", "1.00", channel="alipay", ref="B")
    assert reads == []
    assert ledger.show("S1").paid_minor == 200


def test_a_batch_changing_a_deposit_another_process_wrote_is_decided_again(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    ledger.open("S1", currency="CNY", required="10.00")
    ledger.pay("S1", "1.00", channel="alipay", ref="A")  # cached here
    reopen().pay("S1", "2.00", channel="alipay", ref="B")
    with pytest.raises(IntegrityError), ledger.batch():
        ledger.pay("S1", "3.00", channel="alipay", ref="C")
    with ledger.batch():
        ledger.pay("S1", "3.00", channel="alipay", ref="C")
    assert ledger.show("S1").paid_minor == 600


def test_a_refusal_on_a_deposit_another_process_wrote_is_decided_again(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    # A hold larger than the frozen balance is refused, unless the other process's payment is seen.
    ledger.open("S1", currency="CNY", required="10.00")
    ledger.pay("S1", "1.00", channel="alipay", ref="A")
    reopen().pay("S1", "9.00", channel="alipay", ref="B")
    with pytest.raises(IntegrityError), ledger.batch(), pytest.raises(Refused):
        ledger.hold("S1", "5.00", case="H1")
    with ledger.batch():
        ledger.hold("S1", "5.00", case="H1")
    assert ledger.show("S1").held_minor == 500
