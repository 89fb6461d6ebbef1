"""The command line refuses the library's own variables, which would override --db."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Run


def test_the_command_line_refuses_such_a_variable_in_one_line_and_writes_nowhere(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPOSITLEDGER_SQLITE_DBNAME", str(tmp_path / "b.db"))

    outcome = run(f"--db {tmp_path / 'a.db'} open tea --currency CNY --required 100")

    assert outcome.code == 2
    assert outcome.err_lines == [
        "deposit-ledger: environment variable DEPOSITLEDGER_SQLITE_DBNAME is not a setting of the ledger, which "
        "chooses its store itself: unset it (the ledger's own variables are named DEPOSIT_LEDGER_*)"
    ]
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "b.db").exists()
