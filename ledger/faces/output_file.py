"""Files a command writes (``--output``, ``--rejects``): never over the store or the command's input,
and never half-written.

A typo must not destroy data: an output path that is the store (its file, or its
``-wal``, ``-shm`` or ``-journal`` companions), the chain key file, or the file the command reads is
refused before anything is opened, however it is spelled (a relative path, a
symbolic link, a hard link). The output is written to a temporary file in the
target's own folder and renamed over the target only once complete, so a
command that fails half way leaves the file that was there before, untouched.
A target that is not a regular file (a terminal, a pipe, ``/dev/null``) is
written directly: there is nothing to rename over.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from domain import MalformedInput
from ledger.store.chain_keys import KEY_FILE_ENV_VAR, default_key_file
from ledger.store.urls import Store

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
"""The suffixes of the files SQLite keeps beside a store file: each is part of the store."""


class OutputUnwritable(MalformedInput):
    """An output file cannot be written: a folder that is missing or not writable, a full disk."""


def protected_files(store: Store) -> list[tuple[Path, str]]:
    """The files no output may replace, existing or not, each with what it is: an embedded store's
    file and companions, and the chain key file (the one named by the environment, or the one beside
    the store)."""
    protected: list[tuple[Path, str]] = []
    if store.sqlite_path is not None:
        protected += [(Path(f"{store.sqlite_path}{suffix}"), "the ledger's store") for suffix in SQLITE_COMPANIONS]
    named = os.environ.get(KEY_FILE_ENV_VAR, "").strip()
    for key_file in (Path(named) if named else None, default_key_file(store)):
        if key_file is not None:
            protected.append((key_file, "the chain key file"))
    return protected


def check_output_path(
    option: str, path: Path, *, protected: Iterable[tuple[Path, str]] = (), inputs: Iterable[Path] = ()
) -> Path:
    """The real path ``path`` names, or ``MalformedInput`` if writing there would destroy data or cannot work.

    ``protected`` are the files no output may replace (:func:`protected_files`), ``inputs``
    the files the command reads; ``option`` names the option in the message (``--output``).
    """
    target = path.expanduser().resolve()
    if target.is_dir():
        raise MalformedInput(f"{option} {path} is a directory, not a file")
    if not target.parent.is_dir():
        raise MalformedInput(f"{option} {path}: folder {target.parent} does not exist")
    for file, what in [*protected, *((file, "the input") for file in inputs)]:
        if _same_file(target, file):
            raise MalformedInput(f"{option} {path} is {what} ({file}); choose another file")
    return target


def _same_file(target: Path, protected: Path) -> bool:
    # The same name once links are followed, or another name of the same inode (a hard link).
    if target == protected.expanduser().resolve():
        return True
    try:
        return os.path.samefile(target, protected)
    except OSError:
        return False


@contextmanager
def replacing(target: Path) -> Iterator[IO[str]]:
    """A text stream (UTF-8, newlines as written) whose content replaces ``target`` when the block ends well.

    If the block raises, the temporary file is removed and ``target`` is as it was.
    ``target`` must come from :func:`check_output_path`. A write that fails
    (a full disk) is an :class:`OutputUnwritable`.
    """
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        with _writing(target), target.open("w", newline="", encoding="utf-8") as out:
            yield out
        return
    with _writing(target):
        handle, temporary_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temporary = Path(temporary_name)
    try:
        with _writing(target), os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        with _writing(target):
            os.chmod(temporary, _mode_for(target))
            os.replace(temporary, target)
            _sync_folder(target.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise OutputUnwritable(f"cannot write {target}: {error.strerror or error}") from None


def _mode_for(target: Path) -> int:
    # A replaced file keeps its permissions; a new one gets what the umask gives any new file.
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder is flushed.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
