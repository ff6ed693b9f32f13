"""Load rule files (our small YAML format, see docs/rules.md) into the rule model.

Every error names the file and the key, so an operator can fix it without reading code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from stream.decode.schema import KNOWN_TABLES, known_columns
from stream.errors import ConfigurationError
from stream.rules.model import (
    AGGREGATE_FUNCS,
    LIST_OPS,
    MAKE_SET_DEFAULT_LIMIT,
    NUMERIC_OPS,
    STRING_OPS,
    Aggregate,
    All,
    AnyOf,
    Compare,
    Condition,
    Not,
    Rule,
    condition_columns,
)
from stream.timeutil import TimeParseError, parse_duration


class RuleError(ConfigurationError):
    """A rule file is unreadable or invalid; the message says where and why."""


_AGG = re.compile(r"\s*(\w+)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*(?:,\s*(\d+)\s*)?\)\s*\Z")
_TOP_KEYS = {
    "extra_columns",
    "id",
    "name",
    "description",
    "severity",
    "tactics",
    "techniques",
    "table",
    "lookback",
    "where",
    "summarize",
    "alerting",
    "references",
}
_SEVERITIES = {"Informational", "Low", "Medium", "High"}


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _fail(src: str, key: str, msg: str) -> RuleError:
    return RuleError(f"{src}: {key}: {msg}")


def _str_list(src: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(src, key, "must be a string or a list of strings")


def _condition(src: str, key: str, node: Any) -> Condition:
    if not isinstance(node, dict) or not node:
        raise _fail(src, key, f"a condition must be a non-empty mapping, got {node!r}")
    parts: list[Condition] = []
    for name, body in node.items():
        here = f"{key}.{name}"
        if name in ("all", "any"):
            if not isinstance(body, list) or not body:
                raise _fail(src, here, "must be a non-empty list of conditions")
            items = tuple(_condition(src, f"{here}[{i}]", c) for i, c in enumerate(body))
            parts.append(All(items) if name == "all" else AnyOf(items))
        elif name == "not":
            parts.append(Not(_condition(src, here, body)))
        else:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                raise _fail(src, here, "not a column name")
            if not isinstance(body, dict) or not body:
                raise _fail(src, here, "must map an operator to a value, e.g. {has: Splashtop}")
            for op, value in body.items():
                parts.append(_compare(src, f"{here}.{op}", str(name), str(op), value))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _compare(src: str, key: str, column: str, op: str, value: Any) -> Compare:
    if op not in STRING_OPS and op not in NUMERIC_OPS:
        known = ", ".join(sorted(STRING_OPS | NUMERIC_OPS))
        raise _fail(src, key, f"unknown operator {op!r} (known: {known})")
    if op in LIST_OPS:
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list) or not value:
            raise _fail(src, key, "needs a non-empty list of values")
        if any(isinstance(v, bool | dict | list) or v is None for v in value):
            raise _fail(src, key, "values must be strings or numbers")
        if op in ("has_any", "has_all") and any(not isinstance(v, str) for v in value):
            raise _fail(src, key, "values must be strings")
        if len(value) > 10_000:
            raise _fail(src, key, "at most 10,000 values (Kusto's has_any limit)")
        return Compare(column, op, tuple(value))
    if op in NUMERIC_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(src, key, "needs a number")
        return Compare(column, op, value)
    if isinstance(value, bool | dict | list) or value is None:
        raise _fail(src, key, "needs a string or a number")
    if op not in ("==", "!=") and not isinstance(value, str):
        raise _fail(src, key, "needs a string")
    return Compare(column, op, value)


def _aggregates(src: str, node: Any) -> tuple[Aggregate, ...]:
    if not isinstance(node, dict) or not node:
        raise _fail(src, "summarize.aggregates", "must map output names to e.g. min(Timestamp)")
    out = []
    for name, expr in node.items():
        key = f"summarize.aggregates.{name}"
        m = _AGG.match(str(expr))
        if m is None:
            raise _fail(src, key, f"cannot read {expr!r}; write e.g. make_set(ReportId, 100)")
        func, column, limit = m.group(1), m.group(2), m.group(3)
        if func not in AGGREGATE_FUNCS:
            raise _fail(src, key, f"unknown function {func!r} (known: {sorted(AGGREGATE_FUNCS)})")
        if func == "count":
            if column is not None:
                raise _fail(src, key, "count() takes no column")
        elif column is None:
            raise _fail(src, key, f"{func}() needs a column")
        lim = None
        if func == "make_set":
            lim = int(limit) if limit else MAKE_SET_DEFAULT_LIMIT
            if not 1 <= lim <= MAKE_SET_DEFAULT_LIMIT:
                raise _fail(src, key, f"make_set size must be 1..{MAKE_SET_DEFAULT_LIMIT}")
        elif limit is not None:
            raise _fail(src, key, f"{func}() takes one argument")
        out.append(Aggregate(str(name), func, column, lim))
    return tuple(out)


def rule_from_data(data: Any, src: str) -> Rule:
    if not isinstance(data, dict):
        raise RuleError(f"{src}: a rule file must be a YAML mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(src, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    for req in ("id", "name", "table", "lookback", "where", "summarize"):
        if req not in data:
            raise _fail(src, req, "missing")
    rid = str(data["id"]).strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid):
        raise _fail(src, "id", "use 1-64 letters, digits, '.', '_' or '-' (a GUID is typical)")
    try:
        lookback = parse_duration(data["lookback"])
    except TimeParseError as exc:
        raise _fail(src, "lookback", str(exc)) from None
    if lookback <= 0:
        raise _fail(src, "lookback", "must be positive")
    where_node = data["where"]
    if isinstance(where_node, dict):
        where_node = [where_node]
    if not isinstance(where_node, list) or not where_node:
        raise _fail(src, "where", "must be a non-empty list of conditions (all must hold)")
    where = All(tuple(_condition(src, f"where[{i}]", c) for i, c in enumerate(where_node)))
    summ = data["summarize"]
    if not isinstance(summ, dict) or set(summ) - {"by", "aggregates"}:
        raise _fail(src, "summarize", "must have 'by' and 'aggregates'")
    by = _str_list(src, "summarize.by", summ.get("by"))
    if not by:
        raise _fail(src, "summarize.by", "needs at least one column")
    aggs = _aggregates(src, summ.get("aggregates"))
    clash = set(by) & {a.name for a in aggs}
    if clash:
        raise _fail(src, "summarize", f"output column {sorted(clash)[0]!r} defined twice")
    table = str(data["table"])
    _check_columns(src, data, table, where, by, aggs)
    severity = str(data.get("severity", "Medium"))
    if severity not in _SEVERITIES:
        raise _fail(src, "severity", f"one of {sorted(_SEVERITIES)}")
    alerting = data.get("alerting") or {}
    if not isinstance(alerting, dict) or set(alerting) - {"update_interval", "skew"}:
        raise _fail(src, "alerting", "may set only update_interval and skew")
    try:
        upd = parse_duration(alerting.get("update_interval", "15m"))
        skew = parse_duration(alerting.get("skew", "10m"))
    except TimeParseError as exc:
        raise _fail(src, "alerting", str(exc)) from None
    if upd < 0 or skew < 0:
        raise _fail(src, "alerting", "durations must not be negative")
    return Rule(
        id=rid,
        name=str(data["name"]),
        table=table,
        lookback_ticks=lookback,
        where=where,
        by=by,
        aggregates=aggs,
        severity=severity,
        description=str(data.get("description") or ""),
        tactics=_str_list(src, "tactics", data.get("tactics")),
        techniques=_str_list(src, "techniques", data.get("techniques")),
        update_interval_ticks=upd,
        skew_ticks=skew,
        source=src,
    )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_columns(
    src: str,
    data: dict[str, Any],
    table: str,
    where: All,
    by: tuple[str, ...],
    aggs: tuple[Aggregate, ...],
) -> None:
    """A misspelled table or column would make a rule silently match nothing: refuse it."""
    if table not in KNOWN_TABLES:
        raise _fail(src, "table", f"unknown table {table!r}{_did_you_mean(table, KNOWN_TABLES)}")
    known = known_columns(table)
    if known is None:
        return
    extra = set(_str_list(src, "extra_columns", data.get("extra_columns")))
    allowed = known | extra
    for key, cols in (
        ("where", sorted(condition_columns(where))),
        ("summarize.by", list(by)),
        ("summarize.aggregates", [a.column for a in aggs if a.column]),
    ):
        for col in cols:
            if col not in allowed:
                raise _fail(
                    src,
                    key,
                    f"unknown column {col!r} of {table}{_did_you_mean(col, allowed)}; a column "
                    "Defender added since may be declared under extra_columns",
                )


def load_rule_file(path: Path) -> Rule:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{path}: cannot read rule file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: invalid YAML: {_one_line(exc)}") from None
    return rule_from_data(data, str(path))


def load_rules(paths: list[Path]) -> list[Rule]:
    """Files, or folders of *.yaml / *.yml files. Duplicate ids are an error."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise RuleError(f"{p}: folder holds no *.yaml rule files")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise RuleError(f"{p}: no such rule file or folder")
    rules = [load_rule_file(f) for f in files]
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise RuleError(f"{r.source}: id {r.id} already defined in {seen[r.id]}")
        seen[r.id] = r.source
    return rules
