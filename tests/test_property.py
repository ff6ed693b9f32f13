"""Random event streams through the core, compared with the brute-force evaluator.

Streams are shuffled, carry redeliveries, mix in other tables, use every message shape and JSON
style (escaped letters included), and sit on every window edge. The table must equal the KQL
result at as_of; each group in the alert range gets exactly one `new` alert, and the last alert of
each group carries the final row."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.stores.memory import MemoryStore
from stream.stores.redis import RedisStore
from tests import oracle
from tests.gen import AS_OF, message_streams
from tests.harness import drop_prefix, run, seed_rules, table

SKEW = 10 * 60 * 10**7


def check_alerts(docs: list[dict], messages: list[bytes]) -> None:
    expected = {
        (r["DeviceId"], r["DeviceName"], r["RemoteUrl"]): r
        for r in oracle.evaluate(messages, AS_OF, ahead=SKEW)
    }
    new = [d for d in docs if d["Kind"] == "new"]
    keys = [(d["DeviceId"], d["DeviceName"], d["RemoteUrl"]) for d in new]
    assert sorted(keys) == sorted(expected), "one new alert per group in the alert range"
    assert len({d["AlertId"] for d in new}) == len(new)
    last: dict[tuple, dict] = {}
    for d in docs:
        k = (d["DeviceId"], d["DeviceName"], d["RemoteUrl"])
        if k not in last or d["Sequence"] > last[k]["Sequence"]:
            last[k] = d
    for k, row in expected.items():
        got = {c: last[k][c] for c in row}
        assert got == row


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_streams(), batch=st.integers(1, 12), validate_all=st.booleans())
def test_memory_store_equals_evaluator(messages, batch, validate_all):
    async def go():
        store = MemoryStore()
        _, sink = await run(store, messages, AS_OF, batch=batch, validate_all=validate_all)
        assert await table(store, AS_OF) == oracle.evaluate(messages, AS_OF)
        check_alerts(sink.docs, messages)

    asyncio.run(go())


@pytest.mark.redis
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(messages=message_streams(), batch=st.integers(1, 12), buckets=st.sampled_from([1, 4, 256]))
def test_redis_store_equals_evaluator(redis_url, messages, batch, buckets):
    async def go():
        prefix = f"p{uuid.uuid4().hex[:10]}:"
        store = RedisStore(redis_url, prefix)
        rules = seed_rules(buckets)
        try:
            _, sink = await run(store, messages, AS_OF, batch=batch, rules=rules)
            assert await table(store, AS_OF, rules) == oracle.evaluate(messages, AS_OF)
            check_alerts(sink.docs, messages)
        finally:
            await store.close()
            await drop_prefix(redis_url, prefix)

    asyncio.run(go())
