"""Generators of realistic Defender messages for tests (hypothesis strategies and helpers)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import strategies as st

from tests.oracle import fmt, ticks

AS_OF = ticks("2026-11-30T12:00:00Z")
DAY = 86400 * 10**7
MINUTE = 60 * 10**7
TENANT = "7c0a9e51-3b1f-4d52-9a55-0b8f2d6a1e01"

URLS = [
    "st2-v3-dc.relay.splashtop.com",
    "SPLASHTOP.COM",
    "splashtop.com.example.net",
    "notsplashtop.com",
    "splashtop.community.org",
    "a.splashtop.eu",
    "https://my.splashtop.eu/x",
    "my_splashtop.com",
    "www.example.com",
    None,
    "",
]
COMPANIES = [
    "Splashtop Inc.",
    "SplashtopInc",
    "splashtop",
    "Microsoft Corporation",
    None,
    "Splashtop_Inc",
]
DEVICES = [
    ("4f1e9b7c2a0d8e6f5b3c1a9d7e5f3b1c9a7d5e3f", "lt-0042.fabrikam.example"),
    ("de6509d550e605faf3bbeac0905ab9590fe12345", "testmachine5"),
    ("de6509d550e605faf3bbeac0905ab9590fe12345", "TESTMACHINE5"),
]
# Offsets from AS_OF that sit on and around every edge: the lookback's start, as_of, the skew.
EDGE_OFFSETS = [
    -5 * DAY - 1,
    -5 * DAY,
    -5 * DAY + 1,
    -3 * DAY,
    -1,
    0,
    1,
    5 * MINUTE,
    10 * MINUTE,
    10 * MINUTE + 1,
    DAY,
    -6 * DAY,
]
REPORT_IDS = [1, 2, 355896, 2**40 + 7, 2**63 - 1]


def record(props: dict[str, Any], category: str = "AdvancedHunting-DeviceNetworkEvents"):
    return {
        "time": props.get("Timestamp") or fmt(AS_OF),
        "tenantId": TENANT,
        "operationName": "Publish",
        "category": category,
        "properties": props,
        "Tenant": "DefaultTenant",
    }


def network_props(
    device: tuple[str, str],
    ts: int,
    report_id: int,
    url: str | None,
    company: str | None,
    frac_digits: int = 7,
    **extra: Any,
) -> dict[str, Any]:
    stamp = fmt(ts)
    if frac_digits < 7:
        # Kusto drops trailing digits only when they are zero: keep the value exact.
        body, frac = stamp[:-9], stamp[-8:-1]
        if frac[frac_digits:].strip("0") == "":
            stamp = body + ("." + frac[:frac_digits] if frac_digits else "") + "Z"
    props: dict[str, Any] = {
        "Timestamp": stamp,
        "DeviceId": device[0],
        "DeviceName": device[1],
        "ActionType": "ConnectionSuccess",
        "RemoteIP": "198.51.100.23",
        "RemotePort": 443,
        "RemoteUrl": url,
        "LocalIP": "10.20.30.40",
        "LocalPort": 61234,
        "Protocol": "TcpV4",
        "InitiatingProcessFileName": "SRService.exe",
        "InitiatingProcessVersionInfoCompanyName": company,
        "InitiatingProcessId": 9120,
        "InitiatingProcessUniqueId": "1688849860263936",
        "ReportId": report_id,
        "AdditionalFields": None,
        "MachineGroup": "EMEA Laptops",
    }
    props.update(extra)
    return props


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    off = draw(
        st.one_of(st.sampled_from(EDGE_OFFSETS), st.integers(-5 * DAY - MINUTE, 15 * MINUTE))
    )
    return network_props(
        draw(st.sampled_from(DEVICES)),
        AS_OF + off,
        draw(st.sampled_from(REPORT_IDS)),
        draw(st.sampled_from(URLS)),
        draw(st.sampled_from(COMPANIES)),
        frac_digits=draw(st.sampled_from([7, 7, 3, 0])),
    )


def encode(body: Any, style: str) -> bytes:
    text = json.dumps(
        body, ensure_ascii=style == "ascii", separators=(",", ":") if style == "compact" else None
    )
    if style == "escaped":
        # An escape inside the word must not hide the record from the prefilter.
        text = text.replace("plashtop", "pl\\u0061shtop").replace("Splash", "\\u0053plash")
    return text.encode()


@st.composite
def message_streams(draw: st.DrawFn, max_events: int = 30) -> list[bytes]:
    """Events, some delivered twice, shuffled, mixed with other tables and cut into messages of
    every accepted shape."""
    evs = draw(st.lists(events(), min_size=1, max_size=max_events))
    redeliver = draw(st.lists(st.sampled_from(range(len(evs))), max_size=len(evs)))
    items: list[dict[str, Any]] = [record(e) for e in evs] + [record(evs[i]) for i in redeliver]
    n_other = draw(st.integers(0, 3))
    items += [
        record(
            {
                "Timestamp": fmt(AS_OF),
                "DeviceId": "x",
                "DeviceName": "y",
                "ReportId": 9,
                "RemoteUrl": "splashtop.com",
                "InitiatingProcessVersionInfoCompanyName": "Splashtop Inc.",
            },
            category="AdvancedHunting-DeviceProcessEvents",
        )
        for _ in range(n_other)
    ]
    rnd = random.Random(draw(st.integers(0, 2**32)))
    rnd.shuffle(items)
    out: list[bytes] = []
    i = 0
    while i < len(items):
        n = rnd.randint(1, 6)
        chunk = items[i : i + n]
        i += n
        shape = rnd.choice(["records", "records", "array", "single", "bare"])
        if shape == "records":
            body: Any = {"records": chunk}
        elif shape == "array":
            body = chunk
        else:
            body = None
            for rec in chunk:
                one = (
                    rec
                    if shape == "single"
                    or rec["category"] != ("AdvancedHunting-DeviceNetworkEvents")
                    else rec["properties"]
                )
                out.append(encode(one, rnd.choice(["plain", "compact", "ascii", "escaped"])))
            continue
        out.append(encode(body, rnd.choice(["plain", "compact", "ascii", "escaped"])))
    return out
