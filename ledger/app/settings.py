"""The process environment the ledger reads, and the part of it the library must not read.

The ledger's own settings are ``DEPOSIT_LEDGER_*`` variables (the store, the policy, the
actor, inline views) beside the options a face offers. The eventsourcing library reads
settings from the environment too, and would let a variable named after the application
(``DEPOSITLEDGER_SQLITE_DBNAME``, ``DEPOSITLEDGER_POSTGRES_SCHEMA``) beat the store the
ledger chose: a command would write to another file or schema than the one it names. So the
ledger hands the library every setting itself and lets it read none from the environment
(``DepositLedger.construct_env``), and a ``DEPOSITLEDGER_*`` variable, which can only
have been meant for the library, is refused rather than silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from domain import MalformedInput

LIBRARY_PREFIX = "DEPOSITLEDGER_"
"""The prefix the library gives the ``DepositLedger`` application's settings; none is the ledger's."""

OWN_PREFIX = "DEPOSIT_LEDGER_"
"""The prefix of the ledger's own settings."""


def refuse_library_variables(environ: Mapping[str, str] | None = None) -> None:
    """``MalformedInput`` naming the first ``DEPOSITLEDGER_*`` variable set, if any is."""
    found = sorted(name for name in (os.environ if environ is None else environ) if _is_library_variable(name))
    if found:
        others = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise MalformedInput(
            f"environment variable {found[0]}{others} is not a setting of the ledger, which chooses its store "
            f"itself: unset it (the ledger's own variables are named {OWN_PREFIX}*)"
        )


def _is_library_variable(name: str) -> bool:
    return name.upper().startswith(LIBRARY_PREFIX)
