"""Files the command line writes (``--output``, ``--rejects``): never the store or the input, never half-written."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from eventsourcing.domain import EventSourcingError

import ledger.tools.audit
import ledger.tools.journal
from ledger.store.chain_keys import KEY_FILE_SUFFIX
from tests.cli.conftest import Run, stored_rows
from tests.ledger.journals import STORY, write_journal

WRITERS = [
    pytest.param("export journal --output {path}", id="export-journal"),
    pytest.param("export audit --format csv --output {path}", id="export-audit"),
    pytest.param("import {journal} --rejects {path}", id="import-rejects"),
]


@pytest.fixture
def story(cli: Run, tmp_path: Path) -> Path:
    """A store holding the journal story, and the journal itself."""
    journal = write_journal(tmp_path / "story.jsonl", STORY, "jsonl")
    assert cli(f"import {journal}").code == 0
    return journal


def _line(template: str, path: Path | str, journal: Path) -> str:
    return template.format(path=shlex.quote(str(path)), journal=shlex.quote(str(journal)))


def _refused_in_one_line(outcome: object, *words: str) -> None:
    code, out, err = outcome  # type: ignore[misc]
    assert code == 2, err
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("deposit-ledger: ")
    for word in words:
        assert word in err


def _store_files_fingerprint(db_path: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in db_path.parent.glob(f"{db_path.name}*")}


@pytest.mark.sqlite_only("the store's own files")
@pytest.mark.parametrize("template", WRITERS)
@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda db: db, id="the-file"),
        pytest.param(lambda db: Path(f"{db}-wal"), id="its-wal"),
        pytest.param(lambda db: Path(f"{db}-shm"), id="its-shm"),
        pytest.param(lambda db: Path(os.path.relpath(db)), id="relative"),
        pytest.param(lambda db: db.parent / "." / ".." / db.parent.name / db.name, id="dotted"),
    ],
)
def test_an_output_naming_the_store_is_refused_and_the_store_is_untouched(
    cli: Run, story: Path, db_path: Path, template: str, spelling: object
) -> None:
    before = (stored_rows(db_path), cli("verify --json").out, cli("history tea-house --json").out)
    size = db_path.stat().st_size

    outcome = cli(_line(template, spelling(db_path), story))  # type: ignore[operator]

    _refused_in_one_line(outcome, "store")
    assert db_path.stat().st_size == size
    assert (stored_rows(db_path), cli("verify --json").out, cli("history tea-house --json").out) == before


@pytest.mark.sqlite_only("the store's own files")
@pytest.mark.parametrize("template", WRITERS)
@pytest.mark.parametrize("link", ["symlink", "hardlink", "symlinked-folder"])
def test_an_output_reaching_the_store_through_a_link_is_refused(
    cli: Run, story: Path, db_path: Path, tmp_path: Path, template: str, link: str
) -> None:
    if link == "symlink":
        other = tmp_path / "innocent.db"
        other.symlink_to(db_path)
    elif link == "hardlink":
        other = tmp_path / "innocent.db"
        os.link(db_path, other)
    else:
        (tmp_path / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
        other = tmp_path / "elsewhere" / f"{db_path.name}-wal"
    fingerprint = _store_files_fingerprint(db_path)

    outcome = cli(_line(template, other, story))

    _refused_in_one_line(outcome, "store")
    assert _store_files_fingerprint(db_path) == fingerprint


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hardlink"])
def test_import_refuses_rejects_written_over_its_own_journal(
    cli: Run, story: Path, tmp_path: Path, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "again.jsonl"
    journal.write_bytes(story.read_bytes())
    text = journal.read_bytes()
    if spelling == "same":
        rejects: Path = journal
    elif spelling == "relative":
        monkeypatch.chdir(tmp_path)
        rejects = Path(journal.name)
    elif spelling == "symlink":
        rejects = tmp_path / "rejects.jsonl"
        rejects.symlink_to(journal)
    else:
        rejects = tmp_path / "rejects.jsonl"
        os.link(journal, rejects)
    events = cli("verify --json").json()["events_checked"]

    outcome = cli(f"import {journal} --rejects {rejects}")

    _refused_in_one_line(outcome, "--rejects", "input")
    assert journal.read_bytes() == text
    assert cli("verify --json").json()["events_checked"] == events


@pytest.mark.parametrize("template", WRITERS)
def test_an_output_that_is_a_directory_or_in_a_missing_folder_is_one_line(
    cli: Run, story: Path, tmp_path: Path, template: str
) -> None:
    for path, words in [
        (tmp_path, ("directory",)),
        (tmp_path / "missing" / "out.txt", ("folder", "does not exist")),
    ]:
        _refused_in_one_line(cli(_line(template, path, story)), *words)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("template", WRITERS)
def test_a_full_disk_is_one_line_and_exit_2(cli: Run, story: Path, template: str) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    line = _line(template, "/dev/full", story)
    if template.startswith("import"):
        # Only rejected lines are written: give the import one to write.
        story.write_text(story.read_text(encoding="utf-8") + "not json\n", encoding="utf-8")

    _refused_in_one_line(cli(line), "No space left on device")


def _fail_after(count: int, real: object) -> object:
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > count:
            raise EventSourcingError("a record that cannot be read")
        return real(*args, **kwargs)  # type: ignore[operator]

    return failing


@pytest.mark.parametrize("what", ["journal", "audit"])
def test_an_export_that_fails_half_way_leaves_the_previous_file_as_it_was(
    cli: Run, story: Path, tmp_path: Path, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / f"good.{what}.csv"
    assert cli(f"export {what} --format csv --output {target}").code == 0
    good = target.read_bytes()
    assert good.count(b"\n") > 5
    if what == "journal":
        monkeypatch.setattr(ledger.tools.journal, "stored_time", _fail_after(5, ledger.tools.journal.stored_time))
    else:
        monkeypatch.setattr(ledger.tools.audit, "_export_record", _fail_after(5, ledger.tools.audit._export_record))

    outcome = cli(f"export {what} --format csv --output {target}")

    assert outcome.code == 1
    assert len(outcome.err_lines) == 1
    assert target.read_bytes() == good
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_an_import_that_fails_keeps_the_previous_rejects_file(cli: Run, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text("the rejects of yesterday\n", encoding="utf-8")
    journal = tmp_path / "bad.jsonl"
    journal.write_bytes(b"not json\n" + b'{"op": "open", "shop": "\xff"}\n')

    outcome = cli(f"import {journal} --rejects {rejects}")

    assert outcome.code == 2
    assert rejects.read_text(encoding="utf-8") == "the rejects of yesterday\n"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_written_output_replaces_the_old_file_whole_and_keeps_its_permissions(
    cli: Run, story: Path, tmp_path: Path
) -> None:
    target = tmp_path / "journal.jsonl"
    target.write_text("x" * 100_000, encoding="utf-8")
    target.chmod(0o640)

    assert cli(f"export journal --output {target}").code == 0

    assert len(target.read_text(encoding="utf-8").splitlines()) == len(STORY)
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.sqlite_only("the key file beside an SQLite store")
@pytest.mark.parametrize("template", WRITERS)
def test_an_output_naming_the_chain_key_file_is_refused(cli: Run, story: Path, db_path: Path, template: str) -> None:
    key_file = db_path.with_name(db_path.name + KEY_FILE_SUFFIX)
    assert key_file.exists()
    key = key_file.read_bytes()

    _refused_in_one_line(cli(_line(template, key_file, story)), "chain key")

    assert key_file.read_bytes() == key
    assert cli("verify").code == 0
