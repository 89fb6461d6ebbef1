"""How the console writes figures and times: amounts in the currency's digits, times in UTC for scripts to localise."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from domain.money import to_decimal


def money(amount_minor: int | None, currency: str) -> str:
    """An amount in major units with the currency's digits and thousands separators: ``1,700.00``, ``70,000``."""
    if amount_minor is None:
        return ""
    return f"{to_decimal(amount_minor, currency):,}"


def utc_text(moment: datetime) -> str:
    """A time in UTC to the second, as the page shows it before its script localises it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(moment: datetime | None) -> Markup:
    """A ``<time>`` element: UTC in its text and title; the page's script shows it in the viewer's zone."""
    if moment is None:
        return Markup("")
    utc = utc_text(moment)
    iso = moment.astimezone(UTC).isoformat()
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, utc, utc)


def words(name: str) -> str:
    """A status or reason code as words: ``awaiting_payment`` -> ``awaiting payment``."""
    return str(escape(name.replace("_", " ")))
