"""``deposit-ledger keys``: create (secret shown once), list, revoke; the store keeps only digests."""

from __future__ import annotations

import hashlib

from ledger.store.urls import resolve_store
from tests.cli.conftest import Run
from tests.conftest import fetch_all


def test_keys_create_list_revoke(cli: Run, store_url: str) -> None:
    created = cli("keys create order-service --role finance --json")
    assert created.code == 0, created.err
    answer = created.json()
    assert list(answer) == ["name", "role", "key"]
    assert answer["name"] == "order-service"
    assert answer["role"] == "finance"
    secret = answer["key"]
    assert secret.startswith("dlk_")
    stored = fetch_all(resolve_store(store_url), "SELECT * FROM api_keys")
    assert secret not in repr(stored)
    assert hashlib.sha256(secret.encode()).hexdigest() in repr(stored)

    listed = cli("keys list --json").json()
    assert [(key["name"], key["role"], key["revoked_at"]) for key in listed] == [("order-service", "finance", None)]
    assert "dlk_" not in cli("keys list").out

    assert cli("keys revoke order-service").code == 0
    assert cli("keys list --json").json()[0]["revoked_at"] is not None


def test_keys_refusals_are_one_line(cli: Run) -> None:
    assert cli("keys create a --role finance").code == 0
    again = cli("keys create a --role risk")
    assert again.code == 1
    assert again.err_lines == ["deposit-ledger: a key named a exists already (names are never reused, even revoked)"]
    wrong = cli("keys create b --role boss")
    assert wrong.code == 2
    assert wrong.err_lines == ["deposit-ledger: unknown role 'boss': expected one of auditor, risk, finance, admin"]
    assert cli("keys revoke nobody").code == 1
