"""Bulk work with Python's cyclic garbage collector kept out of the way.

An import or a rebuild keeps many objects alive for its whole run (the deposits a
batch holds, what a rebuild's copies carry between batches) while millions of
short-lived ones come and go. Each time CPython's collector runs a full
collection it walks every live object: measured, about a fifth of an import's
time and of a rebuild's over a million events. The ledger's objects seldom form
reference cycles, and those that do are young when they become garbage; so bulk
work turns the automatic collector off and, after each batch, collects the young
generations alone, which never walks the long-lived objects.

The collector is per process: while bulk work runs, other threads of an
embedding application run without automatic collection too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic garbage collection off for the block (as it was before, afterwards; nesting is safe)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_young() -> None:
    """Reclaim the reference cycles among the objects made since the last collection (generations 0 and 1)."""
    gc.collect(1)
