"""`rmm-stream run` against a real Kafka broker and real Redis (issue #4, item 7).

Each test makes its own topics, group and key prefix, runs the service as a subprocess (so
SIGKILL and SIGTERM are real), waits for it to stop by itself (--stop-after-idle) and compares
`rmm-stream table` with the brute-force evaluator. Every wait has a deadline."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis

from stream.window.model import group_key
from tests import oracle
from tests.gen import AS_OF
from tests.integration.kit import (
    RULE_ID,
    SKEW,
    Worker,
    alerts_of,
    assert_new_alerts_unique,
    committed,
    create_topics,
    free_port,
    http_get,
    large_message,
    produce,
    read_topic,
    realistic_messages,
    run,
    service_args,
    table,
    uid,
    wait_http,
)

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("runner")]


def expected(msgs: list[bytes]) -> tuple[list[dict], list[dict]]:
    """The table at AS_OF, and the groups that must have a `new` alert (alert range)."""
    return oracle.evaluate(msgs, AS_OF), oracle.evaluate(msgs, AS_OF, ahead=SKEW)


def wait_committed(kafka: str, group: str, topic: str, parts: int, pred, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = run(committed(kafka, group, topic, parts))
        if pred(c):
            return c
        time.sleep(0.2)
    raise AssertionError(f"committed offsets never satisfied the condition: {c}")


@pytest.mark.parametrize("store_kind", ["redis", "redis-cluster"])
def test_end_to_end_matches_evaluator(
    request, kafka: str, store_kind: str, tmp_path: Path, workers: list
) -> None:
    store = request.getfixturevalue("redis_single" if store_kind == "redis" else "redis_cluster")
    topic, alerts_topic, group, prefix = uid("in"), uid("alerts"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 4, alerts_topic: 3}))
    msgs = realistic_messages(seed=4, n_messages=400)
    port = free_port()
    w = Worker(
        tmp_path,
        "w",
        service_args(
            kafka, topic, group, store, prefix,
            "--alerts-topic", alerts_topic, "--alerts", str(tmp_path / "alerts.jsonl"),
            "--batch-size", "50", "--http-port", str(port), "--stop-after-idle", "4",
        ),
    )  # fmt: skip
    workers.append(w)
    assert b"ok" in wait_http(port, "/readyz", 200, 30)
    assert http_get(port, "/healthz")[0] == 200
    run(produce(kafka, topic, msgs, 4))
    body = wait_http(port, "/metrics", 200, 10).decode()
    for name in ("rmm_stream_commit_seconds", "rmm_stream_outbox_depth", "rmm_stream_messages"):
        assert name in body
    assert http_get(port, "/nope")[0] == 404
    # The lag gauge appears for the partitions held once the monitor has read their ends.
    deadline = time.monotonic() + 10
    while "rmm_stream_consumer_lag{" not in http_get(port, "/metrics")[1].decode():
        assert time.monotonic() < deadline, "no rmm_stream_consumer_lag series"
        time.sleep(0.3)
    assert w.wait(90) == 0, w.log()[-3000:]

    rows, alert_rows = expected(msgs)
    assert len(rows) > 10
    assert table(store, prefix) == rows
    recs = run(read_topic(kafka, alerts_topic))
    alerts = alerts_of(recs)
    assert_new_alerts_unique(alerts, alert_rows)
    for r, a in zip(recs, alerts, strict=True):  # key = rule id and group key
        assert r.key == f"{RULE_ID}:{group_key(tuple(a['Group'].values()))}".encode()
    by_key: dict[bytes, set[int]] = {}
    for r in recs:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in by_key.values())  # one group, one partition: ordered
    file_alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    key = lambda a: (a["AlertId"], a["Kind"], a["Sequence"])  # noqa: E731
    assert sorted(map(key, file_alerts)) == sorted(map(key, alerts))
    assert w.stats()["messages"] == len(msgs)


def test_empty_topic_and_standby_replica(kafka: str, redis_single: str, tmp_path: Path, workers):
    """A 1-partition empty topic, two workers: the one without partitions is ready too, and
    both stop by themselves (committed == end == 0 for the only partition)."""
    topic, group, prefix = uid("in"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 1}))
    ports = [free_port(), free_port()]
    ws = []
    for i, port in enumerate(ports):
        w = Worker(
            tmp_path,
            f"w{i}",
            service_args(
                kafka, topic, group, redis_single, prefix,
                "--http-port", str(port), "--stop-after-idle", "5",
            ),
        )  # fmt: skip
        workers.append(w)
        ws.append(w)
    # Both become ready; once the group has settled (the second member's join makes the
    # first give up its partition after a rebalance), one holds the partition, the other none
    # and is ready all the same.
    for p in ports:
        wait_http(p, "/readyz", 200, 30)
    deadline = time.monotonic() + 20
    while True:
        bodies = sorted(http_get(p, "/readyz")[1] for p in ports)
        if bodies[0].startswith(b"ok (0 partitions)") and bodies[1].startswith(
            b"ok (1 partitions)"
        ):
            break
        assert time.monotonic() < deadline, bodies
        time.sleep(0.1)
    for w in ws:
        assert w.wait(60) == 0, w.log()[-3000:]
    assert table(redis_single, prefix) == []


def test_sigkill_mid_stream_other_worker_takes_over(
    kafka: str, redis_single: str, tmp_path: Path, workers
) -> None:
    topic, alerts_topic, group, prefix = uid("in"), uid("alerts"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 4, alerts_topic: 2}))
    msgs = realistic_messages(seed=7, n_messages=600)
    run(produce(kafka, topic, msgs[:300], 4))
    args = service_args(
        kafka, topic, group, redis_single, prefix,
        "--alerts-topic", alerts_topic, "--alerts", "", "--batch-size", "10",
        "--stop-after-idle", "5",
    )  # fmt: skip
    a = Worker(tmp_path, "a", args)
    workers.append(a)
    a.wait_for_log("partitions assigned: " + topic, 30)
    b = Worker(tmp_path, "b", args)
    workers.append(b)
    # Both hold partitions and commit; then the rest arrives while they work.
    wait_committed(kafka, group, topic, 4, lambda c: sum(c.values()) > 50, 30)
    b.wait_for_log("partitions assigned: " + topic, 30)
    producer = threading.Thread(
        target=lambda: run(produce(kafka, topic, msgs[300:], 4, delay=0.005)), daemon=True
    )
    producer.start()
    time.sleep(0.8)
    a.kill()  # SIGKILL: no leave, no last commit; its uncommitted batch is read again by b
    producer.join(60)
    assert not producer.is_alive()
    assert b.wait(120) == 0, b.log()[-3000:]
    assert "rebalance" in b.log() or b.log().count("partitions assigned") >= 2

    rows, alert_rows = expected(msgs)
    assert table(redis_single, prefix) == rows
    assert_new_alerts_unique(alerts_of(run(read_topic(kafka, alerts_topic))), alert_rows)
    c = run(committed(kafka, group, topic, 4))
    assert sum(c.values()) == len(msgs)


def _redis_pid(url: str) -> int:
    r = redis.Redis.from_url(url)
    try:
        return int(r.info("server")["process_id"])
    finally:
        r.close()


def test_redis_paused_worker_stops_committing_and_recovers(
    kafka: str, redis_single: str, tmp_path: Path, workers
) -> None:
    topic, group, prefix = uid("in"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 2}))
    msgs = realistic_messages(seed=11, n_messages=300)
    port = free_port()
    store = redis_single + "?socket_timeout=2"  # a paused Redis surfaces as timeouts quickly
    w = Worker(
        tmp_path,
        "w",
        service_args(
            kafka, topic, group, store, prefix, "--alerts", str(tmp_path / "alerts.jsonl"),
            "--batch-size", "20", "--stop-after-idle", "8", "--http-port", str(port),
            "--unhealthy-after", "5",
        ),
    )  # fmt: skip
    workers.append(w)
    wait_http(port, "/readyz", 200, 30)
    run(produce(kafka, topic, msgs[:150], 2))
    wait_committed(kafka, group, topic, 2, lambda c: sum(c.values()) == 150, 30)
    pid = _redis_pid(redis_single)
    os.kill(pid, signal.SIGSTOP)
    try:
        run(produce(kafka, topic, msgs[150:], 2))
        time.sleep(2.5)
        before = run(committed(kafka, group, topic, 2))
        time.sleep(7)
        after = run(committed(kafka, group, topic, 2))
        assert before == after, "committed while Redis was paused"
        assert sum(after.values()) < len(msgs)
        # Lag and no commit for more than --unhealthy-after: Kubernetes would restart it.
        assert http_get(port, "/healthz")[0] == 503
        assert http_get(port, "/readyz")[0] == 503  # and the store is not reachable
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_http(port, "/healthz", 200, 30)  # it recovers by itself: commits again
    assert w.wait(90) == 0, w.log()[-3000:]
    log = w.log()
    assert "store apply failed" in log or "store tick failed" in log, log[-3000:]
    rows, _ = expected(msgs)
    assert table(redis_single, prefix) == rows
    assert sum(run(committed(kafka, group, topic, 2)).values()) == len(msgs)


def test_poison_dead_lettered_and_large_message_processed(
    kafka: str, redis_single: str, tmp_path: Path, workers
) -> None:
    topic, dlq, group, prefix = uid("in"), uid("dlq"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 1, dlq: 1}))
    good = realistic_messages(seed=13, n_messages=40)
    # Both carry the rule's literals, so the prefilter lets them through to the decoder.
    bad_json = b'{"records": [{"category": "AdvancedHunting-DeviceNetworkEvents", "properties"'
    bad_json += b': {"RemoteUrl": "relay.splashtop.com", "Init'
    bad_utf8 = b'{"records": [], "note": "splashtop \xff\xfe\xfa"}'
    big = large_message(seed=13)
    assert 850_000 < len(big) < 1_000_000
    msgs = [*good[:20], bad_json, bad_utf8, big, *good[20:]]
    run(produce(kafka, topic, msgs, 1))
    w = Worker(
        tmp_path,
        "w",
        service_args(
            kafka, topic, group, redis_single, prefix, "--dead-letter-topic", dlq,
            "--dead-letter", str(tmp_path / "dead.jsonl"), "--alerts", "-",
            "--stop-after-idle", "3",
        ),
    )  # fmt: skip
    workers.append(w)
    assert w.wait(90) == 0, w.log()[-3000:]
    dead = run(read_topic(kafka, dlq))
    assert [d.headers["reason"] for d in dead] == [b"invalid_json", b"invalid_utf8"]
    assert [d.value for d in dead] == [bad_json, bad_utf8]
    sources = [f"{topic}/0@20".encode(), f"{topic}/0@21".encode()]
    assert [d.headers["source"] for d in dead] == sources
    assert all(d.headers["error"] for d in dead)
    assert len((tmp_path / "dead.jsonl").read_bytes().splitlines()) == 2
    rows, _ = expected(msgs)
    assert table(redis_single, prefix) == rows
    assert sum(r["Count"] for r in rows) >= 400  # the large message's records are in
    assert run(committed(kafka, group, topic, 1)) == {0: len(msgs)}


def test_sigterm_mid_stream_commits_the_batch_in_hand(
    kafka: str, redis_single: str, tmp_path: Path, workers
) -> None:
    topic, alerts_topic, group, prefix = uid("in"), uid("alerts"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 4, alerts_topic: 1}))
    msgs = realistic_messages(seed=17, n_messages=2000)
    run(produce(kafka, topic, msgs, 4))
    args = service_args(
        kafka, topic, group, redis_single, prefix, "--alerts-topic", alerts_topic,
        "--alerts", "", "--batch-size", "10", "--stop-after-idle", "3",
    )  # fmt: skip
    a = Worker(tmp_path, "a", args)
    workers.append(a)
    wait_committed(kafka, group, topic, 4, lambda c: sum(c.values()) >= 100, 30)
    t0 = time.monotonic()
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0, a.log()[-3000:]
    assert time.monotonic() - t0 < 10
    assert "stopping (SIGTERM)" in a.log()
    first = run(committed(kafka, group, topic, 4))
    done = a.stats()["messages"]
    # Every message the first worker processed is committed (the batch in hand included),
    # and it stopped mid-stream.
    assert sum(first.values()) == done, (first, done)
    assert done < len(msgs)
    b = Worker(tmp_path, "b", args)
    workers.append(b)
    assert b.wait(90) == 0, b.log()[-3000:]
    # Nothing read twice, nothing skipped.
    assert done + b.stats()["messages"] == len(msgs)
    rows, alert_rows = expected(msgs)
    assert table(redis_single, prefix) == rows
    assert_new_alerts_unique(alerts_of(run(read_topic(kafka, alerts_topic))), alert_rows)


def test_failing_sink_batch_is_retried_never_committed(
    kafka: str, redis_single: str, tmp_path: Path, workers
) -> None:
    """An alert sink that raises (its folder does not exist yet): the batch is retried with
    backoff and not committed until the sink works; then the outbox delivers the alerts."""
    topic, group, prefix = uid("in"), uid("g"), uid("p") + ":"
    run(create_topics(kafka, {topic: 2}))
    msgs = realistic_messages(seed=19, n_messages=60)
    run(produce(kafka, topic, msgs, 2))
    folder = tmp_path / "later"
    w = Worker(
        tmp_path,
        "w",
        service_args(
            kafka, topic, group, redis_single, prefix, "--alerts", str(folder / "a.jsonl"),
            "--stop-after-idle", "3",
        ),
    )  # fmt: skip
    workers.append(w)
    w.wait_for_log("not committed, retrying", 30)
    time.sleep(2)
    assert sum(run(committed(kafka, group, topic, 2)).values()) == 0
    folder.mkdir()
    assert w.wait(90) == 0, w.log()[-3000:]
    assert sum(run(committed(kafka, group, topic, 2)).values()) == len(msgs)
    rows, alert_rows = expected(msgs)
    assert table(redis_single, prefix) == rows
    alerts = [orjson.loads(x) for x in (folder / "a.jsonl").read_bytes().splitlines()]
    assert_new_alerts_unique(alerts, alert_rows)


def test_sasl_password_never_logged(kafka: str, tmp_path: Path, workers) -> None:
    """SASL against the plaintext test listener cannot succeed; the service keeps retrying
    (DEBUG logs on), then SIGTERM ends it. The password appears nowhere in its output."""
    secret = "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=" + uid("Zz9")
    w = Worker(
        tmp_path,
        "w",
        service_args(
            kafka, uid("in"), uid("g"), "memory", "p:", "--security-protocol", "SASL_PLAINTEXT",
            "--sasl-username", "$ConnectionString", "--log-level", "DEBUG",
        ),
        env={"RMM_STREAM_SASL_PASSWORD": secret},
    )  # fmt: skip
    workers.append(w)
    w.wait_for_log("sasl_plain_password': '***'", 30)
    time.sleep(3)
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0  # a stop while still connecting is a clean stop
    log = w.log()
    assert secret not in log and secret.rsplit("=", 1)[1] not in log
