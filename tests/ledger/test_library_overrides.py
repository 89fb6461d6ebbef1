"""The library's private parts the ledger leans on are still the ones its overrides were written against.

An upgrade of ``eventsourcing`` that changes one of them fails here, naming the
member and what to re-check in ``ledger/store/library_overrides.py``; and no
class of the ledger overrides a private member of the library anywhere else.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import ledger
from ledger.store import library_overrides
from ledger.store.library_overrides import GUARDED, Guarded, changed_members


@pytest.mark.parametrize("guarded", GUARDED, ids=lambda guarded: guarded.member)
def test_each_library_member_is_the_one_its_override_was_written_against(guarded: Guarded) -> None:
    assert changed_members([guarded]) == []


def test_a_changed_member_is_named_with_what_to_recheck() -> None:
    stale = Guarded("eventsourcing.application:Application._record", "0" * 64, "that it still calls events.put")
    [message] = changed_members([stale])
    assert "eventsourcing.application:Application._record" in message
    assert "that it still calls events.put" in message
    assert stale.current_sha256() in message, "the new hash to record once re-checked"


def _library_classes_subclassed() -> list[tuple[type, type, str]]:
    # (ledger class, library base, name) for every private member a ledger class defines over its library base.
    found = []
    for module_info in pkgutil.walk_packages(ledger.__path__, "ledger."):
        if module_info.name.endswith("__main__"):
            continue  # runs the command line when imported
        module = importlib.import_module(module_info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for base in cls.__mro__[1:]:
                if not base.__module__.startswith("eventsourcing."):
                    continue
                for name, member in vars(cls).items():
                    private = name.startswith("_") and not name.startswith("__")
                    if private and inspect.isfunction(member) and hasattr(base, name):
                        found.append((cls, base, name))
    return found


def test_no_private_member_of_the_library_is_overridden_outside_the_overrides_module() -> None:
    overrides = _library_classes_subclassed()
    assert overrides, "the ledger does override private members: the search must find them"
    elsewhere = [
        f"{cls.__module__}.{cls.__qualname__}.{name} (over {base.__qualname__})"
        for cls, base, name in overrides
        if cls.__module__ != library_overrides.__name__
        and "library_overrides." not in inspect.getsource(getattr(cls, name))
    ]
    assert elsewhere == [], "move the body into ledger/store/library_overrides.py and guard what it relies on"
