"""The examples in README.md and docs/*.md are run, and their shown output compared, so the docs cannot drift.

The convention (also in docs/README.md, for writers):

- ```` ```console ```` blocks are run: each ``$ `` line is a shell command (``deposit-ledger`` is
  this checkout's program); the lines after it, up to the next ``$ `` line, are its output
  (stdout and stderr together). A command shown without output must succeed (exit 0); its
  output is not compared.
- ```` ```pycon ```` blocks are doctests (``>>>`` and ``...`` prompts, the output below them).
- ```` ```python ```` blocks are run and must not raise; their output is not compared.
- Output is compared line by line, exactly (trailing spaces aside), except that ``...`` inside a
  line stands for any text and a line of ``...`` alone for any number of lines: write it where a
  time, an id or a figure of the moment appears, or to skip keys of a long JSON object.
- ``not-run`` after the language (```` ```console not-run ````) shows a block without running it:
  for what needs a server, a PostgreSQL database or a long-running process, and for fragments.
- Every block of one document runs in order in one fresh folder, whose ``deposits.db`` is the
  store: a document's examples build on its earlier ones. Its Python blocks share one namespace.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("console", "pycon", "python")
COMMAND_TIMEOUT_S = 120
"""A whole console block's commands finish within this (each starts the program afresh)."""

_FENCE = re.compile(r"^```(?P<language>[\w-]*)(?P<words>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_END = "@@@ exit status "
"""What the shell prints after each command: the line that separates outputs, with the exit status."""


@dataclass(frozen=True)
class Block:
    """One fenced block to run: its language, its text and where it starts in its document."""

    language: str
    body: str
    line: int


def blocks(document: Path) -> list[Block]:
    """The blocks of ``document`` that the convention runs, in order."""
    text = document.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        language = match["language"]
        if language in RUN_LANGUAGES and "not-run" not in match["words"].split():
            found.append(Block(language, match["body"], text.count("\n", 0, match.start("body")) + 1))
    return found


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected``: exact lines, ``...`` any text in a line, a lone ``...`` any lines."""
    if not expected:
        return not actual
    first, rest = expected[0], expected[1:]
    if first.strip() == "...":
        return any(matches(rest, actual[skip:]) for skip in range(len(actual) + 1))
    pattern = ".*".join(re.escape(part) for part in first.split("..."))
    return bool(actual) and re.fullmatch(pattern, actual[0]) is not None and matches(rest, actual[1:])


def commands(body: str) -> list[tuple[str, list[str]]]:
    """The ``$ `` commands of a console block, each with the output lines shown below it."""
    shown: list[tuple[str, list[str]]] = []
    for text in body.splitlines():
        if text.startswith("$ "):
            shown.append((text[2:], []))
        elif shown:
            shown[-1][1].append(text.rstrip())
        elif text.strip():
            raise AssertionError(f"output before any command: {text!r}")
    return shown


def run_console(block: Block, document: Path, folder: Path, environment: dict[str, str]) -> None:
    shown = commands(block.body)
    # One shell per block, so exports and ``echo $?`` work as typed; after each command its
    # exit status is printed on a line of its own, and restored for the next command.
    script = "".join(f'{command}\n__status=$?\necho "{_END}$__status"\n(exit $__status)\n' for command, _ in shown)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    outputs = done.stdout.split("\n")
    position = 0
    for command, expected in shown:
        actual: list[str] = []
        while position < len(outputs) and not outputs[position].startswith(_END):
            actual.append(outputs[position].rstrip())
            position += 1
        assert position < len(outputs), f"{document.name}:{block.line}: the shell stopped at $ {command}"
        status = int(outputs[position].removeprefix(_END))
        position += 1
        where = f"{document.name}:{block.line}: $ {command}"
        while expected and not expected[-1]:
            expected.pop()
        while actual and not actual[-1]:
            actual.pop()
        if not expected:
            assert status == 0, f"{where}\nexited {status}:\n" + "\n".join(actual)
            continue
        assert matches(expected, actual), (
            f"{where}\n--- shown\n" + "\n".join(expected) + "\n--- printed\n" + "\n".join(actual)
        )


def run_python(block: Block, document: Path, namespace: dict[str, Any]) -> None:
    name = f"{document.name}:{block.line}"
    if block.language == "python":
        # The page's own example, run as a reader would paste it.
        exec(compile(block.body, name, "exec"), namespace)
        return
    test = doctest.DocTestParser().get_doctest(block.body, namespace, name, str(document), block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    result = runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)
    assert result.failed == 0, "".join(report)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The shell's environment: this checkout's ``deposit-ledger`` first on the path, no ledger settings."""
    programs = tmp_path / "bin"
    programs.mkdir()
    program = programs / "deposit-ledger"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ledger "$@"\n', encoding="utf-8")
    program.chmod(0o755)
    kept = {name: value for name, value in os.environ.items() if not name.startswith("DEPOSIT_LEDGER_")}
    return {
        **kept,
        "PATH": f"{programs}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "LOGNAME": "ops",
        "COLUMNS": "100",
    }


@pytest.mark.parametrize("document", [doc for doc in DOCUMENTS if blocks(doc)], ids=lambda doc: doc.name)
def test_the_document_s_examples_print_what_it_shows(
    document: Path, tmp_path: Path, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in [name for name in os.environ if name.startswith("DEPOSIT_LEDGER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LOGNAME", "ops")
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        for block in blocks(document):
            if block.language == "console":
                run_console(block, document, folder, environment)
            else:
                run_python(block, document, namespace)
    finally:
        for value in namespace.values():
            close = getattr(value, "close", None)
            if callable(close) and type(value).__name__ == "DepositLedger":
                close()


def test_the_comparison_follows_the_convention() -> None:
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert matches(["a", "...", "z"], ["a", "z"])
    assert matches(['  "time": "2026-...Z",'], ['  "time": "2026-03-05T01:00:00Z",'])
    assert not matches(["a"], ["a", "b"])  # an extra line is a change
    assert not matches(["underfunded 195000"], ["active 195000"])
    assert not matches(["a (b)"], ["a b"])  # only ``...`` is special
