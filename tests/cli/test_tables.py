"""The tables people read (``show``, ``history``, ``audit``, ``balance``, ``shops``, ``policy``, the demo):
every event type, in a narrow (80 columns) and a wide terminal, with no amount, status or word cut."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from domain.events import HISTORY_EVENTS
from tests.cli.conftest import Run, at

PROGRAM = shutil.which("deposit-ledger")
WIDTHS = [80, 200]
LONG_ACTOR = "risk-operations-team-shanghai-night-shift"
LONG_NOTE = "buyer 7731 says the parcel arrived empty; courier-tracking-number-SF1234567890123 confirms"

STORY = [
    f"open tea-house --site CN --category general --at {at()}",
    f"pay tea-house 2200 --channel alipay --ref A1 --payer tea@alipay --at {at(days=1)}",
    f"deduct tea-house 3000 --reason other --case OT-1 --note 'customs papers missing' --at {at(days=2)}",
    f"pay tea-house 1000 --channel wechat_pay --ref W1 --at {at(days=3)}",
    f"pay tea-house 4000 --channel alipay --ref A2 --at {at(days=4)}",
    f"hold tea-house 100 --case H-1 --note '{LONG_NOTE}' --at {at(days=5)}",
    f"release tea-house --case H-1 --at {at(days=6)}",
    f"deduct tea-house 50 --reason after_sales_dispute --case AS-1 --at {at(days=7)}",
    f"appeal tea-house --case AS-1 --at {at(days=8)}",
    f"resolve-appeal tea-house --case AS-1 --rejected --at {at(days=9)}",
    f"deduct tea-house 20 --reason late_shipment --case LS-1 --at {at(days=10)}",
    f"appeal tea-house --case LS-1 --at {at(days=11)}",
    f"resolve-appeal tea-house --case LS-1 --upheld --at {at(days=12)}",
    f"categories tea-house --add jewelry --at {at(days=13)}",
    f"categories tea-house --remove jewelry --at {at(days=14)}",
    f"refund-excess tea-house --at {at(days=15)}",
    f"close tea-house --at {at(days=50)}",
    f"refund tea-house --at {at(days=200)}",
    f"open flash-deals --currency CNY --required 12345678.90 --site CN --at {at()}",
    f"pay flash-deals 12345678.90 --channel wechat_pay --ref FD-W1 --at {at(days=1)}",
    f"deduct flash-deals 19876543.21 --reason order_brushing --case OB-1 --at {at(days=2)}",
    f"force-close flash-deals --reason 'repeated order brushing after two warnings' --at {at(days=3)}",
    f"write-off flash-deals --case OB-1 --reason 'merchant unreachable' --at {at(days=40)}",
    f"open sneaker-lab --currency USD --required 500 --site US --at {at()}",
]
"""Every event type at least once; a shop with eight-digit amounts, a long actor and a long note."""

SHOPS = ("tea-house", "flash-deals", "sneaker-lab")
AMOUNT = re.compile(r"^-?\d+(\.\d+)?$")


@pytest.fixture
def story(cli: Run) -> Run:
    """The story recorded on the test's store."""
    for line in STORY:
        outcome = cli(f"--actor {LONG_ACTOR} {line}")
        assert outcome.code == 0, (line, outcome.err)
    return cli


def table_lines(story: Run) -> Iterator[str]:
    """Every command that prints a table of the story."""
    yield "shops"
    yield "policy"
    for shop in SHOPS:
        yield from (f"show {shop}", f"history {shop}", f"audit {shop}", f"balance {shop}")


SHOWN_IN = {
    "shops": {"status", "required", "frozen", "held", "owed", "shortfall"},
    "history": None,
    "audit": None,
    "show": None,
    "balance": None,
    "policy": {"required"},
}
"""Which keys of a command's ``--json`` its table shows (None: all of them)."""


def words_that_must_stay_whole(story: Run, line: str) -> set[str]:
    """The amounts, statuses, reasons, channels and event types the table of ``line`` shows, from its ``--json``."""
    keys = SHOWN_IN[line.split()[0]]
    whole: set[str] = set()

    def collect(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for inner_key, inner in value.items():
                collect(inner, key if key == "required" else inner_key)
        elif isinstance(value, list):
            for item in value:
                collect(item, key)
        elif (
            isinstance(value, str)
            and (keys is None or key in keys)
            and key != "collected_from_hold"
            and (AMOUNT.match(value) or key in ("status", "type", "reason", "channel"))
        ):
            whole.update(value.split())

    collect(story(f"{line} --json").json())
    return whole


def assert_readable(text: str, width: int, whole: set[str]) -> None:
    """No line wider than the terminal, nothing cut with an ellipsis, every amount and status whole."""
    lines = text.splitlines()
    assert lines, "nothing printed"
    assert max(cell_len(line) for line in lines) <= width
    assert "…" not in text
    for word in whole:
        pattern = rf"(?<![\w.-]){re.escape(word)}(?![\w.-])"
        assert re.search(pattern, text), f"{word!r} is not whole in:\n{text}"


def test_the_story_records_every_event_type(story: Run) -> None:
    types = {entry["type"] for shop in SHOPS for entry in story(f"history {shop} --json").json()}
    assert types == {event.__name__ for event in HISTORY_EVENTS}


@pytest.mark.parametrize("width", WIDTHS)
def test_every_table_prints_every_event_type_without_cutting_a_figure(
    story: Run, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = {line: words_that_must_stay_whole(story, line) for line in table_lines(story)}
    monkeypatch.setenv("COLUMNS", str(width))
    for line in table_lines(story):
        outcome = story(line)
        assert (outcome.code, outcome.err) == (0, ""), line
        assert_readable(outcome.out, width, whole[line])
    history = story("history tea-house").out + story("history flash-deals").out
    for event in HISTORY_EVENTS:
        assert event.__name__ in history
    assert "after_sales_dispute" in history.split()


@pytest.mark.sqlite_only("the installed program on an SQLite file")
@pytest.mark.skipif(PROGRAM is None, reason="the deposit-ledger entry point is not installed (pip install -e .)")
@pytest.mark.parametrize("width", WIDTHS)
def test_the_installed_program_prints_every_table_in_a_narrow_and_a_wide_terminal(
    story: Run, width: int, store_url: str, tmp_path: Path
) -> None:
    assert PROGRAM is not None
    whole = {line: words_that_must_stay_whole(story, line) for line in table_lines(story)}
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    env["COLUMNS"] = str(width)
    for line in [*table_lines(story), "demo"]:
        db = store_url if line != "demo" else str(tmp_path / "demo.db")
        done = subprocess.run(
            [PROGRAM, "--db", db, *line.split()], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert (done.returncode, done.stderr) == (0, ""), (line, done.stderr)
        assert_readable(done.stdout, width, whole.get(line, set()))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_demo_and_every_demo_shop_print_in_a_narrow_and_a_wide_terminal(
    cli: Run, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    demo = cli("demo")
    assert (demo.code, demo.err) == (0, "")
    assert_readable(demo.out, width, set())
    for shop in [state["shop_id"] for state in cli("shops --json").json()]:
        for command in (f"history {shop}", f"audit {shop}", f"show {shop}", f"balance {shop}"):
            outcome = cli(command)
            assert (outcome.code, outcome.err) == (0, ""), command
            assert_readable(outcome.out, width, words_that_must_stay_whole(cli, command))
