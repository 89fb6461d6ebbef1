"""The actor a command is recorded for: any name people can read as it is, nothing that hides or reorders it."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import MalformedInput
from ledger import DepositLedger
from ledger.tools.journal import JournalReader, import_journal
from tests.conftest import writes_nothing

HIDING = ["eve\u202elanimda", "\u2066admin\u2069", "ad\u200bmin", "admin\x85", "admin\u2029", "\ufeffadmin"]


@pytest.mark.parametrize("actor", HIDING)
def test_the_python_api_refuses_an_actor_with_bidi_or_control_characters(ledger: DepositLedger, actor: str) -> None:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    with writes_nothing(ledger), pytest.raises(MalformedInput, match="bidi"):
        ledger.pay("tea", "10", channel="alipay", ref="A1", actor=actor)
    claimed = DepositLedger(ledger.store, actor=actor, clock=ledger.clock)
    try:
        with writes_nothing(ledger), pytest.raises(MalformedInput, match="bidi"):
            claimed.pay("tea", "10", channel="alipay", ref="A1")
    finally:
        claimed.close()


def test_a_journal_line_with_such_an_actor_is_rejected(ledger: DepositLedger, tmp_path: Path) -> None:
    path = tmp_path / "actors.jsonl"
    path.write_text(
        '{"op":"open","shop":"tea","at":"2025-01-01T00:00:00Z","currency":"CNY","required":"100",'
        '"actor":"risk\\u202eops"}\n'
        '{"op":"open","shop":"tea","at":"2025-01-01T00:00:00Z","currency":"CNY","required":"100",'
        '"actor":"风控 张三"}\n',
        encoding="utf-8",
    )
    rejected: list[str] = []
    with path.open(encoding="utf-8") as source:
        summary = import_journal(
            ledger, JournalReader(source, "jsonl"), on_reject=lambda result: rejected.append(str(result.reason))
        )
    assert summary.applied == 1 and len(rejected) == 1 and "bidi" in rejected[0]
    assert [event.actor for event in ledger.history("tea")] == ["风控 张三"]
