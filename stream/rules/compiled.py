"""Compile a rule once into fast callables: predicate, group key, event member and payload."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from stream.decode.events import Event
from stream.decode.schema import IDENTITY_COLUMNS, Kind, column_kind
from stream.match.kusto import HasNeedle, ascii_lower
from stream.rules.model import (
    All,
    AnyOf,
    Compare,
    Condition,
    Not,
    Rule,
    condition_columns,
    condition_to_data,
)

Predicate = Callable[[Event], bool]


def as_text(v: Any) -> str:
    """Kusto's tostring() of a JSON value: null is ""."""
    if v is None:
        return ""
    if type(v) is str:
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return repr(v)
    return orjson.dumps(v).decode()


def _getter(column: str) -> Callable[[Event], str]:
    def get(e: Event) -> str:
        v = e.props.get(column)
        return v if type(v) is str else as_text(v)

    return get


def compile_condition(cond: Condition) -> Predicate:
    if isinstance(cond, All):
        parts = [compile_condition(c) for c in cond.items]
        if len(parts) == 1:
            return parts[0]
        return lambda e: all(p(e) for p in parts)
    if isinstance(cond, AnyOf):
        parts = [compile_condition(c) for c in cond.items]
        return lambda e: any(p(e) for p in parts)
    if isinstance(cond, Not):
        inner = compile_condition(cond.item)
        return lambda e: not inner(e)
    return _compile_compare(cond)


def _compile_compare(c: Compare) -> Predicate:
    op, column, value = c.op, c.column, c.value
    get = _getter(column)
    negate = op.startswith("!") and op not in ("!=",)
    base = op[1:] if negate else op
    pred: Predicate
    if base in ("has", "has_any", "has_all", "has_cs"):
        values = value if isinstance(value, tuple) else (value,)
        if base == "has_cs":
            needles = [HasNeedle("") for _ in values]
            for n, v in zip(needles, values, strict=True):
                n.needle, n._n = v, len(v)
                n._left = bool(v) and v[0].isascii() and v[0].isalnum()
                n._right = bool(v) and v[-1].isascii() and v[-1].isalnum()

            def pred(e: Event) -> bool:
                text = get(e)
                return any(n.in_folded(text) for n in needles)

        else:
            needles = [HasNeedle(v) for v in values]
            if base == "has_all":

                def pred(e: Event) -> bool:
                    text = ascii_lower(get(e))
                    return all(n.in_folded(text) for n in needles)

            elif len(needles) == 1:
                (one,) = needles

                def pred(e: Event) -> bool:
                    return one.in_folded(ascii_lower(get(e)))

            else:

                def pred(e: Event) -> bool:
                    text = ascii_lower(get(e))
                    return any(n.in_folded(text) for n in needles)

    elif base == "contains":
        low = ascii_lower(value)
        pred = lambda e: low in ascii_lower(get(e))  # noqa: E731
    elif base == "contains_cs":
        pred = lambda e: value in get(e)  # noqa: E731
    elif base == "startswith":
        low = ascii_lower(value)
        pred = lambda e: ascii_lower(get(e)).startswith(low)  # noqa: E731
    elif base == "endswith":
        low = ascii_lower(value)
        pred = lambda e: ascii_lower(get(e)).endswith(low)  # noqa: E731
    elif base in ("==", "!="):
        if isinstance(value, str):
            eq = lambda e: get(e) == value  # noqa: E731
        else:
            eq = lambda e: _num(e.props.get(column)) == value  # noqa: E731
        pred = eq if base == "==" else (lambda e: not eq(e))
    elif base in ("=~", "~"):
        low = ascii_lower(value)
        pred = lambda e: ascii_lower(get(e)) == low  # noqa: E731
        if op == "!~":
            negate = True
    elif base == "in":
        strs = frozenset(v for v in value if isinstance(v, str))
        nums = frozenset(v for v in value if not isinstance(v, str))

        def pred(e: Event) -> bool:
            v = e.props.get(column)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return v in nums
            return as_text(v) in strs

    elif base == "in~":
        strs = frozenset(ascii_lower(v) for v in value if isinstance(v, str))
        nums = frozenset(v for v in value if not isinstance(v, str))

        def pred(e: Event) -> bool:
            v = e.props.get(column)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return v in nums
            return ascii_lower(as_text(v)) in strs

    elif base in ("<", "<=", ">", ">="):
        cmp = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[base]

        def pred(e: Event) -> bool:
            v = _num(e.props.get(column))
            return v is not None and cmp(v, value)

    else:  # pragma: no cover - the loader rejects unknown operators
        raise ValueError(f"unknown operator {op}")
    if negate:
        inner = pred
        return lambda e: not inner(e)
    return pred


def _num(v: Any) -> int | float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v


class CompiledRule:
    """A rule ready for the hot path. `version` changes whenever matching or state changes."""

    def __init__(self, rule: Rule, buckets: int = 256) -> None:
        self.rule = rule
        self.id = rule.id
        self.buckets = buckets
        self.predicate = compile_condition(rule.where)
        self.by = rule.by
        self.lookback = rule.lookback_ticks
        self.skew = rule.skew_ticks
        self.update_interval = rule.update_interval_ticks
        # Identity columns not already in the group key make the member unique within a group.
        self.identity_extra = tuple(c for c in ("DeviceId", "DeviceName") if c not in rule.by)
        # Columns an aggregate needs beyond the member (time, ReportId, identity, group key).
        derivable = set(IDENTITY_COLUMNS) | set(rule.by)
        self.payload_columns = tuple(
            sorted({a.column for a in rule.aggregates if a.column and a.column not in derivable})
        )
        used = condition_columns(rule.where) | set(rule.by) | set(IDENTITY_COLUMNS)
        used |= {a.column for a in rule.aggregates if a.column}
        self.columns: dict[str, Kind] = {c: column_kind(rule.table, c) for c in sorted(used)}
        canon = {
            "table": rule.table,
            "where": condition_to_data(rule.where),
            "by": list(rule.by),
            "aggregates": [[a.name, a.func, a.column, a.limit] for a in rule.aggregates],
            "lookback": rule.lookback_ticks,
            "buckets": buckets,
        }
        self.version = hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()[
            :10
        ]
        by = self.by
        if len(by) == 3:
            a, b, c = by
            self.group_values = lambda p: (_key(p.get(a)), _key(p.get(b)), _key(p.get(c)))
        else:
            self.group_values = lambda p: tuple(_key(p.get(k)) for k in by)

    def member_extra(self, props: dict[str, Any]) -> list[Any] | None:
        if not self.identity_extra:
            return None
        return [_key(props.get(c)) for c in self.identity_extra]

    def payload(self, props: dict[str, Any]) -> list[Any] | None:
        if not self.payload_columns:
            return None
        return [props.get(c) for c in self.payload_columns]


def _key(v: Any) -> Any:
    # Group keys are exact: strings as they are, null as "" (Kusto has no null strings).
    return "" if v is None else v
