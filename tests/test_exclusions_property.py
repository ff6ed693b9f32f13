"""Random exclusions files over random event streams: the pipeline (memory store) must produce the
table the brute-force evaluator gives for the events the independent exclusions evaluator keeps,
and count the same exclusions."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.exclusions import load_exclusions
from stream.pipeline import Pipeline
from stream.rules.compiled import CompiledRule
from stream.rules.loader import load_rules
from stream.sources.base import RawMessage
from stream.stores.memory import MemoryStore
from tests import oracle
from tests.oracle_exclusions import filter_messages

ROOT = Path(__file__).resolve().parent.parent
RULE = "7253fc17-ed4b-4c54-9612-7ad48274c294"
SECOND = 10**7
DAY = 86400 * SECOND
# now() just after each 2026 DST change in Europe (and the US's in March/November), and a plain day.
AS_OFS = [
    oracle.ticks(t)
    for t in (
        "2026-03-31T00:00:00Z",
        "2026-10-27T00:00:00Z",
        "2026-11-03T06:00:00Z",
        "2026-11-30T12:00:00Z",
    )
]

NETWORKS = [
    "10.50.0.0/16",
    "10.50.1.0/24",
    "10.51.0.0/16",
    "192.0.2.0/24",
    "0.0.0.0/0",
    "fd00:50::/32",
    "::/0",
    "::ffff:10.50.0.0/112",
    "2001:db8::/32",
    "10.50.1.2",
    "198.51.100.0/25",
    "10.0.0.0/8",
    "fd00:50::1/128",
]
IPS = [
    "10.50.1.2",
    "10.50.0.0",
    "10.50.255.255",
    "10.51.0.1",
    "10.49.255.255",
    "::ffff:10.50.1.2",
    "::ffff:192.0.2.9",
    "fd00:50::1",
    "fd00:51::1",
    "192.0.2.10",
    "2001:db8::5",
    "2001:db9::1",
    "-",
    "",
    None,
    "not-an-ip",
    "10.050.1.2",
    "fe80::1%eth0",
    "0.0.0.0",
    "198.51.100.200",
    "198.51.100.1",
    "::1",
    "::ffff:10.51.0.1",
]
FILES = [
    "CcmExec.exe",
    "ccmexec.EXE",
    "SRService.exe",
    "ansible-runner.exe",
    None,
    "",
    "CcmExec.exe ",
    "ANSIBLE-runner.exe",
]
FILE_VALUES = ["ccmexec.exe", "CcmExec", ".EXE", "ansible-runner.exe", "SRService.exe", "Srv", ""]
UPNS = ["alice@contoso.example", "ALICE@Contoso.Example", "bob@contoso.example", None, ""]
PORTS = [22, 443, 80, 3389, None, "443"]
DEVICES = [
    ("4f1e9b7c2a0d8e6f5b3c1a9d7e5f3b1c9a7d5e3f", "lt-0042.contoso.example"),
    ("de6509d550e605faf3bbeac0905ab9590fe12345", "testmachine5"),
]
URLS = ["st2-v3-dc.relay.splashtop.com", "a.splashtop.eu", "www.example.com"]
COMPANIES = ["Splashtop Inc.", "Splashtop Inc.", "Microsoft Corporation"]
TIMES = [
    "00:00",
    "01:30",
    "02:00",
    "02:30",
    "03:00",
    "06:00",
    "08:00",
    "12:00",
    "18:00",
    "22:00",
    "23:59:59",
    "24:00",
]
ZONES = [None, "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@st.composite
def events(draw, as_of: int) -> dict[str, Any]:
    # Half the events sit on a half hour (every `between` edge in every zone here), give or take
    # a tick; the others anywhere in the lookback.
    seconds = draw(
        st.one_of(st.integers(-3600, 6 * 86400), st.integers(-2, 6 * 48).map(lambda k: k * 1800))
    )
    offset = seconds * SECOND + draw(st.sampled_from([0, 1, -1, SECOND - 1]))
    dev = draw(st.sampled_from(DEVICES))
    p = {
        "Timestamp": oracle.fmt(as_of - offset),
        "DeviceId": dev[0],
        "DeviceName": dev[1],
        "ActionType": "ConnectionSuccess",
        "RemoteIP": draw(st.sampled_from(IPS)),
        "RemotePort": draw(st.sampled_from(PORTS)),
        "RemoteUrl": draw(st.sampled_from(URLS)),
        "LocalIP": draw(st.sampled_from(IPS)),
        "InitiatingProcessFileName": draw(st.sampled_from(FILES)),
        "InitiatingProcessVersionInfoCompanyName": draw(st.sampled_from(COMPANIES)),
        "InitiatingProcessAccountUpn": draw(st.sampled_from(UPNS)),
        "ReportId": draw(st.integers(1, 40)),
    }
    return {
        "time": p["Timestamp"],
        "tenantId": "t",
        "operationName": "Publish",
        "category": "AdvancedHunting-DeviceNetworkEvents",
        "properties": p,
    }


def subset(pool: list[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=max_size, unique=True)


@st.composite
def value_ops(draw, ops: list[str], pool: list[Any]) -> dict[str, Any]:
    """One or two operators on a column; each list inline, from a file, or both (as '@file')."""
    out: dict[str, Any] = {}
    for op in draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True)):
        vals = draw(subset([v for v in pool if not (v == "" and op in ("startswith", "endswith"))]))
        how = draw(st.sampled_from(["inline", "file", "both"]))
        if how == "inline":
            out[op] = vals
        elif how == "file":
            out[op + "_file"] = ["@", vals]
        else:
            out[op] = vals[:1]
            out[op + "_file"] = ["@", vals[1:] or vals]
    return out


@st.composite
def time_ops(draw) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = draw(st.sampled_from(["weekdays", "between", "both"]))
    if kind in ("weekdays", "both"):
        out["weekdays"] = draw(
            st.one_of(
                subset(DAYS, 4),
                st.tuples(st.sampled_from(DAYS), st.sampled_from(DAYS)).map(
                    lambda t: f"{t[0]}-{t[1]}"
                ),
            )
        )
    if kind in ("between", "both"):
        start = draw(st.sampled_from(TIMES[:-1]))
        end = draw(st.sampled_from([t for t in TIMES if t != start]))
        out["between"] = [start, end]
    tz = draw(st.sampled_from(ZONES))
    if tz is not None:
        out["timezone"] = tz
    return out


CONDITIONS = {
    "LocalIP": value_ops(["cidr", "not_cidr"], NETWORKS),
    "RemoteIP": value_ops(["cidr", "not_cidr"], NETWORKS),
    "InitiatingProcessFileName": value_ops(["in", "not_in", "startswith", "endswith"], FILE_VALUES),
    "InitiatingProcessAccountUpn": value_ops(
        ["in", "not_in"], ["alice@contoso.example", "BOB@contoso.example", ""]
    ),
    "RemotePort": value_ops(["in", "not_in"], [22, 443, 3389]),
    "Timestamp": time_ops(),
}


@st.composite
def exclusion_files(draw, as_of: int) -> dict[str, Any]:
    today = (oracle.EPOCH + dt.timedelta(microseconds=as_of // 10)).date()
    items = []
    for i in range(draw(st.sampled_from([0, 1, 1, 2, 2, 3, 4]))):
        values = sorted(c for c in CONDITIONS if c != "Timestamp")
        cols = draw(st.lists(st.sampled_from(values), max_size=2, unique=True))
        if not cols or draw(st.booleans()):
            cols.append("Timestamp")
        ex: dict[str, Any] = {"name": f"x{i}", "when": {c: draw(CONDITIONS[c]) for c in cols}}
        if draw(st.booleans()):
            ex["rules"] = [RULE]
        exp = draw(st.sampled_from([None, None, -1, 0, 1]))
        if exp is not None:
            ex["expires"] = today + dt.timedelta(days=exp)
        if draw(st.integers(0, 9)) == 0:
            ex["enabled"] = False
        items.append(ex)
    return {"exclusions": items}


def materialise(data: dict[str, Any], folder: Path) -> Path:
    """Write the list files ('@' markers) and the exclusions file; returns its path."""
    n = 0
    for ex in data["exclusions"]:
        for ops in ex["when"].values():
            for op, v in list(ops.items()):
                if isinstance(v, list) and v and v[0] == "@":
                    n += 1
                    name = f"lists/l{n}.txt"
                    (folder / "lists").mkdir(exist_ok=True)
                    lines = ["# generated", ""] + [f"{x}  # value {k}" for k, x in enumerate(v[1])]
                    (folder / name).write_text("\n".join(lines) + "\n")
                    ops[op] = name
    path = folder / "exclusions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class _Sink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    async def write(self, docs: list[dict[str, Any]]) -> None:
        self.docs.extend(docs)


RULES = [CompiledRule(r) for r in load_rules([ROOT / "config" / "rules"])]


def edges(data: dict[str, Any], as_of: int) -> list[int]:
    """Instants (ticks) at every `between` edge of data, on each day of the lookback."""
    out = []
    today = (oracle.EPOCH + dt.timedelta(microseconds=as_of // 10)).date()
    for ex in data["exclusions"]:
        ops = ex["when"].get("Timestamp")
        if not ops or "between" not in ops:
            continue
        tz = ZoneInfo(ops.get("timezone") or "UTC")
        for text in ops["between"]:
            h, m, *sec = (int(x) for x in text.split(":"))
            extra = dt.timedelta(days=1) if h == 24 else dt.timedelta(0)
            h = 0 if h == 24 else h
            for back in range(7):
                day = today - dt.timedelta(days=back)
                local = dt.datetime.combine(day, dt.time(h, m, *sec), tz) + extra
                utc = local.astimezone(dt.UTC).replace(tzinfo=None)
                out.append(oracle.ticks(utc.isoformat() + "Z"))
    return out


@st.composite
def scenarios(draw):
    as_of = draw(st.sampled_from(AS_OFS))
    data = draw(exclusion_files(as_of))
    recs = draw(st.lists(events(as_of), min_size=5, max_size=40))
    near = [t for t in edges(data, as_of) if as_of - 5 * DAY <= t <= as_of]
    for r in recs:  # a third of the events on (or a tick off) a `between` edge
        if near and draw(st.integers(0, 2)) == 0:
            t = draw(st.sampled_from(near)) + draw(st.sampled_from([-1, 0, 1]))
            r["time"] = r["properties"]["Timestamp"] = oracle.fmt(t)
    sizes = draw(st.lists(st.integers(1, 4), min_size=len(recs), max_size=len(recs)))
    messages, i = [], 0
    for n in sizes:
        if i >= len(recs):
            break
        messages.append(json.dumps({"records": recs[i : i + n]}).encode())
        i += n
    if draw(st.booleans()) and messages:  # a redelivery
        messages.append(messages[draw(st.integers(0, len(messages) - 1))])
    return as_of, messages, data, draw(st.integers(1, 5))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_pipeline_with_exclusions_equals_the_evaluators(scenario):
    as_of, messages, data, batch = scenario
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = materialise(data, folder)
        exset = load_exclusions(path, [RULE], now=as_of)
        kept, counts = filter_messages(messages, data, RULE, as_of, folder)

    async def go():
        store = MemoryStore()
        excluded = _Sink()
        pipe = Pipeline(RULES, store, _Sink(), excluded_sink=excluded, exclusions=exset)
        await pipe.start()
        raw = [RawMessage(m, "test", i + 1) for i, m in enumerate(messages)]
        for i in range(0, len(raw), batch):
            await pipe.process(raw[i : i + batch], as_of)
        await pipe.finish(as_of)
        rows = [rr.row for r in RULES for rr in await store.table(r, as_of)]
        return pipe, rows, excluded.docs

    pipe, rows, docs = asyncio.run(go())
    assert rows == oracle.evaluate(kept, as_of)
    assert dict(pipe.stats.excluded) == {(RULE, k): v for k, v in counts.items()}
    assert len(docs) == sum(counts.values())
