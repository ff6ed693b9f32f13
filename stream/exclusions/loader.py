"""Read an exclusions file (YAML, see docs/exclusions.md) into a compiled `ExclusionSet`.

Every error is an `ExclusionError` whose message names the file, the exclusion and the key, e.g.

    exclusions.yaml: exclusions[0] (helpdesk): when.LocalIP.cidr: invalid network '10.50.0.0/33'

The YAML is read with YAML 1.2 scalars: `18:00` is a string (YAML 1.1 would read it as the
number 1080), `yes`/`no`/`on`/`off` are strings, `010` is 10. A key given twice in one mapping is an
error (YAML would silently keep the last one and drop a condition).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from stream.decode.schema import TABLES, Kind
from stream.exclusions import conditions as C
from stream.exclusions.model import (
    Condition,
    Exclusion,
    ExclusionError,
    ExclusionSet,
    FileId,
    Predicate,
    file_identity,
)
from stream.metrics import Metrics
from stream.timeutil import TICKS_PER_DAY, now_ticks

log = logging.getLogger("rmm_stream")

TOP_KEYS = ("exclusions",)
EXCLUSION_KEYS = ("name", "rules", "owner", "reason", "ticket", "expires", "enabled", "when")
VALUE_OPS = ("in", "not_in", "startswith", "endswith", "cidr", "not_cidr")
FILE_OPS = tuple(f"{op}_file" for op in VALUE_OPS)
TIME_OPS = ("weekdays", "between", "timezone")
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "string": VALUE_OPS,
    "dynamic": VALUE_OPS,
    "long": ("in", "not_in"),
    "bool": ("in", "not_in"),
    "datetime": TIME_OPS,
}
_COST = {"in": 1, "not_in": 1, "startswith": 2, "endswith": 2, "cidr": 3, "not_cidr": 3}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_INT = re.compile(r"[-+]?[0-9]+\Z")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\Z")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def columns() -> dict[str, Kind]:
    """Every column of every table a rule may read (DeviceNetworkEvents today)."""
    out: dict[str, Kind] = {}
    for cols in TABLES.values():
        for c, k in cols.items():
            out.setdefault(c, k)
    return out


# -- YAML ---------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars and duplicate-key detection."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                    seen.add(key)
                except TypeError:
                    continue
                if dup:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found key {key!r} twice",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)  # type: ignore[arg-type]


_DROP = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _DROP]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$"
    ),
    list("-+0123456789."),
)
_Loader.add_constructor(
    "tag:yaml.org,2002:int",
    lambda loader, node: int(loader.construct_scalar(node), 10),  # type: ignore[arg-type]
)
_Loader.add_constructor(
    "tag:yaml.org,2002:bool",
    lambda loader, node: loader.construct_scalar(node).lower() == "true",  # type: ignore[union-attr]
)


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """One line: 'line 5, column 7: found key 'LocalIP' twice (while constructing a mapping)'."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or "error"
        context = f" ({exc.context})" if exc.context else ""
        return f"{where}{problem}{context}"
    return " ".join(str(exc).split())


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


# -- loading ------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, src: str, base: Path) -> None:
        self.src = src
        self.base = base
        self.files: list[tuple[Path, FileId]] = []
        self.where = ""

    def read(self, path: Path) -> str:
        """Read a file, recording its identity first (so a change after it is noticed)."""
        self.files.append((path, file_identity(path)))
        return path.read_text(encoding="utf-8-sig")

    def fail(self, key: str, msg: str) -> ExclusionError:
        where = f"{self.where}: " if self.where else ""
        keypart = f"{key}: " if key else ""
        return ExclusionError(f"{self.src}: {where}{keypart}{msg}", tuple(self.files))


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    lower = {o.lower(): o for o in options}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.75)
    return f"did you mean {lower[close[0]]!r}? " if close else ""


def load_exclusions(
    path: str | Path,
    rule_ids: list[str] | None = None,
    *,
    metrics: Metrics | None = None,
    now: int | None = None,
) -> ExclusionSet:
    """Read, check and compile an exclusions file. `rule_ids`: the loaded rules (an exclusion
    naming another rule is an error). `now`: the instant expiry is judged at (ticks; default the
    clock). Logs each expired exclusion and sets `Metrics.exclusions_expired`."""
    exset = read_exclusions(path, rule_ids, now=now)
    report(exset, metrics)
    return exset


def report(exset: ExclusionSet, metrics: Metrics | None = None) -> None:
    """Log the set as loaded (expired exclusions are warnings) and set the expired gauge."""
    for e in exset.expired:
        log.warning(
            "exclusions %s: exclusion %r expired on %s and no longer applies%s",
            exset.source,
            e.name,
            e.expires,
            f" (owner {e.owner})" if e.owner else "",
        )
    today = dt.date.fromordinal(exset.now_ticks // TICKS_PER_DAY + 1)
    for e in exset.active:
        if e.expires is not None and (e.expires - today).days < 14:
            log.info(
                "exclusions %s: exclusion %r expires on %s%s",
                exset.source,
                e.name,
                e.expires,
                f" (owner {e.owner})" if e.owner else "",
            )
    log.info("exclusions %s: %s loaded", exset.source, exset.describe())
    if metrics is not None:
        metrics.exclusions_expired.set(len(exset.expired))


def read_exclusions(
    path: str | Path, rule_ids: list[str] | None = None, *, now: int | None = None
) -> ExclusionSet:
    """As load_exclusions, without logging or metrics."""
    p = Path(path)
    ctx = _Ctx(str(path), p.parent)
    try:
        text = ctx.read(p)
    except OSError as exc:
        raise ctx.fail("", f"cannot read exclusions file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ctx.fail("", "not UTF-8 text") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ctx.fail("", f"invalid YAML: {yaml_error_text(exc)}") from None
    exclusions = exclusions_from_data(data, ctx, rule_ids)
    return ExclusionSet(
        exclusions,
        source=str(path),
        files=tuple(ctx.files),
        rule_ids=rule_ids,
        now_ticks=now_ticks() if now is None else now,
    )


def exclusions_from_data(data: Any, ctx: _Ctx, rule_ids: list[str] | None) -> list[Exclusion]:
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ctx.fail("", "must be a mapping with the key 'exclusions' (a list)")
    for k in data:
        if k not in TOP_KEYS:
            raise ctx.fail(str(k), "unknown key (the file has one key: exclusions)")
    items = data.get("exclusions")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ctx.fail("exclusions", "must be a list of exclusions")
    out: list[Exclusion] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items):
        ctx.where = f"exclusions[{i}]"
        ex = _exclusion(item, ctx, rule_ids)
        if ex.name in names:
            raise ctx.fail("name", f"{ex.name!r} already used by exclusions[{names[ex.name]}]")
        names[ex.name] = i
        out.append(ex)
    ctx.where = ""
    return out


def _exclusion(item: Any, ctx: _Ctx, rule_ids: list[str] | None) -> Exclusion:
    if not isinstance(item, dict):
        raise ctx.fail("", f"an exclusion must be a mapping (name, when, ...), got {item!r}")
    name = item.get("name")
    if isinstance(name, str) and name:
        ctx.where = f"{ctx.where} ({name})"
    for k in item:
        if k not in EXCLUSION_KEYS:
            raise ctx.fail(
                str(k),
                f"unknown field ({_suggest(str(k), EXCLUSION_KEYS)}known: "
                f"{', '.join(EXCLUSION_KEYS)})",
            )
    if name is None:
        raise ctx.fail("name", "missing (every exclusion needs a name: it labels metrics)")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ctx.fail(
            "name", f"{name!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. helpdesk)"
        )
    rules = _rules(item.get("rules"), ctx, rule_ids)
    meta = {}
    for k in ("owner", "reason", "ticket"):
        v = item.get(k)
        if v is not None and not isinstance(v, str | int):
            raise ctx.fail(k, "must be a string")
        meta[k] = "" if v is None else str(v)
    expires = _date(item.get("expires"), ctx)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ctx.fail("enabled", "must be true or false")
    when = item.get("when")
    if when is None:
        raise ctx.fail("when", "missing (the conditions that must all hold)")
    if not isinstance(when, dict) or not when:
        raise ctx.fail(
            "when",
            "must map column names to conditions, e.g. "
            "{InitiatingProcessFileName: {in: [CcmExec.exe]}}; an exclusion without conditions "
            "would remove every event",
        )
    conds: list[Condition] = []
    cols = columns()
    for column, body in when.items():
        column = str(column)
        key = f"when.{column}"
        kind = cols.get(column)
        if kind is None:
            raise ctx.fail(
                key,
                f"unknown column ({_suggest(column, list(cols))}columns are those of "
                "DeviceNetworkEvents, e.g. LocalIP, RemotePort, InitiatingProcessAccountUpn)",
            )
        if not isinstance(body, dict) or not body:
            raise ctx.fail(key, "must map operators to values, e.g. {in: [...]}")
        if kind == "datetime":
            conds.append(_time_condition(column, body, ctx, key))
        else:
            conds.extend(_value_conditions(column, kind, body, ctx, key))
    conds.sort(key=lambda c: c.cost)
    return Exclusion(
        name=name,
        rules=rules,
        conditions=tuple(conds),
        owner=meta["owner"],
        reason=meta["reason"],
        ticket=meta["ticket"],
        expires=expires,
        enabled=enabled,
        predicates=tuple(c.predicate for c in conds),
    )


def _rules(value: Any, ctx: _Ctx, rule_ids: list[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ctx.fail("rules", "must be a non-empty list of rule ids (omit it for every rule)")
    if rule_ids is not None:
        for v in value:
            if v not in rule_ids:
                known = ", ".join(sorted(rule_ids)) or "none"
                raise ctx.fail("rules", f"no loaded rule has id {v!r} (loaded: {known})")
    return tuple(value)


def _date(value: Any, ctx: _Ctx) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        raise ctx.fail("expires", f"a date without a time, e.g. 2027-06-30 (got {value})")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ctx.fail("expires", f"must be a date, e.g. 2027-06-30 (got {value!r})")


# -- value conditions ---------------------------------------------------------------------------


def _value_conditions(
    column: str, kind: Kind, body: dict[Any, Any], ctx: _Ctx, key: str
) -> list[Condition]:
    allowed = OPS_BY_KIND[kind]
    allowed_all = [*allowed, *(f"{op}_file" for op in allowed)]
    lists: dict[str, list[Any]] = {}
    for op, value in body.items():
        op = str(op)
        here = f"{key}.{op}"
        if op not in allowed_all:
            if op in TIME_OPS:
                msg = f"{op} applies to datetime columns such as Timestamp, not to {column}"
            else:
                what = {"long": "number", "bool": "true/false"}.get(kind, kind)
                msg = f"unknown operator ({_suggest(op, allowed_all)}{column} is a {what} column"
                msg += f"; operators: {', '.join(allowed_all)})"
            raise ctx.fail(here, msg)
        if op.endswith("_file"):
            base = op[: -len("_file")]
            items = _from_files(value, ctx, here, base, kind)
        else:
            base = op
            items = _inline(value, ctx, here)
            items = [_item(v, ctx, here, base, kind) for v in items]
        lists.setdefault(base, []).extend(items)
    out = []
    for op, items in lists.items():
        out.append(Condition(column, op, _compile(column, kind, op, items), _COST[op]))
    return out


def _inline(value: Any, ctx: _Ctx, here: str) -> list[Any]:
    if isinstance(value, str | int | float | bool):
        return [value]
    if not isinstance(value, list) or not value:
        raise ctx.fail(here, "needs a value or a non-empty list of values")
    return value


def _item(v: Any, ctx: _Ctx, here: str, op: str, kind: Kind, where: str = "") -> Any:
    """Check and convert one list value for op on a column of kind."""
    if kind == "long":
        if type(v) is int:
            return v
        if isinstance(v, str) and _INT.match(v.strip()):
            return int(v.strip())
        raise ctx.fail(here, f"{where}{v!r} is not an integer (the column holds numbers)")
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        raise ctx.fail(here, f"{where}{v!r} is not true or false (the column holds booleans)")
    if type(v) is int:
        v = str(v)
    if not isinstance(v, str):
        raise ctx.fail(here, f"{where}{v!r}: values must be strings (quote them)")
    if op in ("cidr", "not_cidr"):
        try:
            return C.parse_network(v)
        except ValueError as exc:
            raise ctx.fail(here, f"{where}invalid CIDR: {exc}") from None
    if op in ("startswith", "endswith") and v == "":
        raise ctx.fail(here, f"{where}an empty {op} value would match every event")
    return v


def _from_files(value: Any, ctx: _Ctx, here: str, op: str, kind: Kind) -> list[Any]:
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not paths or not all(isinstance(x, str) for x in paths):
        raise ctx.fail(here, "needs a file path or a list of file paths")
    out: list[Any] = []
    for rel in paths:
        p = Path(rel)
        full = p if p.is_absolute() else ctx.base / p
        try:
            text = ctx.read(full)
        except OSError as exc:
            raise ctx.fail(
                here, f"cannot read list file {rel} ({full}): {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ctx.fail(here, f"list file {rel} ({full}) is not UTF-8 text") from None
        n = 0
        for lineno, value_text in list_file_values(text):
            out.append(_item(value_text, ctx, here, op, kind, f"{rel} line {lineno}: "))
            n += 1
        if n == 0:
            log.warning("%s: %s: %s: list file %s holds no values", ctx.src, ctx.where, here, rel)
    return out


def list_file_values(text: str) -> list[tuple[int, str]]:
    """(line number, value) of a list file: one value per line; blank lines and lines starting
    with # are skipped; ' #' (whitespace then #) starts a trailing comment."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        s = re.split(r"\s#", s, maxsplit=1)[0].rstrip()
        if s:
            out.append((i, s))
    return out


def _compile(column: str, kind: Kind, op: str, items: list[Any]) -> Predicate:
    negate = op.startswith("not_")
    if op in ("in", "not_in"):
        if kind == "long":
            return C.in_numbers(column, items, negate)
        if kind == "bool":
            return C.in_bools(column, items, negate)
        return C.in_strings(column, items, negate)
    if op in ("startswith", "endswith"):
        return C.affix(column, items, op)
    return C.cidr(column, C.CidrSet(items), negate)


# -- time conditions ----------------------------------------------------------------------------


def _time_condition(column: str, body: dict[Any, Any], ctx: _Ctx, key: str) -> Condition:
    for op in body:
        if str(op) not in TIME_OPS:
            raise ctx.fail(
                f"{key}.{op}",
                f"unknown operator ({_suggest(str(op), TIME_OPS)}{column} is a datetime column; "
                f"operators: {', '.join(TIME_OPS)})",
            )
    if "weekdays" not in body and "between" not in body:
        raise ctx.fail(key, "needs weekdays and/or between (timezone alone selects nothing)")
    tz_name = body.get("timezone", "UTC")
    if not isinstance(tz_name, str) or not tz_name.strip():
        raise ctx.fail(f"{key}.timezone", "must be an IANA time zone name, e.g. Europe/Berlin")
    tz_name = tz_name.strip()
    if tz_name != "UTC":
        try:
            C.zone(tz_name)
        except (KeyError, ValueError, OSError):
            hint = _suggest(tz_name, [z for z in _zone_names() if "/" in z])
            if not hint and tz_name.isalpha() and tz_name.isupper():
                hint = "an abbreviation such as CEST is not a zone; "
            raise ctx.fail(
                f"{key}.timezone",
                f"unknown time zone {tz_name!r} ({hint}use an IANA name such as Europe/Berlin "
                "or America/New_York)",
            ) from None
    weekdays = None
    if "weekdays" in body:
        weekdays = _weekdays(body["weekdays"], ctx, f"{key}.weekdays")
    start = end = None
    if "between" in body:
        here = f"{key}.between"
        b = body["between"]
        if not isinstance(b, list) or len(b) != 2:
            raise ctx.fail(here, "must be [start, end], e.g. ['08:00', '18:00']")
        start = _time_of_day(b[0], ctx, here, allow_24=False)
        end = _time_of_day(b[1], ctx, here, allow_24=True)
        if start == end:
            raise ctx.fail(here, "start and end are equal (to cover the whole day, omit between)")
    window = C.TimeWindow(tz_name, weekdays, start, end)
    return Condition(column, "time", C.time_window(column, window), 4)


def _weekdays(value: Any, ctx: _Ctx, here: str) -> frozenset[int]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ctx.fail(here, "must be a list of days, e.g. [mon, tue, wed, thu, fri] or mon-fri")
    days: set[int] = set()
    for v in items:
        if not isinstance(v, str):
            raise ctx.fail(here, f"{v!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")
        parts = v.split("-")
        if len(parts) > 2:
            raise ctx.fail(here, f"{v!r} is not a day or a range of days such as mon-fri")
        idx = [_day(p, ctx, here) for p in parts]
        if len(idx) == 1:
            days.add(idx[0])
        else:
            d = idx[0]
            days.add(d)
            while d != idx[1]:
                d = (d + 1) % 7
                days.add(d)
    return frozenset(days)


def _day(text: str, ctx: _Ctx, here: str) -> int:
    t = text.strip().lower()
    if t in _DAYS:
        return _DAYS.index(t)
    if t in _FULL_DAYS:
        return _FULL_DAYS.index(t)
    raise ctx.fail(here, f"{text!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")


def _time_of_day(value: Any, ctx: _Ctx, here: str, allow_24: bool) -> int:
    if isinstance(value, str):
        m = _TIME.match(value.strip())
        if m:
            h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
            if h == 24 and mi == 0 and s == 0 and allow_24:
                return 86_400
            if h < 24 and mi < 60 and s < 60:
                return h * 3600 + mi * 60 + s
    hint = " (24:00 may only end a range)" if value == "24:00" else ""
    raise ctx.fail(
        here, f"malformed time {value!r}: write 'HH:MM' or 'HH:MM:SS', 00:00-23:59{hint}"
    )


_zone_cache: list[str] = []


def _zone_names() -> list[str]:
    if not _zone_cache:
        import zoneinfo

        with contextlib.suppress(Exception):  # no tz database at all
            _zone_cache.extend(sorted(zoneinfo.available_timezones()))
    return _zone_cache
