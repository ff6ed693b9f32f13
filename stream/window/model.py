"""The sliding-window state model, shared by every store.

A group (rule + summarize key) holds its events as *members*: strings that sort by event time,
`<19-digit ticks>|<ReportId>[|<json of identity columns not in the key>]`. A member is the event's
identity, so adding it twice changes nothing (redelivery is harmless) and the window at any as_of
is the lexicographic range of members between two tick strings, exact to the tick. Aggregates
over columns that the member does not carry keep a per-member payload.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from stream.decode.schema import column_kind
from stream.rules.compiled import CompiledRule
from stream.timeutil import TICK_WIDTH, format_ticks, parse_ticks


def group_key(values: tuple[Any, ...]) -> str:
    """A group key as a compact, reversible, exact JSON array."""
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()


def bucket_of(gk: str, buckets: int) -> int:
    return zlib.crc32(gk.encode()) % buckets


def encode_member(ticks: int, report_id: int, extra: list[Any] | None) -> str:
    head = f"{ticks:0{TICK_WIDTH}d}|{report_id}"
    if extra is None:
        return head
    return head + "|" + orjson.dumps(extra).decode()


def member_ticks(member: str) -> int:
    return int(member[:TICK_WIDTH])


def member_report_id(member: str) -> int:
    end = member.find("|", TICK_WIDTH + 1)
    return int(member[TICK_WIDTH + 1 :] if end < 0 else member[TICK_WIDTH + 1 : end])


@dataclass(frozen=True)
class Bounds:
    """The window at one as_of: table range [lo, hi] and alert range [lo, alert_hi]."""

    as_of: int
    lo: int
    hi: int
    alert_hi: int

    @classmethod
    def at(cls, rule: CompiledRule, as_of: int) -> Bounds:
        return cls(as_of, as_of - rule.lookback, as_of, as_of + rule.skew)


@dataclass
class RowResult:
    row: dict[str, Any]  # output columns in order: group key, then aggregates
    set_overflow: int = 0  # values make_set had to leave out


def compute_row(
    rule: CompiledRule,
    key_values: list[Any],
    members: list[str],
    payloads: dict[str, list[Any]] | None = None,
) -> RowResult:
    """The summarize output of one group from its members in window (sorted ascending)."""
    row: dict[str, Any] = dict(zip(rule.by, key_values, strict=True))
    overflow = 0
    table = rule.rule.table
    for agg in rule.rule.aggregates:
        if agg.func == "count":
            row[agg.name] = len(members)
            continue
        col = agg.column
        assert col is not None
        if col == "Timestamp" and agg.func in ("min", "max"):
            # members are sorted by time: no scan needed
            t = member_ticks(members[0] if agg.func == "min" else members[-1]) if members else None
            row[agg.name] = format_ticks(t) if t is not None else None
            continue
        if col in rule.by:
            values = [key_values[rule.by.index(col)]] * len(members)
        else:
            values = _column_values(rule, col, members, payloads)
        non_null = [v for v in values if v is not None]
        if agg.func in ("min", "max"):
            if not non_null:
                row[agg.name] = None
                continue
            if column_kind(table, col) == "datetime" and col != "Timestamp":
                t = (min if agg.func == "min" else max)(parse_ticks(v) for v in non_null)
                row[agg.name] = format_ticks(t)
            else:
                row[agg.name] = (min if agg.func == "min" else max)(non_null, key=_sort_key)
        elif agg.func == "make_set":
            distinct = sorted({_hashable(v) for v in non_null}, key=_sort_key)
            limit = agg.limit or len(distinct)
            overflow += max(0, len(distinct) - limit)
            row[agg.name] = [_unhashable(v) for v in distinct[:limit]]
        elif agg.func == "dcount":
            row[agg.name] = len({_hashable(v) for v in non_null})
    return RowResult(row, overflow)


def _column_values(
    rule: CompiledRule, col: str, members: list[str], payloads: dict[str, list[Any]] | None
) -> list[Any]:
    if col == "Timestamp":
        return [format_ticks(member_ticks(m)) for m in members]
    if col == "ReportId":
        return [member_report_id(m) for m in members]
    if col in rule.identity_extra:
        i = rule.identity_extra.index(col)
        return [orjson.loads(m.split("|", 2)[2])[i] for m in members]
    i = rule.payload_columns.index(col)
    pl = payloads or {}
    return [pl[m][i] if m in pl else None for m in members]


def _hashable(v: Any) -> Any:
    if isinstance(v, dict | list):
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
    return v


def _unhashable(v: Any) -> Any:
    return v


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, v)
    if isinstance(v, int | float):
        return (1, v)
    return (2, str(v))
