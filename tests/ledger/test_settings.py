"""The ledger's settings win: the library reads none of its own from the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import MalformedInput
from ledger import DepositLedger
from ledger.app.settings import refuse_library_variables
from ledger.store.urls import resolve_store
from tests.conftest import fetch_all

LIBRARY_VARIABLES = {"sqlite": "DEPOSITLEDGER_SQLITE_DBNAME", "postgresql": "DEPOSITLEDGER_POSTGRES_SCHEMA"}


def test_a_variable_the_library_reads_before_the_ledgers_store_is_refused(
    store_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = str(tmp_path / "elsewhere.db") if backend == "sqlite" else "elsewhere"
    monkeypatch.setenv(LIBRARY_VARIABLES[backend], elsewhere)

    with pytest.raises(MalformedInput, match=f"{LIBRARY_VARIABLES[backend]} is not a setting of the ledger"):
        DepositLedger(store_url, actor="tester")

    assert not (tmp_path / "elsewhere.db").exists()
    monkeypatch.delenv(LIBRARY_VARIABLES[backend])
    ledger = DepositLedger(store_url, actor="tester")
    try:
        assert ledger.recorder.max_notification_id() in (None, 0), "nothing was written where the ledger looked"
    finally:
        ledger.close()


def test_the_librarys_plain_variables_in_the_environment_change_nothing(
    store_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another program's settings for the library: another file, another schema, no tables, text ids.
    monkeypatch.setenv("SQLITE_DBNAME", str(tmp_path / "other.db"))
    monkeypatch.setenv("POSTGRES_SCHEMA", "other")
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("CREATE_TABLE", "n")
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", "text")

    ledger = DepositLedger(store_url, actor="tester")
    try:
        ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    finally:
        ledger.close()

    store = resolve_store(store_url)
    [(count,)] = fetch_all(store, f"SELECT count(*) FROM {store.events_table}")
    assert count == 1
    assert not (tmp_path / "other.db").exists()


def test_the_variables_are_checked_by_name_only() -> None:
    refuse_library_variables({"DEPOSIT_LEDGER_DB": "a.db", "SQLITE_DBNAME": "b.db"})
    with pytest.raises(MalformedInput, match=r"DEPOSITLEDGER_A \(and 1 more\)"):
        refuse_library_variables({"DEPOSITLEDGER_B": "", "DEPOSITLEDGER_A": "x"})
