"""An independent brute-force evaluator of exclusions files, for tests only.

It shares no code with `stream`: it reads the file's data (a dict, as yaml.safe_load gives it)
itself, tests CIDRs by looping over `ipaddress.ip_network` objects, converts times with `zoneinfo`
directly and folds case with its own ASCII table. `filter_messages` removes the records an
exclusion takes out, so that `tests.oracle.evaluate(filtered, as_of)` is what the pipeline's table
must equal with the exclusions loaded.

Semantics (docs/exclusions.md), written out again:
- an exclusion applies to a rule when it has no `rules` or lists the rule; not when
  `enabled: false`; not once the UTC date of as_of is after `expires`;
- it holds when every condition holds; the first that holds (file order) names the exclusion;
- string columns compare tostring(value) (null is ""), ASCII case-insensitively;
  number columns compare numbers only; bool columns booleans only;
- `cidr`/`not_cidr` need a value that is an IP address (IPv4-mapped IPv6 counts as IPv4);
- `not_X` is the negation of `X` on a comparable value (an IP for not_cidr, a number for number
  columns), never true on a value that cannot be compared;
- Timestamp: local time in `timezone` (default UTC), weekdays of the local date, `between` start
  inclusive, end exclusive, end before start wraps past midnight, "24:00" ends the day.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.oracle import kusto_has, rows_of, ticks

EPOCH = datetime(1, 1, 1, tzinfo=UTC)
NUMBER_COLUMNS = {
    "RemotePort",
    "LocalPort",
    "InitiatingProcessFileSize",
    "InitiatingProcessId",
    "InitiatingProcessParentId",
    "ReportId",
    "InitiatingProcessSessionId",
    "InitiatingProcessUniqueId",
}
BOOL_COLUMNS = {"IsInitiatingProcessRemoteSession"}
TIME_COLUMNS = {"Timestamp", "InitiatingProcessCreationTime", "InitiatingProcessParentCreationTime"}
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def fold(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def tostring(v: Any) -> str:
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def list_file(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8-sig").split("\n"):
        line = line.strip()
        if line == "" or line[0] == "#":
            continue
        for i in range(1, len(line)):
            if line[i] == "#" and line[i - 1] in " \t":
                line = line[:i].strip()
                break
        if line:
            out.append(line)
    return out


def values(ops: dict[str, Any], op: str, base: Path) -> list[Any] | None:
    """The list of op (inline and from op_file together), or None when op is not given."""
    if op not in ops and op + "_file" not in ops:
        return None
    out: list[Any] = []
    if op in ops:
        v = ops[op]
        out += v if isinstance(v, list) else [v]
    if op + "_file" in ops:
        f = ops[op + "_file"]
        for name in f if isinstance(f, list) else [f]:
            out += list_file(base / name)
    return out


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    net = ipaddress.ip_network(text.strip())
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(MAPPED):
        low = int(net.network_address) - int(MAPPED.network_address)
        net = ipaddress.ip_network(f"{ipaddress.IPv4Address(low)}/{net.prefixlen - 96}")
    return net


def address(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(v, str):
        return None
    try:
        a = ipaddress.ip_address(v)
    except ValueError:
        return None
    if a.version == 6 and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def as_number(v: Any) -> int:
    return v if isinstance(v, int) else int(str(v).strip())


def as_bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() == "true"


def hhmm(text: str) -> time | None:
    """None stands for 24:00."""
    parts = [int(x) for x in text.strip().split(":")]
    while len(parts) < 3:
        parts.append(0)
    if parts[0] == 24:
        return None
    return time(parts[0], parts[1], parts[2])


def weekday_set(spec: Any) -> set[int]:
    days: set[int] = set()
    for item in spec if isinstance(spec, list) else [spec]:
        ends = [DAY_NAMES.index(x.strip().lower()[:3]) for x in item.split("-")]
        d = ends[0]
        days.add(d)
        while d != ends[-1]:
            d = (d + 1) % 7
            days.add(d)
    return days


def time_holds(ops: dict[str, Any], when_ticks: int) -> bool:
    tz = ZoneInfo(ops.get("timezone", "UTC"))
    local = (EPOCH + timedelta(microseconds=when_ticks // 10)).astimezone(tz)
    if "weekdays" in ops and local.weekday() not in weekday_set(ops["weekdays"]):
        return False
    if "between" in ops:
        start, end = hhmm(ops["between"][0]), hhmm(ops["between"][1])
        t = local.time().replace(tzinfo=None)
        assert start is not None
        if end is None:
            return t >= start
        if start < end:
            return start <= t < end
        return t >= start or t < end
    return True


def column_holds(column: str, ops: dict[str, Any], props: dict[str, Any], base: Path) -> bool:
    v = props.get(column)
    if column in TIME_COLUMNS:
        if column == "Timestamp":
            t = ticks(props["Timestamp"])
        else:
            if not isinstance(v, str):
                return False
            try:
                t = ticks(v)
            except AssertionError:
                return False
        return time_holds(ops, t)
    if column in NUMBER_COLUMNS:
        is_num = isinstance(v, int | float) and not isinstance(v, bool)
        for op, negate in (("in", False), ("not_in", True)):
            want = values(ops, op, base)
            if want is None:
                continue
            if not is_num:
                return False
            hit = any(v == as_number(w) for w in want)
            if hit == negate:
                return False
        return True
    if column in BOOL_COLUMNS:
        for op, negate in (("in", False), ("not_in", True)):
            want = values(ops, op, base)
            if want is None:
                continue
            if not isinstance(v, bool):
                return False
            if any(v == as_bool(w) for w in want) == negate:
                return False
        return True
    text = fold(tostring(v))
    for op, negate in (("in", False), ("not_in", True)):
        want = values(ops, op, base)
        if want is not None and any(text == fold(tostring(w)) for w in want) == negate:
            return False
    for op in ("startswith", "endswith"):
        want = values(ops, op, base)
        if want is None:
            continue
        test = str.startswith if op == "startswith" else str.endswith
        if not any(test(text, fold(str(w))) for w in want):
            return False
    for op, negate in (("cidr", False), ("not_cidr", True)):
        want = values(ops, op, base)
        if want is None:
            continue
        a = address(v)
        if a is None:
            return False
        inside = False
        for w in want:
            if a in network(str(w)):
                inside = True
        if inside == negate:
            return False
    return True


def expires_of(ex: dict[str, Any]) -> date | None:
    e = ex.get("expires")
    if e is None:
        return None
    return e if isinstance(e, date) else date.fromisoformat(str(e))


def excluded_by(
    props: dict[str, Any], data: dict[str, Any] | None, rule_id: str, as_of: int, base: Path
) -> str | None:
    today = (EPOCH + timedelta(microseconds=as_of // 10)).date()
    for ex in (data or {}).get("exclusions") or []:
        rules = ex.get("rules")
        if isinstance(rules, str):
            rules = [rules]
        if rules is not None and rule_id not in rules:
            continue
        if ex.get("enabled", True) is False:
            continue
        exp = expires_of(ex)
        if exp is not None and today > exp:
            continue
        if all(column_holds(c, ops, props, base) for c, ops in ex["when"].items()):
            return ex["name"]
    return None


def seed_match(p: dict[str, Any]) -> bool:
    """The seed rule's where clause (the pipeline asks exclusions only about matched events)."""
    url = p.get("RemoteUrl") or ""
    company = p.get("InitiatingProcessVersionInfoCompanyName") or ""
    return (kusto_has(url, "splashtop.com") or kusto_has(url, "splashtop.eu")) and kusto_has(
        company, "Splashtop"
    )


def filter_messages(
    messages: list[bytes], data: dict[str, Any] | None, rule_id: str, as_of: int, base: Path
) -> tuple[list[bytes], dict[str, int]]:
    """Messages without the records an exclusion removes, and how many each removed."""
    out: list[bytes] = []
    counts: dict[str, int] = {}
    for raw in messages:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            out.append(raw)
            continue
        kept = []
        for props in rows_of(body):
            name = excluded_by(props, data, rule_id, as_of, base) if seed_match(props) else None
            if name is None:
                kept.append(props)
            else:
                counts[name] = counts.get(name, 0) + 1
        out.append(json.dumps(kept).encode())
    return out, counts
