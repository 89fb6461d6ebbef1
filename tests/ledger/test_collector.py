"""Bulk work pauses the automatic garbage collector and reclaims young cycles itself."""

from __future__ import annotations

import gc
import weakref

from ledger.views.collector import collect_young, collector_paused


class Node:
    """An object that can take part in a reference cycle."""

    other: Node | None = None


def test_the_collector_is_off_inside_and_as_it_was_afterwards_even_when_nested() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the inner block must not turn it back on"
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled(), "left off when it was off before"
    finally:
        gc.enable()


def test_a_young_cycle_made_while_paused_is_reclaimed_after_the_batch() -> None:
    with collector_paused():
        first, second = Node(), Node()
        first.other, second.other = second, first
        watch = weakref.ref(first)
        del first, second
        assert watch() is not None, "nothing collects a cycle automatically while paused"
        collect_young()
        assert watch() is None
