"""Redis-specific guarantees, on a real redis-server: crash between state and sink, two
processes on one Redis, key layout, TTLs against as_of, the eviction-policy warning."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from stream.pipeline import Pipeline
from stream.sources.base import RawMessage
from stream.stores.redis import RedisStore
from tests import oracle
from tests.conftest import ROOT
from tests.gen import AS_OF, DAY, DEVICES, URLS, network_props, record
from tests.harness import ListSink, seed_rules, table
from tests.oracle import fmt

pytestmark = pytest.mark.redis


def stream_of(n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    msgs = []
    for i in range(n):
        recs = []
        for j in range(rnd.randint(1, 5)):
            props = network_props(
                rnd.choice(DEVICES),
                AS_OF - rnd.randint(0, 6 * DAY),
                rnd.randint(1, 400),
                rnd.choice(URLS),
                rnd.choice(["Splashtop Inc.", "Splashtop Inc.", "Contoso"]),
                ReportId=i * 10 + j,
            )
            recs.append(record(props))
        msgs.append(json.dumps({"records": recs}).encode())
    return msgs


class CrashingSink:
    async def write(self, docs):
        raise RuntimeError("injected crash after the state update, before the sink")


def test_crash_between_state_update_and_sink_delivers_once_more(redis_url, redis_prefix):
    rules = seed_rules()
    msgs = [
        json.dumps(
            {
                "records": [
                    record(
                        network_props(
                            DEVICES[0], AS_OF - DAY, 42, "relay.splashtop.com", "Splashtop Inc."
                        )
                    )
                ]
            }
        ).encode()
    ]
    raw = [RawMessage(m, "t", 1) for m in msgs]

    async def go():
        s1 = RedisStore(redis_url, redis_prefix)
        p1 = Pipeline(rules, s1, CrashingSink(), retries=0)
        await p1.start()
        with pytest.raises(RuntimeError, match="injected crash"):
            await p1.process(raw, AS_OF)
        await s1.close()
        # restart: the outbox is re-sent, once, with the same AlertId
        s2 = RedisStore(redis_url, redis_prefix)
        sink2 = ListSink()
        p2 = Pipeline(rules, s2, sink2)
        await p2.start()
        assert [(d["Kind"], d["Sequence"], d["Count"]) for d in sink2.docs] == [("new", 0, 1)]
        first_id = sink2.docs[0]["AlertId"]
        # the source redelivers the batch it never committed: nothing new
        await p2.process(raw, AS_OF)
        assert len(sink2.docs) == 1
        await s2.close()
        # a third start finds an empty outbox
        s3 = RedisStore(redis_url, redis_prefix)
        sink3 = ListSink()
        await Pipeline(rules, s3, sink3).start()
        assert sink3.docs == []
        await s3.close()
        return first_id

    from stream.alerts.decision import alert_id
    from stream.window.model import group_key

    gk = group_key((DEVICES[0][0], DEVICES[0][1], "relay.splashtop.com"))
    assert asyncio.run(go()) == alert_id(rules[0].id, gk, AS_OF - DAY)


def _replay_cmd(redis_url: str, prefix: str, path: Path, alerts: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stream",
        "replay",
        "--store",
        redis_url,
        "--redis-prefix",
        prefix,
        "--as-of",
        fmt(AS_OF),
        "--alerts",
        str(alerts),
        "--batch-size",
        "3",
        str(path),
    ]


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "one-after-other"])
def test_two_processes_on_one_redis_equal_one_process(
    tmp_path, redis_url, redis_prefix, concurrent
):
    msgs = stream_of(300, seed=7)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    # overlapping halves: the middle is delivered to both processes
    a.write_bytes(b"\n".join(msgs[:200]) + b"\n")
    b.write_bytes(b"\n".join(reversed(msgs[100:])) + b"\n")
    alerts = [tmp_path / "alerts-a.jsonl", tmp_path / "alerts-b.jsonl"]
    cmds = [
        _replay_cmd(redis_url, redis_prefix, p, al) for p, al in zip((a, b), alerts, strict=True)
    ]
    if concurrent:
        procs = [subprocess.Popen(c, cwd=ROOT, stderr=subprocess.PIPE) for c in cmds]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    else:
        for c in cmds:
            subprocess.run(c, cwd=ROOT, check=True, timeout=120, capture_output=True)
    expected = oracle.evaluate(msgs, AS_OF)
    assert expected, "the generated stream must match something"

    async def got():
        s = RedisStore(redis_url, redis_prefix)
        try:
            return await table(s, AS_OF)
        finally:
            await s.close()

    assert asyncio.run(got()) == expected
    # a process that lost every race decided no alert and never created its file
    docs = [json.loads(x) for al in alerts if al.exists() for x in al.read_text().splitlines()]
    # One episode per group, decided once: every `new` of a group carries the same AlertId.
    # (A process that starts while the other has a decision in flight may deliver that same
    # decision too: at-least-once delivery, deduplicated by consumers on AlertId + Sequence.)
    ids: dict[tuple, set[str]] = {}
    for d in docs:
        if d["Kind"] == "new":
            ids.setdefault((d["DeviceId"], d["DeviceName"], d["RemoteUrl"]), set()).add(
                d["AlertId"]
            )
    expected_groups = {
        (r["DeviceId"], r["DeviceName"], r["RemoteUrl"])
        for r in oracle.evaluate(msgs, AS_OF, ahead=10 * 60 * 10**7)
    }
    assert set(ids) == expected_groups
    assert all(len(v) == 1 for v in ids.values()), ids


def test_keys_carry_prefix_bucket_tag_rule_and_version_and_ttl_follows_as_of(
    redis_url, redis_prefix
):
    rules = seed_rules(buckets=16)
    old_as_of = AS_OF - 30 * DAY  # a replay of last month: state must not vanish at once
    msgs = [
        json.dumps(
            {
                "records": [
                    record(
                        network_props(
                            DEVICES[0], old_as_of - DAY, 42, "relay.splashtop.com", "Splashtop Inc."
                        )
                    )
                ]
            }
        ).encode()
    ]

    async def go():
        s = RedisStore(redis_url, redis_prefix)
        p = Pipeline(rules, s, ListSink())
        await p.start()
        await p.process([RawMessage(msgs[0], "t", 1)], old_as_of)
        await s.close()

    asyncio.run(go())
    r = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in r.scan_iter(match=redis_prefix + "*"))
    rule = rules[0]
    assert keys, "state was written"
    for k in keys:
        assert k.startswith(f"{redis_prefix}{{")
        tag = k[len(redis_prefix) + 1 : k.index("}")]
        assert tag.isdigit() and int(tag) < 16
        assert f":{rule.id}:{rule.version}:" in k
    ev = next(k for k in keys if ":e:" in k)
    ttl_ms = r.pttl(ev)
    # last event = as_of - 1d: TTL = 4 days + 1 h margin, though the event is a month old
    assert 4 * 86400_000 < ttl_ms <= 4 * 86400_000 + 3600_000
    r.close()


def test_warns_when_redis_may_evict(redis_url, redis_prefix):
    r = redis.Redis.from_url(redis_url)
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        r.config_set("maxmemory-policy", "allkeys-lru")
        s = RedisStore(redis_url, redis_prefix)
        warnings = asyncio.run(s.open(seed_rules()))
        assert any("allkeys-lru" in w and "noeviction" in w for w in warnings)
    finally:
        r.config_set("maxmemory-policy", before)
        r.close()


def test_a_live_process_resends_what_a_dead_one_left_in_the_outbox(redis_url, redis_prefix):
    rules = seed_rules()
    raw = [
        RawMessage(
            json.dumps(
                {
                    "records": [
                        record(
                            network_props(
                                DEVICES[0], AS_OF - DAY, 7, "relay.splashtop.com", "Splashtop Inc."
                            )
                        )
                    ]
                }
            ).encode(),
            "t",
            1,
        )
    ]

    async def go():
        dead = RedisStore(redis_url, redis_prefix)
        p1 = Pipeline(rules, dead, CrashingSink(), retries=0)
        await p1.start()
        with pytest.raises(RuntimeError):
            await p1.process(raw, AS_OF)  # decided and recorded, never delivered
        await dead.close()
        live = RedisStore(redis_url, redis_prefix)
        sink = ListSink()
        p2 = Pipeline(rules, live, sink)
        p2.outbox_sweep_ms = 0  # (60 s in production) sweep on every tick
        await p2.maybe_tick(AS_OF, force=True)
        await live.close()
        return sink.docs

    docs = asyncio.run(go())
    assert [(d["Kind"], d["Count"]) for d in docs] == [("new", 1)]


def test_password_from_environment_or_url(tmp_path, monkeypatch):
    from tests.conftest import start_redis_server

    proc, port = start_redis_server(str(tmp_path), "--requirepass", "s3cret")
    try:

        async def try_open(url: str) -> None:
            st = RedisStore(url, "pw:")
            try:
                await st.open(seed_rules())
            finally:
                await st.close()

        with pytest.raises(redis.exceptions.AuthenticationError):
            asyncio.run(try_open(f"redis://127.0.0.1:{port}/0"))
        asyncio.run(try_open(f"redis://:s3cret@127.0.0.1:{port}/0"))
        monkeypatch.setenv("RMM_STREAM_REDIS_PASSWORD", "s3cret")
        asyncio.run(try_open(f"redis://127.0.0.1:{port}/0"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
