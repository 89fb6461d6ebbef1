"""The JSON bodies of the write requests: amounts as decimal strings, times ISO-8601 with a zone.

Only the shape is checked here (types, lengths, no unknown fields); what the values
mean (an amount's precision, a channel's name, a time's zone) the ledger's own
parsers check, with the same messages as on the command line.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(max_length=500)]
Short = Annotated[str, StringConstraints(max_length=100)]
Amount = Annotated[str, StringConstraints(max_length=40), Field(examples=["1700.00"])]
Moment = Annotated[str, StringConstraints(max_length=60), Field(examples=["2026-03-05T09:00:00+08:00"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class OpenBody(_Body):
    """``POST /v1/shops``."""

    shop_id: Short
    currency: Short | None = None
    required: Amount | None = None
    site: Short | None = None
    categories: Annotated[list[Short], Field(max_length=50)] = []
    at: Moment | None = None


class PaymentBody(_Body):
    """``POST /v1/shops/{shop_id}/payments``."""

    amount: Amount
    channel: Short
    ref: Short
    payer: Short | None = None
    at: Moment | None = None
    channel_time: Moment | None = None
    """When the channel says the money was paid (its own clock), if the channel's notice says."""


class DeductionBody(_Body):
    """``POST /v1/shops/{shop_id}/deductions``: ``amount``, or priced by the policy (``order_value``)."""

    amount: Amount | None = None
    reason: Short
    case: Short
    order_value: Amount | None = None
    note: Text = ""
    at: Moment | None = None


class HoldBody(_Body):
    """``POST /v1/shops/{shop_id}/holds``."""

    amount: Amount
    case: Short
    note: Text = ""
    at: Moment | None = None


class NoteBody(_Body):
    """A command that needs nothing but may carry a note and an effective time (release)."""

    note: Text = ""
    at: Moment | None = None


class AppealBody(_Body):
    """``POST /v1/shops/{shop_id}/appeals``."""

    case: Short
    note: Text = ""
    at: Moment | None = None


class ResolutionBody(_Body):
    """``POST /v1/shops/{shop_id}/appeals/{case}/resolution``."""

    upheld: bool
    note: Text = ""
    at: Moment | None = None


class MomentBody(_Body):
    """A command with nothing to say but when it takes effect (closure, refunds, policy moves)."""

    at: Moment | None = None


class ForcedClosureBody(_Body):
    """``POST /v1/shops/{shop_id}/forced-closure``."""

    reason: Text
    at: Moment | None = None


class CategoriesBody(_Body):
    """``POST /v1/shops/{shop_id}/categories``."""

    add: Annotated[list[Short], Field(max_length=50)] = []
    remove: Annotated[list[Short], Field(max_length=50)] = []
    at: Moment | None = None


class WriteOffBody(_Body):
    """``POST /v1/shops/{shop_id}/write-offs``."""

    case: Short
    reason: Text
    at: Moment | None = None
