"""Fixtures of the ledger tests that run real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledger.processes import Children


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """Start child processes; every one still running is killed when the test ends."""
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.close()
