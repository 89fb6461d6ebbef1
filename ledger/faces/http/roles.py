"""Roles and what each may do: segregation of duties between the back office's teams.

Every key has one role. Reading a shop (its state, balance, history, audit trail,
replay, the list of shops) is open to every role: each team needs to see what it
acts on. Beyond that:

- ``auditor``: verification, the checkpoint, the event feed; writes nothing.
- ``risk``: decides on violations: deductions, holds and their release, appeal
  outcomes, forced closure.
- ``finance``: the merchant's money and requests: opening, payments, categories,
  policy moves, appeals filed, closure, refunds (of the excess and the final one),
  and writing off, as a loss, what a closed shop can no longer pay.
- ``admin``: everything, the API keys and the webhook subscriptions.

Who files an appeal (finance, on the merchant's behalf) is not who decides it (risk);
who takes money in (finance) is not who deducts it (risk); who deducts (risk) is not who
books an uncollectable debt as a loss (finance).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A key's role."""

    AUDITOR = "auditor"
    RISK = "risk"
    FINANCE = "finance"
    ADMIN = "admin"


class Action(StrEnum):
    """Something a request does, as the role matrix names it."""

    READ = "read"
    VERIFY = "verify"
    FEED = "feed"
    OPEN = "open"
    PAY = "pay"
    DEDUCT = "deduct"
    HOLD = "hold"
    RELEASE = "release"
    APPEAL = "appeal"
    RESOLVE_APPEAL = "resolve-appeal"
    CATEGORIES = "categories"
    APPLY_POLICY = "apply-policy"
    REFUND_EXCESS = "refund-excess"
    CLOSE = "close"
    REFUND = "refund"
    FORCE_CLOSE = "force-close"
    WRITE_OFF = "write-off"
    KEYS = "keys"
    WEBHOOKS = "webhooks"


_OWN: dict[Role, frozenset[Action]] = {
    Role.AUDITOR: frozenset({Action.READ, Action.VERIFY, Action.FEED}),
    Role.RISK: frozenset(
        {Action.READ, Action.DEDUCT, Action.HOLD, Action.RELEASE, Action.RESOLVE_APPEAL, Action.FORCE_CLOSE}
    ),
    Role.FINANCE: frozenset(
        {
            Action.READ,
            Action.OPEN,
            Action.PAY,
            Action.CATEGORIES,
            Action.APPLY_POLICY,
            Action.APPEAL,
            Action.CLOSE,
            Action.REFUND,
            Action.REFUND_EXCESS,
            Action.WRITE_OFF,
        }
    ),
    Role.ADMIN: frozenset(Action),
}

JOURNAL_ACTIONS: dict[str, Action] = {action.value: action for action in Action if action.value != "read"}
"""A journal line's ``op`` (``docs/journal.md``) as the action the matrix names."""


def may(role: Role, action: Action) -> bool:
    """Whether a key of ``role`` may do ``action``."""
    return action in _OWN[role]


def matrix() -> dict[str, list[str]]:
    """Each action with the roles allowed it, for documentation and the tests."""
    return {action.value: [role.value for role in Role if may(role, action)] for action in Action}
