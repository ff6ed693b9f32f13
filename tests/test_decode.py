"""Decoding the real stream's shapes, and bad input: a reason counted, a dead letter written,
the good records of the same message kept."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import orjson
import pytest

from stream.decode.events import Checker, Decoder
from stream.decode.prefilter import Prefilter
from stream.stores.memory import MemoryStore
from stream.timeutil import format_ticks, parse_ticks
from tests.conftest import SHARED
from tests.gen import AS_OF, DEVICES, network_props, record
from tests.harness import run, seed_rules, table

RULE = seed_rules()[0]
DEFENDER = SHARED / "data" / "defender"


def good(rid: int = 1, **kw) -> dict:
    return record(
        network_props(
            DEVICES[0], AS_OF - 10**7 * rid, rid, "relay.splashtop.com", "Splashtop Inc.", **kw
        )
    )


def decoder() -> Decoder:
    return Decoder([Checker(RULE.rule.table, RULE.columns)])


@pytest.mark.skipif(not DEFENDER.is_dir(), reason="../shared/data/defender is not here")
@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEFENDER.glob("*.*") if p.suffix != ".md") if DEFENDER.is_dir() else [],
    ids=lambda p: p.name,
)
def test_every_shared_file_decodes_without_crash(path: Path) -> None:
    dec = decoder()
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    bad = events = other = 0
    for line in lines:
        out = dec.decode(line)
        bad += len(out.bad)
        events += len(out.events)
        other += out.other_tables
    assert bad == 0
    assert events > 0
    if path.name == "elastic-test-device.log":
        assert (events, other) == (17, 14)  # SOURCES.md: 17 DeviceNetworkEvents of 31


def test_timestamps_keep_every_tick() -> None:
    for text, ticks_frac in [
        ("2026-11-30T09:00:00Z", 0),
        ("2026-11-30T09:00:00.1Z", 1000000),
        ("2026-11-30T09:00:00.18835Z", 1883500),
        ("2026-11-30T09:00:00.1234567Z", 1234567),
        ("2026-11-30T09:00:00.0000001Z", 1),
    ]:
        t = parse_ticks(text)
        assert t % 10**7 == ticks_frac
    assert format_ticks(parse_ticks("2026-11-30T09:00:00.18835Z")) == "2026-11-30T09:00:00.1883500Z"
    # 1 tick apart stays 1 tick apart (a float or microseconds would merge them)
    a = parse_ticks("2026-11-30T09:00:00.1234567Z")
    assert parse_ticks("2026-11-30T09:00:00.1234568Z") - a == 1


def test_nulls_are_empty_strings_and_unused_columns_are_not_checked() -> None:
    rec = good()
    rec["properties"]["DeviceName"] = None
    rec["properties"]["InitiatingProcessUniqueId"] = "not a number"  # no rule uses it
    rec["properties"]["AdditionalFields"] = {"nested": [1, 2]}
    out = decoder().decode(orjson.dumps({"records": [rec]}))
    assert out.bad == [] and len(out.events) == 1
    assert out.events[0].text("DeviceName") == ""


def test_event_time_is_properties_timestamp_not_envelope_time() -> None:
    rec = good()
    rec["time"] = "2020-01-01T00:00:00.0000000Z"
    out = decoder().decode(orjson.dumps(rec))
    assert out.events[0].ticks == parse_ticks(rec["properties"]["Timestamp"])


BAD_RECORDS = [
    ("wrong_type", lambda p: p.update(ReportId="355896")),
    ("wrong_type", lambda p: p.update(RemoteUrl=12345)),
    ("wrong_type", lambda p: p.update(InitiatingProcessVersionInfoCompanyName=["Splashtop"])),
    ("wrong_type", lambda p: p.update(DeviceId=7)),
    ("wrong_type", lambda p: p.update(ReportId=2**63)),
    ("wrong_type", lambda p: p.update(ReportId=2**64)),
    ("wrong_type", lambda p: p.update(ReportId=1.5)),
    ("missing_timestamp", lambda p: p.pop("Timestamp")),
    ("bad_timestamp", lambda p: p.update(Timestamp="yesterday")),
    ("bad_timestamp", lambda p: p.update(Timestamp=1700000000)),
    ("bad_timestamp", lambda p: p.update(Timestamp="2026-02-30T00:00:00Z")),
    ("missing_report_id", lambda p: p.pop("ReportId")),
]


@pytest.mark.parametrize(("reason", "spoil"), BAD_RECORDS)
def test_bad_record_is_counted_dead_lettered_and_neighbours_survive(reason, spoil) -> None:
    bad = good(2)
    spoil(bad["properties"])
    msg = json.dumps({"records": [good(1), bad, good(3)]}).encode()

    async def go():
        store = MemoryStore()
        pipe, sink = await run(store, [msg], AS_OF)
        return pipe, sink, await table(store, AS_OF)

    pipe, sink, rows = asyncio.run(go())
    assert pipe.stats.bad == {reason: 1}
    assert pipe.metrics.bad.labels(reason)._value.get() == 1
    assert [d["reason"] for d in sink.dead] == [reason]
    assert sink.dead[0]["source"] == "test:1" and sink.dead[0]["record_index"] == 1
    assert json.loads(sink.dead[0]["raw"])["properties"]["MachineGroup"] == "EMEA Laptops"
    assert rows[0]["Count"] == 2 and rows[0]["Report"] == [1, 3]


BAD_MESSAGES = [
    ("invalid_json", b'{"records": [{"properties": {"RemoteUrl": "relay.splashtop.com", "Repo'),
    ("invalid_json", b"splashtop is not JSON"),
    ("invalid_utf8", b'{"records": [], "x": "splashtop \xff\xfe"}'),
    ("not_object", b'"splashtop"'),
    ("bad_envelope", b'{"records": {"splashtop": 1}}'),
    ("not_object", b'[1, "splashtop"]'),
]


@pytest.mark.parametrize(("reason", "raw"), BAD_MESSAGES)
def test_bad_message_is_dead_lettered_and_other_messages_survive(reason, raw) -> None:
    msgs = [orjson.dumps(good(1)), raw, orjson.dumps(good(2))]

    async def go():
        store = MemoryStore()
        pipe, sink = await run(store, msgs, AS_OF, batch=10)
        return pipe, sink, await table(store, AS_OF)

    pipe, sink, rows = asyncio.run(go())
    assert sum(pipe.stats.bad.values()) >= 1 and set(pipe.stats.bad) == {reason}
    entry = sink.dead[0]
    assert entry["reason"] == reason and entry["source"] == "test:2"
    if reason == "invalid_utf8":
        assert base64.b64decode(entry["raw_base64"]) == raw and "raw" not in entry
    else:
        assert entry["raw"].encode() == raw or reason == "not_object"
    assert rows[0]["Count"] == 2


def test_other_tables_are_skipped_and_counted() -> None:
    other = record(
        {"Timestamp": "2026-11-30T00:00:00Z", "DeviceId": "d", "DeviceName": "n", "ReportId": 1},
        category="AdvancedHunting-SomeNewTable",
    )
    out = decoder().decode(orjson.dumps({"records": [other, good()]}))
    assert out.other_tables == 1 and len(out.events) == 1 and out.bad == []


def test_prefilter_never_drops_an_escaped_match() -> None:
    pre = Prefilter(frozenset([b"splashtop"]))
    assert pre.may_match(b'{"RemoteUrl": "relay.SPLASHTOP.com"}')
    assert pre.may_match(b'{"RemoteUrl": "relay.\\u0073plashtop.com"}')
    assert pre.may_match(b'{"RemoteUrl": "relay.spl\\u0041shtop.com"}')
    assert not pre.may_match(b'{"RemoteUrl": "www.example.com", "x": "\\u00e9"}')
    assert not pre.may_match(b'{"RemoteUrl": "www.example.com"}')


def test_record_level_prefilter_keeps_an_escaped_record_beside_plain_ones() -> None:
    plain = good(1)
    plain["properties"]["RemoteUrl"] = "www.example.com"
    plain["properties"]["InitiatingProcessVersionInfoCompanyName"] = "Contoso"
    escaped = json.dumps(good(2)).replace("splashtop", "spl\\u0061shtop")
    other = json.dumps(good(3))  # a plain match in the same message
    msg = f'{{"records": [{json.dumps(plain)}, {escaped}, {other}]}}'.encode()

    async def go():
        store = MemoryStore()
        pipe, _ = await run(store, [msg], AS_OF)
        return pipe, await table(store, AS_OF)

    pipe, rows = asyncio.run(go())
    assert pipe.stats.skipped == 1 and pipe.stats.matched == 2
    assert rows[0]["Report"] == [2, 3]


def test_admit_agrees_with_may_match() -> None:
    pre = Prefilter(frozenset([b"splashtop"]))
    for data in [
        b'{"a": "SPLASHTOP"}',
        b'{"a": "spl\\u0061shtop"}',
        b'{"a": "x", "b": "\\u00e9"}',
        b'{"a": "www.example.com"}',
    ]:
        assert (pre.admit(data) is not None) == pre.may_match(data)
