"""An independent brute-force evaluator of the seed KQL query, for tests only.

It shares no code with `stream`: its own JSON parsing (stdlib json), its own timestamp parsing
(datetime arithmetic), its own `has` (a regex with look-arounds) and the query's logic written out
by hand. It answers "what would the KQL return at as_of" over every record ever received:

    DeviceNetworkEvents
    | where Timestamp between (as_of - 5d .. as_of)
    | where RemoteUrl has_any ('splashtop.com','splashtop.eu')
        and InitiatingProcessVersionInfoCompanyName has 'Splashtop'
    | summarize FirstSeen=min(Timestamp), LastSeen=max(Timestamp),
        Report=make_set(ReportId), Count=count() by DeviceId, DeviceName, RemoteUrl

with one documented departure from KQL: records with the same identity (DeviceId, DeviceName,
Timestamp, ReportId) in the same group count once (redelivery).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

RULE_ID = "7253fc17-ed4b-4c54-9612-7ad48274c294"
EPOCH = datetime(1, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1) / 10  # not representable: use integer arithmetic below
LOOKBACK_TICKS = 5 * 24 * 3600 * 10**7


def ticks(text: str) -> int:
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,7})\d*)?Z", text)
    assert m, text
    whole = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}+00:00")
    delta = whole - EPOCH
    frac = int((m.group(3) or "").ljust(7, "0"))
    return (delta.days * 86400 + delta.seconds) * 10**7 + frac


def fmt(t: int) -> str:
    secs, frac = divmod(t, 10**7)
    d = EPOCH + timedelta(seconds=secs)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z"


def kusto_has(hay: str, needle: str) -> bool:
    left = r"(?<![A-Za-z0-9])" if re.match(r"[A-Za-z0-9]", needle[0]) else ""
    right = r"(?![A-Za-z0-9])" if re.match(r"[A-Za-z0-9]", needle[-1]) else ""
    return re.search(left + re.escape(needle) + right, hay, re.IGNORECASE | re.ASCII) is not None


def rows_of(body: Any) -> list[dict[str, Any]]:
    """DeviceNetworkEvents rows of one message body (records / array / one record / bare row)."""
    if isinstance(body, dict) and "records" in body and "properties" not in body:
        recs = body["records"]
    elif isinstance(body, list):
        recs = body
    else:
        recs = [body]
    out = []
    for r in recs:
        if not isinstance(r, dict):
            continue
        if "category" in r or "properties" in r:
            if r.get("category") == "AdvancedHunting-DeviceNetworkEvents":
                out.append(r["properties"])
        else:
            out.append(r)
    return out


def evaluate(messages: list[bytes], as_of: int, ahead: int = 0) -> list[dict[str, Any]]:
    """The table at as_of, as `rmm-stream replay --summary` prints it (without RuleId).
    With ahead > 0 the upper edge is as_of + ahead (the alert range: device clock skew)."""
    seen: dict[tuple[str, str, str], dict[tuple[Any, ...], int]] = {}
    for raw in messages:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        for p in rows_of(body):
            def s(k: str, p: dict[str, Any] = p) -> str:
                return p.get(k) or ""  # null strings are ""

            url = s("RemoteUrl")
            company = s("InitiatingProcessVersionInfoCompanyName")
            if not (kusto_has(url, "splashtop.com") or kusto_has(url, "splashtop.eu")):
                continue
            if not kusto_has(company, "Splashtop"):
                continue
            t = ticks(p["Timestamp"])
            if not as_of - LOOKBACK_TICKS <= t <= as_of + ahead:
                continue
            key = (s("DeviceId"), s("DeviceName"), url)
            ident = (s("DeviceId"), s("DeviceName"), t, p["ReportId"])
            seen.setdefault(key, {})[ident] = t
    table = []
    for key in sorted(seen):
        events = seen[key]
        times = list(events.values())
        table.append(
            {
                "DeviceId": key[0],
                "DeviceName": key[1],
                "RemoteUrl": key[2],
                "FirstSeen": fmt(min(times)),
                "LastSeen": fmt(max(times)),
                "Report": sorted({ident[3] for ident in events}),
                "Count": len(events),
            }
        )
    return table
