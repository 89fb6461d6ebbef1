"""Reading the deposit policy from a TOML file: the shipped default, ``--policy`` or the environment.

The file holds one version (its keys at the top) or several (``[[versions]]``,
each complete, each but the first with its ``effective_from``). It is parsed
with the standard library's ``tomllib`` (TOML floats become ``Decimal``, so
``0.10`` stays exactly one tenth), its shape is checked with pydantic, its
amounts are converted to integer minor units of each site's currency, and the
result is validated once more as a :class:`PolicyHistory`. Every mistake found
is named by its key (``versions[2].`` first, counting from 1, in a file of
versions), all of them on one line:
``policy my.toml: sites.CN.required.food: amount 40.001 has more decimals than CNY allows (2)``.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

from domain import DeductionReason, MalformedInput, PolicyHistory
from domain.money import normalise_currency, to_minor
from domain.policy import MAX_POLICY_VERSIONS

POLICY_ENV_VAR = "DEPOSIT_LEDGER_POLICY"
"""Names the policy file when ``--policy`` does not."""

DEFAULT_POLICY_FILE = "default_policy.toml"
"""The policy shipped inside the ``ledger`` package."""

MAX_POLICY_BYTES = 1_000_000
"""A policy file is a few kilobytes; anything beyond a megabyte is not one."""

MAX_LISTED_MISTAKES = 5
"""Mistakes named in the one error line; the rest are counted."""

MAX_DAYS = 3650
"""No time limit of a policy may exceed ten years."""


class ViolationEntry(BaseModel):
    """One reason's rule as the file writes it: ``fixed``, or ``share``/``share_bp`` with ``floor`` and ``cap``."""

    model_config = ConfigDict(extra="forbid")

    fixed: Any = None
    share: Decimal | StrictInt | None = None
    share_bp: StrictInt | None = Field(default=None, ge=1, le=10_000)
    floor: Any = None
    cap: Any = None
    daily_cap: Any = None

    @model_validator(mode="after")
    def _one_kind(self) -> ViolationEntry:
        kinds = [name for name in ("fixed", "share", "share_bp") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of fixed, share (a decimal rate) or share_bp (basis points)")
        if self.fixed is not None and (self.floor is not None or self.cap is not None):
            raise ValueError("floor and cap apply to a share, not to a fixed penalty")
        return self


class SiteEntry(BaseModel):
    """One site as the file writes it."""

    model_config = ConfigDict(extra="forbid")

    currency: StrictStr
    time_zone: StrictStr = "UTC"
    required: dict[str, Any] = Field(min_length=1)
    violations: dict[str, ViolationEntry] = Field(default_factory=dict)


class PolicyEntry(BaseModel):
    """One version of the policy, as written: the whole file, or one of its ``[[versions]]``."""

    model_config = ConfigDict(extra="forbid")

    version: StrictStr
    effective_from: datetime | None = None
    settlement_window_days: StrictInt = Field(ge=1, le=MAX_DAYS)
    top_up_deadline_days: StrictInt = Field(ge=1, le=MAX_DAYS)
    appeal_window_days: StrictInt = Field(ge=1, le=MAX_DAYS)
    sites: dict[str, SiteEntry] = Field(min_length=1)


def load_policy(path: str | Path | None = None) -> PolicyHistory:
    """The policy's versions in ``path``, else in ``$DEPOSIT_LEDGER_POLICY``, else the one shipped with the package.

    Any problem (no such file, bad TOML, a wrong key or amount) is one
    ``MalformedInput`` line naming the file.
    """
    chosen = str(path) if path else os.environ.get(POLICY_ENV_VAR) or None
    if chosen is None:
        text = files("ledger.app").joinpath(DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
        return parse_policy(text, source="shipped with deposit-ledger")
    file = Path(chosen).expanduser()
    if not file.is_file():
        raise MalformedInput(f"policy file {chosen} does not exist")
    if file.stat().st_size > MAX_POLICY_BYTES:
        raise MalformedInput(f"policy file {chosen} is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MalformedInput(f"policy file {chosen} cannot be read: {error}") from None
    return parse_policy(text, source=chosen)


def parse_policy(text: str, *, source: str) -> PolicyHistory:
    """Parse and validate a policy's TOML text, of one version or several; ``source`` names it in errors."""
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise MalformedInput(f"policy {source}: not valid TOML: {error}") from None
    if "versions" not in raw:
        return _history(source, [_version_fields(raw, "", source)], several=False)
    beside = sorted(key for key in raw if key != "versions")
    if beside:
        raise _mistakes(
            source, [f"{key}: unknown key beside [[versions]]: each version holds its own" for key in beside]
        )
    written = raw["versions"]
    if not isinstance(written, list) or not written or not all(isinstance(entry, dict) for entry in written):
        raise _mistakes(source, ["versions: expected one [[versions]] table or more"])
    if len(written) > MAX_POLICY_VERSIONS:
        raise _mistakes(source, [f"versions: at most {MAX_POLICY_VERSIONS} versions, not {len(written)}"])
    versions = [_version_fields(entry, f"versions[{number}].", source) for number, entry in enumerate(written, 1)]
    return _history(source, versions, several=True)


def _version_fields(raw: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    # One version's fields for the domain, or a MalformedInput naming every mistake under ``where``.
    try:
        entry = PolicyEntry.model_validate(raw)
    except ValidationError as error:
        raise _mistakes(source, _pydantic_mistakes(error, where)) from None
    mistakes: list[str] = []
    fields = _domain_fields(entry, mistakes)
    if entry.effective_from is not None and entry.effective_from.tzinfo is None:
        mistakes.append("effective_from: give the time with its UTC offset, e.g. 2026-06-01T00:00:00+08:00")
    if mistakes:
        raise _mistakes(source, [f"{where}{mistake}" for mistake in mistakes])
    return fields


def _history(source: str, versions: list[dict[str, Any]], *, several: bool) -> PolicyHistory:
    try:
        return PolicyHistory.model_validate({"versions": versions})
    except ValidationError as error:
        raise _mistakes(source, _pydantic_mistakes(error, "", several=several)) from None


def _domain_fields(entry: PolicyEntry, mistakes: list[str]) -> dict[str, Any]:
    # Amounts need the site's currency, so they are converted here rather than by the schema.
    sites: dict[str, Any] = {}
    for code, site in entry.sites.items():
        where = f"sites.{code}"
        try:
            currency = normalise_currency(site.currency)
        except MalformedInput as error:
            mistakes.append(f"{where}.currency: {error}")
            continue
        required = {
            category: _minor(value, currency, f"{where}.required.{category}", mistakes)
            for category, value in site.required.items()
        }
        violations: dict[str, Any] = {}
        for name, rule in site.violations.items():
            try:
                reason = DeductionReason(name)
            except ValueError:
                allowed = ", ".join(member.value for member in DeductionReason)
                mistakes.append(f"{where}.violations.{name}: unknown reason: expected one of {allowed}")
                continue
            violations[reason.value] = _rule(rule, currency, f"{where}.violations.{name}", mistakes)
        sites[code] = {
            "currency": currency,
            "time_zone": site.time_zone,
            "required": required,
            "violations": violations,
        }
    return {
        "version": entry.version,
        "effective_from": entry.effective_from,
        "settlement_window": timedelta(days=entry.settlement_window_days),
        "top_up_deadline": timedelta(days=entry.top_up_deadline_days),
        "appeal_window": timedelta(days=entry.appeal_window_days),
        "sites": sites,
    }


def _rule(rule: ViolationEntry, currency: str, where: str, mistakes: list[str]) -> dict[str, Any]:
    daily_cap = None if rule.daily_cap is None else _minor(rule.daily_cap, currency, f"{where}.daily_cap", mistakes)
    if rule.fixed is not None:
        penalty: dict[str, Any] = {
            "kind": "fixed",
            "amount_minor": _minor(rule.fixed, currency, f"{where}.fixed", mistakes),
        }
    else:
        rate = Decimal(rule.share_bp) / 10_000 if rule.share_bp is not None else Decimal(rule.share or 0)
        penalty = {"kind": "share", "rate": rate}
        if rule.floor is not None:
            penalty["floor_minor"] = _minor(rule.floor, currency, f"{where}.floor", mistakes, allow_zero=True)
        if rule.cap is not None:
            penalty["cap_minor"] = _minor(rule.cap, currency, f"{where}.cap", mistakes)
    return {"penalty": penalty, "daily_cap_minor": daily_cap}


def _minor(value: Any, currency: str, where: str, mistakes: list[str], *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        mistakes.append(f'{where}: expected an amount such as 2000 or "2000.00", not {value!r}')
        return 0
    if allow_zero and _is_zero(value):
        return 0
    try:
        return to_minor(str(value) if isinstance(value, int) else value, currency)
    except MalformedInput as error:
        mistakes.append(f"{where}: {error}")
        return 0


def _is_zero(value: Any) -> bool:
    try:
        return Decimal(str(value)) == 0
    except ArithmeticError:
        return False  # to_minor names what is wrong with it


_PATTERN_WORDS = (
    ("^[A-Za-z0-9]", "a version is 1-32 letters, digits or _ . : -, starting with a letter or digit"),
    ("^[a-z0-9]", "a category is 1-32 lower-case letters, digits, _ or -"),
    ("^[A-Z0-9]", "a site code is 1-16 upper-case letters, digits, _ or -"),
)
"""What the names of a policy may look like, by how their patterns start (the first match wins)."""


_FILE_KEYS = {"rate": "share", "floor_minor": "floor", "cap_minor": "cap", "amount_minor": "fixed"}
"""The domain's field names of a penalty, as the file spells them."""


def _file_key(location: tuple[int | str, ...], *, several: bool) -> str:
    # Name a mistake as the file's key: drop pydantic's "[key]" marker and the domain's
    # "penalty.<kind>" level, and use the file's spelling of the field. The domain's history
    # names a version by its index: the file's reader counts [[versions]] from 1, and a file
    # of one version has no such level.
    parts = [str(part) for part in location if part != "[key]"]
    prefix = ""
    if len(location) >= 2 and location[0] == "versions" and isinstance(location[1], int):
        prefix = f"versions[{location[1] + 1}]" if several else ""
        parts = parts[2:]
    if "penalty" in parts:
        at = parts.index("penalty")
        parts[at:] = [_FILE_KEYS.get(part, part) for part in parts[at + 2 :]]
    return ".".join([prefix] * bool(prefix) + [part.removesuffix("_minor") for part in parts])


def _pydantic_mistakes(error: ValidationError, where: str, *, several: bool = False) -> list[str]:
    mistakes = []
    for problem in error.errors():
        key = _file_key(problem["loc"], several=several)
        pattern = str(problem.get("ctx", {}).get("pattern", ""))
        words = [words for start, words in _PATTERN_WORDS if pattern.startswith(start)]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "missing"
        elif problem["type"] == "string_pattern_mismatch" and words:
            message = words[0]
        else:
            message = problem["msg"].removeprefix("Value error, ")
            message = message[:1].lower() + message[1:]
        mistakes.append(
            f"{where}{key}: {message}" if key else f"{where.removesuffix('.')}: {message}" if where else message
        )
    return mistakes


def _mistakes(source: str, mistakes: list[str]) -> MalformedInput:
    listed = "; ".join(mistakes[:MAX_LISTED_MISTAKES])
    more = len(mistakes) - MAX_LISTED_MISTAKES
    suffix = f" (and {more} more)" if more > 0 else ""
    return MalformedInput(f"policy {source}: {listed}{suffix}")
