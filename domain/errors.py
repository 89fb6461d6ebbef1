"""The two ways a command can fail, as the faces report them.

``MalformedInput`` means the request itself is wrong (exit code 2); ``Refused``
means it is well formed but a deposit rule forbids it (exit code 1). Either way
nothing has been written.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger reports to its caller in one line."""


class MalformedInput(LedgerError, ValueError):
    """The input cannot be understood: a bad amount, channel, reason, time or currency."""


class Refused(LedgerError):
    """A deposit rule refuses the command; the message says which."""


class ShopNotFound(Refused):
    """No deposit has been opened for this shop."""


class ShopAlreadyOpen(Refused):
    """A deposit for this shop exists already: one deposit per shop."""


class WrongStatus(Refused):
    """The deposit's status does not allow this command."""


class DuplicateConflict(Refused):
    """The natural key (trade number, case id) was used before with different figures."""


class TradeNumberTaken(Refused):
    """A payment's channel trade number was paid into another shop: one trade number is one payment."""


class OutOfOrder(Refused):
    """The effective time lies before the deposit's last event."""


class InvariantBroken(AssertionError):
    """A law of the books failed (conservation, a version gap, a figure below zero).

    Never the caller's fault: a bug, or a store edited behind the ledger's back.
    Raised explicitly rather than by ``assert``, so that ``python -O`` cannot turn
    the checks off.
    """
