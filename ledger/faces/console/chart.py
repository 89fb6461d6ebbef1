"""A deposit's timeline as a server-rendered SVG: frozen + held against the requirement, money moves marked.

The figures after each event come from replaying the deposit's events through
the domain's own :class:`~domain.Balance` (the code the views run), so the chart
and the figures above it cannot disagree. Both lines are steps: a figure holds
its value until the next event changes it. Payments, deductions and refunds are
marked on the covered line where they happened, each with a tooltip (an SVG
``<title>``) saying what it was, and the chart has a text summary for readers
who cannot see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from domain import (
    Balance,
    Deducted,
    DepositEvent,
    ExcessRefunded,
    Opened,
    Paid,
    Refunded,
)
from domain.money import to_decimal

WIDTH = 760
HEIGHT = 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 84, 16, 16, 40
MAX_POINTS = 2_000
"""Events a chart draws at most: the most recent ones (a long history is read a page at a time)."""

_MARKS = {"payment": "#1a7f37", "deduction": "#cf222e", "refund": "#0969da"}


@dataclass(frozen=True, slots=True)
class Point:
    """The figures just after one event."""

    at: datetime
    covered_minor: int
    """Frozen + held: what the deposit holds for the shop."""
    required_minor: int
    mark: str | None
    """``payment``, ``deduction``, ``refund`` or None."""
    label: str


def timeline(events: Sequence[DepositEvent], currency: str) -> list[Point]:
    """The figures after each event of a deposit's history (which starts with ``Opened``)."""
    if not events or not isinstance(events[0], Opened):
        return []
    balance = Balance.opened(events[0])
    points = [Point(events[0].effective_at, 0, balance.required_minor, None, "opened")]
    for event in events[1:]:
        balance.apply(event)
        mark, label = _mark(event, currency)
        points.append(
            Point(event.effective_at, balance.frozen_minor + balance.held_minor, balance.required_minor, mark, label)
        )
    return points[-MAX_POINTS:]


def _mark(event: DepositEvent, currency: str) -> tuple[str | None, str]:
    if isinstance(event, Paid):
        return "payment", f"payment {_money(event.amount_minor, currency)} {currency} ({event.channel.value})"
    if isinstance(event, Deducted) and not event.settles_debt:
        owed = f", {_money(event.amount_owed_minor, currency)} owed" if event.amount_owed_minor else ""
        taken = _money(event.amount_collected_minor, currency)
        return "deduction", f"deduction {taken} {currency}{owed}: {event.reason.value}, case {event.case_id}"
    if isinstance(event, Refunded | ExcessRefunded):
        return "refund", f"refund {_money(event.amount_minor, currency)} {currency}"
    return None, event.type_name


def _money(amount_minor: int, currency: str) -> str:
    return f"{to_decimal(amount_minor, currency):,}"


def svg(points: Sequence[Point], currency: str, now: datetime, top_up_due: datetime | None = None) -> str:
    """The chart as an inline ``<svg>`` element (empty text when there is nothing to draw).

    Where frozen + held lies below the requirement the gap is shaded: the
    shortfall, and how long it has lasted. A top-up deadline is a vertical line.
    """
    if not points:
        return ""
    start = points[0].at
    end = max(now, points[-1].at, top_up_due or now)
    span_s = max((end - start).total_seconds(), 1.0)
    top_minor = max(1, *(max(p.covered_minor, p.required_minor) for p in points))
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x(moment: datetime) -> float:
        return round(_LEFT + plot_w * (moment - start).total_seconds() / span_s, 1)

    def y(amount_minor: int) -> float:
        return round(_TOP + plot_h * (1 - amount_minor / (top_minor * 1.1)), 1)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        'aria-labelledby="chart-title chart-summary" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Frozen + held against the requirement over time</title>',
        f'<desc id="chart-summary">{escape(summary(points, currency))}</desc>',
    ]
    for tick in _ticks(top_minor * 1.1):
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(tick)}" y2="{y(tick)}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y(tick) + 4}" text-anchor="end">'
            f"{escape(_money(tick, currency))}</text>"
        )
    ticks = _time_ticks(start, end)
    for number, moment in enumerate(ticks):
        anchor = "start" if number == 0 else "end" if number == len(ticks) - 1 else "middle"
        parts.append(
            f'<text class="axis" x="{x(moment)}" y="{HEIGHT - _BOTTOM + 18}" text-anchor="{anchor}">'
            f"{moment.strftime('%Y-%m-%d')}</text>"
        )
    for point, until in zip(points, [*(p.at for p in points[1:]), end], strict=True):
        if point.covered_minor < point.required_minor and until > point.at:
            width = round(x(until) - x(point.at), 1)
            height = round(y(point.covered_minor) - y(point.required_minor), 1)
            parts.append(
                f'<rect class="shortfall" x="{x(point.at)}" y="{y(point.required_minor)}" '
                f'width="{width}" height="{height}"/>'
            )
    if top_up_due is not None:
        parts.append(
            f'<g class="deadline"><title>top-up due {escape(top_up_due.isoformat())}</title>'
            f'<line x1="{x(top_up_due)}" x2="{x(top_up_due)}" y1="{_TOP}" y2="{HEIGHT - _BOTTOM}"/>'
            f'<text x="{x(top_up_due) - 4}" y="{_TOP + 10}" text-anchor="end">top-up due</text></g>'
        )
    parts.append(f'<path class="required" d="{_steps(points, x, y, "required_minor", end)}"/>')
    parts.append(f'<path class="covered" d="{_steps(points, x, y, "covered_minor", end)}"/>')
    for point in points:
        if point.mark is None:
            continue
        cx, cy = x(point.at), y(point.covered_minor)
        parts.append(
            f'<g class="mark {point.mark}"><title>{escape(point.at.isoformat())}: {escape(point.label)}</title>'
            f"{_shape(point.mark, cx, cy)}</g>"
        )
    parts.append(_legend())
    parts.append("</svg>")
    return "".join(parts)


def summary(points: Sequence[Point], currency: str) -> str:
    """One sentence for screen readers: where the deposit stands and what moved it."""
    last = points[-1]
    counts = {kind: sum(1 for p in points if p.mark == kind) for kind in _MARKS}
    moves = ", ".join(f"{count} {kind}{'' if count == 1 else 's'}" for kind, count in counts.items())
    return (
        f"Frozen + held {_money(last.covered_minor, currency)} {currency} against a requirement of "
        f"{_money(last.required_minor, currency)} {currency}, after {moves}."
    )


def _steps(points: Sequence[Point], x: object, y: object, figure: str, end: datetime) -> str:
    assert callable(x) and callable(y)
    path: list[str] = []
    for index, point in enumerate(points):
        value = getattr(point, figure)
        if index == 0:
            path.append(f"M{x(point.at)},{y(value)}")
        else:
            path.append(f"H{x(point.at)}V{y(value)}")
    path.append(f"H{x(end)}")
    return "".join(path)


def _shape(mark: str, cx: float, cy: float) -> str:
    colour = _MARKS[mark]
    if mark == "payment":
        return f'<circle cx="{cx}" cy="{cy}" r="5" fill="{colour}"/>'
    if mark == "deduction":
        return f'<path d="M{cx - 6},{cy - 5}H{cx + 6}L{cx},{cy + 6}Z" fill="{colour}"/>'
    return f'<rect x="{cx - 5}" y="{cy - 5}" width="10" height="10" fill="{colour}"/>'


def _legend() -> str:
    items = [
        ('<line x1="0" x2="18" y1="0" y2="0" class="covered"/>', "frozen + held"),
        ('<line x1="0" x2="18" y1="0" y2="0" class="required"/>', "required"),
        ('<rect x="0" y="-6" width="18" height="12" class="shortfall"/>', "shortfall"),
        (_shape("payment", 9, 0), "payment"),
        (_shape("deduction", 9, 0), "deduction"),
        (_shape("refund", 9, 0), "refund"),
    ]
    parts = []
    left = _LEFT
    for shape, label in items:
        parts.append(
            f'<g transform="translate({left},{HEIGHT - 8})">{shape}<text class="axis" x="24" y="4">{label}</text></g>'
        )
        left += 112
    return "".join(parts)


def _ticks(top: float) -> list[int]:
    # About four round gridlines: 1, 2 or 5 times a power of ten.
    raw = top / 4
    magnitude = 10 ** max(0, len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [step * n for n in range(0, int(top // step) + 1)]


def _time_ticks(start: datetime, end: datetime) -> list[datetime]:
    count = 4
    span = (end - start) / count
    if span < timedelta(hours=12):
        return [start]
    return [start + span * n for n in range(count + 1)]
