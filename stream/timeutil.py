"""Kusto datetimes as integer 100-ns ticks.

Kusto's `datetime` is a .NET DateTime: 100-nanosecond ticks since 0001-01-01T00:00:00Z. We keep
the same integer everywhere (never a float, never microseconds) so that window edges are exact to
the tick and a 7-digit fraction survives a round trip. Ticks are always non-negative, which lets
the Redis store order events by a fixed-width decimal string.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from stream.errors import ConfigurationError

TICKS_PER_SECOND = 10_000_000
TICKS_PER_MS = 10_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
# Days from 0001-01-01 to 1970-01-01.
_EPOCH_DAYS = 719_162
UNIX_EPOCH_TICKS = _EPOCH_DAYS * TICKS_PER_DAY
TICK_WIDTH = 19  # digits of the largest tick value (9999-12-31) when zero-padded

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?\Z"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)\Z")
_DURATION_UNITS = {
    "d": TICKS_PER_DAY,
    "h": 3600 * TICKS_PER_SECOND,
    "m": 60 * TICKS_PER_SECOND,
    "s": TICKS_PER_SECOND,
    "ms": TICKS_PER_MS,
}

# Cache of "YYYY-MM-DDTHH:MM:SS" -> ticks of that second: events arrive in bursts sharing it.
_second_cache: dict[str, int] = {}


class TimeParseError(ConfigurationError):
    pass


def parse_ticks(text: str, *, require_utc: bool = False) -> int:
    """Parse an ISO 8601 instant into ticks. Fractions longer than 7 digits are truncated
    (Kusto's resolution); a missing zone means UTC unless require_utc is set."""
    m = _ISO.match(text)
    if m is None:
        raise TimeParseError(f"not an ISO 8601 instant: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if zone is None and require_utc:
        raise TimeParseError(f"instant has no time zone: {text!r}")
    key = text[:19]
    base = _second_cache.get(key)
    if base is None:
        try:
            d = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError as exc:
            raise TimeParseError(f"invalid date or time in {text!r}: {exc}") from None
        base = (d.toordinal() - 1) * TICKS_PER_DAY + (
            d.hour * 3600 + d.minute * 60 + d.second
        ) * TICKS_PER_SECOND
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        _second_cache[key] = base
    ticks = base
    if frac:
        ticks += int((frac + "000000")[:7])
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * TICKS_PER_SECOND
        ticks -= sign * offset
    if ticks < 0:
        raise TimeParseError(f"instant before year 1: {text!r}")
    return ticks


def format_ticks(ticks: int) -> str:
    """Kusto's output format: 7 fractional digits and `Z`, e.g. 2026-11-30T09:00:00.1234567Z."""
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    days, rem = divmod(seconds, 86_400)
    d = datetime.fromordinal(days + 1)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{frac:07d}Z"


def ticks_to_datetime(ticks: int) -> datetime:
    """A timezone-aware UTC datetime (microsecond resolution: for calendar logic only)."""
    return datetime(1, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)


def ticks_to_unix_seconds(ticks: int) -> float:
    return (ticks - UNIX_EPOCH_TICKS) / TICKS_PER_SECOND


def unix_seconds_to_ticks(seconds: float) -> int:
    return UNIX_EPOCH_TICKS + round(seconds * TICKS_PER_SECOND)


def now_ticks() -> int:
    import time

    return UNIX_EPOCH_TICKS + time.time_ns() // 100


def parse_duration(text: str | int | float) -> int:
    """'5d', '10m', '90s', '1.5h', '250ms' -> ticks. A bare number is seconds."""
    if isinstance(text, bool):
        raise TimeParseError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        return round(text * TICKS_PER_SECOND)
    m = _DURATION.match(text.strip())
    if m is None:
        try:
            return round(float(text) * TICKS_PER_SECOND)
        except ValueError:
            raise TimeParseError(
                f"not a duration: {text!r} (use a number with d, h, m, s or ms)"
            ) from None
    return round(float(m.group(1)) * _DURATION_UNITS[m.group(2)])


def pad_ticks(ticks: int) -> str:
    return f"{ticks:0{TICK_WIDTH}d}"
