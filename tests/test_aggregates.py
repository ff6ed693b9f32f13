"""Aggregates beyond the seed's, through the payload path of both stores, hand-derived:
make_set with a size cap (overflow counted), dcount, min/max over other columns, a group key
without DeviceName (so the identity carries it)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from stream.rules.compiled import CompiledRule
from stream.rules.loader import rule_from_data
from stream.stores.memory import MemoryStore
from stream.stores.redis import RedisStore
from tests.gen import AS_OF, DEVICES, network_props, record
from tests.harness import drop_prefix, run, table

RULE = CompiledRule(
    rule_from_data(
        {
            "id": "test-aggregates",
            "name": "aggregates",
            "table": "DeviceNetworkEvents",
            "lookback": "1d",
            "where": [{"RemoteUrl": {"has": "splashtop.com"}}],
            "summarize": {
                "by": ["DeviceId"],
                "aggregates": {
                    "Ports": "make_set(RemotePort, 2)",
                    "Ips": "dcount(RemoteIP)",
                    "MinPort": "min(RemotePort)",
                    "LatestStart": "max(InitiatingProcessCreationTime)",
                    "Names": "make_set(DeviceName)",
                    "Reports": "make_set(ReportId, 3)",
                    "N": "count()",
                },
            },
        },
        "test",
    )
)


def msgs() -> list[bytes]:
    dev = DEVICES[1]
    rows = [
        # (offset s, ReportId, port, ip, creation time, device name)
        (-10, 1, 443, "198.51.100.1", "2026-11-29T08:00:00Z", dev[1]),
        (-20, 2, 80, "198.51.100.2", "2026-11-30T01:00:00.5Z", dev[1]),
        (-30, 3, 8443, "198.51.100.1", None, "TESTMACHINE5"),
        (-40, 4, 443, "198.51.100.3", "2026-11-28T00:00:00Z", dev[1]),
        (-2 * 86400, 5, 1, "198.51.100.9", "2026-11-30T11:00:00Z", dev[1]),  # outside 1d
    ]
    out = []
    for off, rid, port, ip, created, name in rows:
        p = network_props(
            (dev[0], name),
            AS_OF + off * 10**7,
            rid,
            "relay.splashtop.com",
            "x",
            RemotePort=port,
            RemoteIP=ip,
            InitiatingProcessCreationTime=created,
        )
        out.append(json.dumps({"records": [record(p)]}).encode())
    return out


EXPECTED = [
    {
        "DeviceId": DEVICES[1][0],
        "Ports": [80, 443],  # distinct {80, 443, 8443}, capped at 2: the smallest are kept
        "Ips": 3,
        "MinPort": 80,
        "LatestStart": "2026-11-30T01:00:00.5000000Z",
        "Names": ["TESTMACHINE5", "testmachine5"],
        "Reports": [1, 2, 3],
        "N": 4,
    }
]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_payload_aggregates(kind, request) -> None:
    async def go():
        if kind == "memory":
            store = MemoryStore()
            prefix = url = None
        else:
            url = request.getfixturevalue("redis_url")
            prefix = f"a{uuid.uuid4().hex[:8]}:"
            store = RedisStore(url, prefix)
        try:
            pipe, sink = await run(store, msgs(), AS_OF, rules=[RULE], batch=2)
            assert await table(store, AS_OF, [RULE]) == EXPECTED
            # alert rows use the same aggregates; the overflow of the two capped sets is counted
            assert sink.docs[-1]["Ports"] == [80, 443]
            assert pipe.stats.set_overflow >= 1
            # the 1d window moves: one day minus 15 s later only the event at -10 s is left
            later = await table(store, AS_OF + (86400 - 15) * 10**7, [RULE])
            assert [r["Reports"] for r in later] == [[1]]
        finally:
            await store.close()
            if url:
                await drop_prefix(url, prefix)

    asyncio.run(go())
