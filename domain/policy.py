"""The deposit policy: what a shop must deposit, what a violation costs, and the time limits.

A policy is versioned and priced per marketplace site, in the site's currency:

- **Requirement.** Each product category has a required deposit; a shop selling
  in several categories must deposit the *highest* of their amounts, not the sum.
- **Violation catalogue.** Each deduction reason has a rule: a fixed penalty, or
  a share of the order value with a floor and a cap, and optionally a daily cap
  per shop (per calendar day in the site's time zone, as the platforms count it).
- **Time limits.** The settlement window after a voluntary closure, the top-up
  deadline after a deposit falls short, and the appeal window after a deduction.
- **Versions in force.** A policy version takes effect at its ``effective_from``
  time; a :class:`PolicyHistory` holds every version, and a command is decided by
  the version in force at its effective time, so a back-dated command is priced
  as it would have been on the day it took effect.

Everything here is pure: amounts are integer minor units, rates are exact
decimals, and no clock is read. Reading a policy file is the ledger's business.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from domain.errors import MalformedInput, Refused
from domain.events import (
    AmountMinor,
    CategoryCode,
    CurrencyCode,
    DeductionReason,
    PolicyVersion,
    PositiveAmountMinor,
    SiteCode,
)
from domain.money import format_minor

DEFAULT_SETTLEMENT_WINDOW = timedelta(days=90)
"""How long after a voluntary closure the refund waits for late claims (TikTok cross-border: 90 days)."""

DEFAULT_TOP_UP_DEADLINE = timedelta(days=30)
"""How long a shop has to top up a short deposit before it is restricted (TikTok cross-border: 30 days)."""

DEFAULT_APPEAL_WINDOW = timedelta(days=30)
"""How long after a deduction the merchant may appeal it (TikTok: 30 days)."""

MAX_WINDOW = timedelta(days=3650)
"""No time limit of a policy may exceed ten years: a longer one is a typing mistake."""

MAX_RATE_DECIMALS = 6
"""A rate has at most six decimals (a hundredth of a basis point), so a share of any amount is exact."""

Rate = Annotated[Decimal, Field(gt=0, le=1, decimal_places=MAX_RATE_DECIMALS, allow_inf_nan=False)]
"""A share of an order value: above 0 and at most 1 (``0.1`` is 10%, 1000 basis points)."""

Window = Annotated[timedelta, Field(gt=timedelta(0), le=MAX_WINDOW)]
"""A time limit of the policy."""

MAX_POLICY_VERSIONS = 100
"""A policy history holds at most a hundred versions: a platform changes its rules a few times a year."""


class AppealWindowVersion(BaseModel):
    """The appeal window one version of the policy grants, and from when (``None``: from the start).

    ``policy_version`` is empty only for the standard terms (no policy in particular).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_version: PolicyVersion | None
    effective_from: AwareDatetime | None
    appeal_window: Window


class DepositTerms(BaseModel):
    """The time limits the deposit's rules apply, and the version of the policy they come from.

    ``policy_version`` is empty only for the standard terms the aggregate assumes
    when no policy is given (its own tests): the ledger always passes a policy's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_version: PolicyVersion | None = None
    settlement_window: Window = DEFAULT_SETTLEMENT_WINDOW
    top_up_deadline: Window = DEFAULT_TOP_UP_DEADLINE
    appeal_window: Window = DEFAULT_APPEAL_WINDOW
    appeal_windows: tuple[AppealWindowVersion, ...] = ()
    """Every version's appeal window, oldest first (empty: ``appeal_window`` for every deduction).

    A deduction may be appealed for the window of the version in force when it
    was made: the merchant's right is fixed by the rules of the day of the
    penalty, and a later version can neither shorten nor lengthen it.
    """

    def appeal_window_for(self, deducted_at: datetime) -> AppealWindowVersion:
        """The appeal window of a deduction made at ``deducted_at``, and the version granting it.

        A deduction older than every version (recorded under a file since
        replaced) gets the oldest version's window.
        """
        if not self.appeal_windows:
            return AppealWindowVersion(
                policy_version=self.policy_version, effective_from=None, appeal_window=self.appeal_window
            )
        starts = [_start(window.effective_from) for window in self.appeal_windows]
        return self.appeal_windows[max(0, bisect_right(starts, deducted_at) - 1)]


STANDARD_TERMS = DepositTerms()
"""The terms of no policy in particular: 90-day settlement, 30-day top-up, 30-day appeal."""


class FixedPenalty(BaseModel):
    """The same penalty for every violation of the reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fixed"] = "fixed"
    amount_minor: PositiveAmountMinor

    def amount_for(self, order_value_minor: int | None) -> int:
        """The penalty; the order value does not matter."""
        return self.amount_minor

    def describe(self, currency: str) -> str:
        """The rule in words, e.g. ``fixed 500.00 CNY``."""
        return f"fixed {format_minor(self.amount_minor, currency)} {currency}"


class SharePenalty(BaseModel):
    """A share of the order value, rounded down to the minor unit, then raised to the floor and cut to the cap."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["share"] = "share"
    rate: Rate
    floor_minor: AmountMinor = 0
    cap_minor: PositiveAmountMinor | None = None

    @model_validator(mode="after")
    def _floor_below_cap(self) -> SharePenalty:
        if self.cap_minor is not None and self.floor_minor > self.cap_minor:
            raise ValueError("the floor is above the cap")
        return self

    def amount_for(self, order_value_minor: int | None) -> int:
        """``rate × order value``, rounded down (never a fraction of a cent against the merchant), floored, capped."""
        if order_value_minor is None:
            raise MalformedInput("this reason is priced as a share of the order value: give the order value")
        # Exact: at most 14 digits of order value times 6 decimals of rate fit Decimal's 28 digits.
        share = int((self.rate * order_value_minor).to_integral_value(rounding=ROUND_FLOOR))
        amount = max(share, self.floor_minor)
        return amount if self.cap_minor is None else min(amount, self.cap_minor)

    def describe(self, currency: str) -> str:
        """The rule in words, e.g. ``10% of the order value, at least 5.00, at most 100.00 CNY``."""
        percent = format((self.rate * 100).normalize(), "f")
        words = [f"{percent}% of the order value"]
        if self.floor_minor:
            words.append(f"at least {format_minor(self.floor_minor, currency)}")
        if self.cap_minor is not None:
            words.append(f"at most {format_minor(self.cap_minor, currency)}")
        return ", ".join(words) + f" {currency}"


class ViolationRule(BaseModel):
    """How the catalogue prices one deduction reason on one site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    penalty: FixedPenalty | SharePenalty = Field(discriminator="kind")
    daily_cap_minor: PositiveAmountMinor | None = None
    """At most this much is charged by this rule to one shop on one calendar day (in the site's time zone)."""

    def describe(self, currency: str) -> str:
        """The rule in words, with its daily cap."""
        words = self.penalty.describe(currency)
        if self.daily_cap_minor is not None:
            words += f"; daily cap {format_minor(self.daily_cap_minor, currency)} {currency}"
        return words


class Pricing(BaseModel):
    """What the catalogue charges for one violation, and the rule in words for the record."""

    model_config = ConfigDict(frozen=True)

    amount_minor: int
    rule: str


def price_violation(
    rule: ViolationRule,
    *,
    reason: DeductionReason,
    currency: str,
    order_value_minor: int | None,
    charged_today_minor: int,
) -> Pricing:
    """Price one violation by ``rule``, given what the rule already charged the shop today.

    A share rule without an order value is ``MalformedInput`` (the request
    lacks what the rule needs); a violation the daily cap leaves nothing to
    charge for, or that prices at zero, is ``Refused``: a deduction always
    takes something, and the rule says nothing more is due.
    """
    amount = rule.penalty.amount_for(order_value_minor)
    words = f"{reason.value}: {rule.describe(currency)}"
    if rule.daily_cap_minor is not None:
        left_today = max(0, rule.daily_cap_minor - charged_today_minor)
        if left_today < amount:
            amount = left_today
            already = format_minor(charged_today_minor, currency)
            words += f"; cut to {format_minor(amount, currency)} by the daily cap ({already} charged today)"
    if amount <= 0:
        raise Refused(f"{words}: nothing left to charge; give the amount to deduct anyway")
    return Pricing(amount_minor=amount, rule=words)


class SitePolicy(BaseModel):
    """A site's currency, the deposit each category requires, and its violation catalogue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: CurrencyCode
    required: dict[CategoryCode, PositiveAmountMinor] = Field(min_length=1)
    violations: dict[DeductionReason, ViolationRule] = Field(default_factory=dict)
    time_zone: str = "UTC"
    """The IANA zone the site's days are counted in (daily caps): ``Asia/Shanghai`` for CN."""

    @model_validator(mode="after")
    def _known_zone(self) -> SitePolicy:
        self.zone()
        return self

    def zone(self) -> ZoneInfo:
        """The site's time zone."""
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {self.time_zone!r}: expected an IANA name such as Asia/Shanghai"
            ) from None


class DepositPolicy(BaseModel):
    """A versioned deposit policy: requirements and violation catalogue per site, and time limits.

    ``effective_from`` is when the version takes effect (``None``: in force from
    the start, as a policy of a single version is).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: PolicyVersion
    effective_from: AwareDatetime | None = None
    settlement_window: Window
    top_up_deadline: Window
    appeal_window: Window
    sites: dict[SiteCode, SitePolicy] = Field(min_length=1)

    @property
    def terms(self) -> DepositTerms:
        """This policy's time limits and version, as the deposit's rules take them."""
        return DepositTerms(
            policy_version=self.version,
            settlement_window=self.settlement_window,
            top_up_deadline=self.top_up_deadline,
            appeal_window=self.appeal_window,
        )

    def site(self, code: str) -> SitePolicy:
        """The site's part of the policy; ``MalformedInput`` naming the known sites otherwise."""
        try:
            return self.sites[code]
        except KeyError:
            known = ", ".join(sorted(self.sites))
            raise MalformedInput(f"policy {self.version} has no site {code!r}: expected one of {known}") from None

    def unknown_categories(self, site: str, categories: Iterable[str]) -> list[str]:
        """The categories the site's part of the policy does not price, sorted."""
        priced = self.site(site).required
        return sorted(set(categories) - set(priced))

    def requirement_minor(self, site: str, categories: Iterable[str]) -> int:
        """The deposit a shop selling in ``categories`` on ``site`` must hold: the highest of their amounts.

        Not the sum: one deposit guarantees the whole shop, and the dearest
        category sets how much that takes.
        """
        chosen = sorted(set(categories))
        if not chosen:
            raise MalformedInput("a requirement by policy needs at least one --category")
        unknown = self.unknown_categories(site, chosen)
        if unknown:
            known = ", ".join(sorted(self.site(site).required))
            raise MalformedInput(
                f"policy {self.version} has no category {', '.join(unknown)} on site {site}: expected one of {known}"
            )
        required = self.site(site).required
        return max(required[category] for category in chosen)

    def rule(self, site: str, reason: DeductionReason) -> ViolationRule:
        """The catalogue's rule for ``reason`` on ``site``; ``MalformedInput`` when there is none."""
        try:
            return self.site(site).violations[reason]
        except KeyError:
            raise MalformedInput(
                f"policy {self.version} has no rule for {reason.value} on site {site}: give the amount to deduct"
            ) from None


class PolicyHistory(BaseModel):
    """Every version of the deposit policy, oldest first, each in force until the next takes effect.

    The first version may have no ``effective_from`` (in force from the start);
    every later one has one, later than the one before it. A moment before the
    first version's ``effective_from`` has no policy in force.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    versions: tuple[DepositPolicy, ...] = Field(min_length=1, max_length=MAX_POLICY_VERSIONS)

    @model_validator(mode="after")
    def _versions_in_order(self) -> PolicyHistory:
        seen: set[str] = set()
        for position, policy in enumerate(self.versions):
            if policy.version in seen:
                raise ValueError(f"version {policy.version} appears twice")
            seen.add(policy.version)
            if position == 0:
                continue
            earlier = self.versions[position - 1]
            if policy.effective_from is None:
                raise ValueError(f"version {policy.version} needs an effective_from: only the first may go without")
            if earlier.effective_from is not None and policy.effective_from <= earlier.effective_from:
                raise ValueError(
                    f"version {policy.version} takes effect at {policy.effective_from.isoformat()}, "
                    f"not after version {earlier.version} ({earlier.effective_from.isoformat()}): "
                    "list the versions in the order they take effect"
                )
        return self

    @classmethod
    def of(cls, policy: DepositPolicy) -> PolicyHistory:
        """The history of a single version."""
        return cls(versions=(policy,))

    @property
    def latest(self) -> DepositPolicy:
        """The version that took effect last (or will: its time may lie ahead)."""
        return self.versions[-1]

    def in_force_at(self, moment: datetime) -> DepositPolicy:
        """The version in force at ``moment``: the last one to take effect at or before it.

        ``Refused`` before the first version takes effect: no rule existed yet
        to apply.
        """
        starts = [_start(policy.effective_from) for policy in self.versions]
        position = bisect_right(starts, moment) - 1
        if position < 0:
            first = self.versions[0]
            assert first.effective_from is not None
            raise Refused(
                f"no deposit policy was in force at {moment.astimezone(UTC).isoformat()}: "
                f"the first, {first.version}, takes effect at {first.effective_from.astimezone(UTC).isoformat()}"
            )
        return self.versions[position]

    def terms_at(self, moment: datetime) -> DepositTerms:
        """The time limits in force at ``moment``, with every version's appeal window for older deductions."""
        return self.in_force_at(moment).terms.model_copy(update={"appeal_windows": self.appeal_windows()})

    def appeal_window_for(self, deducted_at: datetime) -> AppealWindowVersion:
        """The appeal window of a deduction made at ``deducted_at``, as :class:`DepositTerms` grants it."""
        return DepositTerms(appeal_windows=self.appeal_windows()).appeal_window_for(deducted_at)

    def appeal_windows(self) -> tuple[AppealWindowVersion, ...]:
        """Each version's appeal window and when it took effect, oldest first."""
        return tuple(
            AppealWindowVersion(
                policy_version=policy.version, effective_from=policy.effective_from, appeal_window=policy.appeal_window
            )
            for policy in self.versions
        )


_BEGINNING = datetime.min.replace(tzinfo=UTC)
"""Where a version without ``effective_from`` starts: before any moment the ledger can hold."""


def _start(effective_from: datetime | None) -> datetime:
    return _BEGINNING if effective_from is None else effective_from
