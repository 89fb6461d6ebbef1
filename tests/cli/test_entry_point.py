"""The installed ``deposit-ledger`` program, run as a real process."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import SHOW_KEYS, at

PROGRAM = shutil.which("deposit-ledger")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sqlite_only("the installed program on deposits.db in its working directory"),
    pytest.mark.skipif(PROGRAM is None, reason="the deposit-ledger entry point is not installed (pip install -e .)"),
]


def deposit_ledger(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed program in ``cwd`` with a clean ledger environment."""
    assert PROGRAM is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    return subprocess.run(
        [PROGRAM, *shlex.split(line)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_installed_program_records_a_payment_in_the_working_directory(tmp_path: Path) -> None:
    opened = deposit_ledger(f"open tea-house --currency CNY --required 1700 --site CN --at {at()}", tmp_path)
    assert (opened.returncode, opened.stderr) == (0, "")
    paid = deposit_ledger(f"pay tea-house 1700 --channel alipay --ref A1 --at {at(days=1)} --json", tmp_path)
    assert (paid.returncode, paid.stderr) == (0, "")

    shown = deposit_ledger("show tea-house --json", tmp_path)

    assert (shown.returncode, shown.stderr) == (0, "")
    state = json.loads(shown.stdout)
    assert list(state) == SHOW_KEYS
    assert state == json.loads(paid.stdout)
    assert (state["status"], state["paid"], state["frozen"], state["version"]) == ("active", "1700.00", "1700.00", 3)
    assert (tmp_path / "deposits.db").is_file()


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("pay tea-house 12.345 --channel alipay --ref A1", id="bad-amount"),
        pytest.param("pay tea-house 10 --ref A1", id="missing-option"),
    ],
)
def test_the_installed_program_exits_2_with_one_line_on_malformed_input(tmp_path: Path, line: str) -> None:
    deposit_ledger(f"open tea-house --currency CNY --required 1700 --at {at()}", tmp_path)

    failed = deposit_ledger(line, tmp_path)

    assert failed.returncode == 2
    assert failed.stdout == ""
    assert len(failed.stderr.splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith("deposit-ledger: ")
    assert "Traceback" not in failed.stderr


def test_the_help_names_the_environment_variables_behind_the_global_options(tmp_path: Path) -> None:
    shown = deposit_ledger("--help", tmp_path)
    assert shown.returncode == 0
    text = " ".join(shown.stdout.replace("│", " ").split())
    for variable in ("DEPOSIT_LEDGER_DB", "DEPOSIT_LEDGER_POLICY", "DEPOSIT_LEDGER_ACTOR"):
        assert variable in text, f"{variable} missing from --help"
