"""Helpers of the Kafka integration tests: topics, producing, the service as a subprocess,
reading what it wrote. Everything talks to 127.0.0.1 only and every wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.gen import AS_OF, COMPANIES, DAY, DEVICES, MINUTE, URLS, network_props, record
from tests.oracle import fmt

ROOT = Path(__file__).resolve().parents[2]
AS_OF_TEXT = fmt(AS_OF)
RULE_ID = "7253fc17-ed4b-4c54-9612-7ad48274c294"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- messages ------------------------------------------------------------------------------
def realistic_messages(seed: int, n_messages: int, redeliver: float = 0.1) -> list[bytes]:
    """Defender-shaped messages: {"records": [...]} of 1-8 records, mostly matching events of
    a few dozen groups, some other tables, and some records delivered again in later messages."""
    rnd = random.Random(seed)
    devices = [*DEVICES] + [
        (f"{rnd.getrandbits(160):040x}", f"host-{i:03d}.contoso.example") for i in range(12)
    ]
    urls = [u for u in URLS if u] + ["relay.splashtop.com", "api.splashtop.eu"]
    sent: list[dict[str, Any]] = []
    out = []
    for _ in range(n_messages):
        recs = []
        for _ in range(rnd.randint(1, 8)):
            if sent and rnd.random() < redeliver:
                recs.append(rnd.choice(sent))
                continue
            if rnd.random() < 0.1:
                recs.append(
                    record(
                        {"Timestamp": AS_OF_TEXT, "DeviceId": "x", "ReportId": 1},
                        category="AdvancedHunting-DeviceProcessEvents",
                    )
                )
                continue
            props = network_props(
                rnd.choice(devices),
                AS_OF + rnd.randint(-5 * DAY - MINUTE, 12 * MINUTE),
                rnd.choice([1, 2, 355896, 2**40 + 7, rnd.getrandbits(40)]),
                rnd.choice(urls),
                rnd.choice([c for c in COMPANIES if c] * 3 + [None]),
            )
            rec = record(props)
            sent.append(rec)
            recs.append(rec)
        out.append(json.dumps({"records": recs}).encode())
    return out


def large_message(seed: int, n_records: int = 400, size: int = 900_000) -> bytes:
    """One valid message of n_records matching records, padded to about `size` bytes."""
    rnd = random.Random(seed)
    pad = max(0, size // n_records - 900)
    recs = []
    for i in range(n_records):
        props = network_props(
            DEVICES[i % 2],
            AS_OF - rnd.randint(0, 4 * DAY),
            10_000 + i,
            "st2-v3-dc.relay.splashtop.com",
            "Splashtop Inc.",
            AdditionalFields=json.dumps({"pad": "x" * pad, "n": i}),
        )
        recs.append(record(props))
    return json.dumps({"records": recs}).encode()


# -- Kafka ---------------------------------------------------------------------------------
async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()
    # Wait until every partition has a leader (the first produce otherwise retries).
    deadline = time.monotonic() + 20
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        while True:
            md = await c._client.fetch_all_metadata()  # fresh, every topic
            if all(
                len(md.partitions_for_topic(t) or ()) == n
                and all(
                    (md.leader_for_partition(TopicPartition(t, p)) or -1) >= 0 for p in range(n)
                )
                for t, n in topics.items()
            ):
                break
            assert time.monotonic() < deadline, f"topics {list(topics)} have no leaders"
            await asyncio.sleep(0.2)
    finally:
        await c.stop()


async def produce(
    bootstrap: str,
    topic: str,
    messages: list[bytes],
    partitions: int,
    delay: float = 0.0,
    partition: int | None = None,
) -> None:
    """Round robin over the partitions (or all to `partition`), acknowledged by the broker."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    await p.start()
    try:
        futs = []
        for i, m in enumerate(messages):
            part = i % partitions if partition is None else partition
            futs.append(await p.send(topic, m, partition=part))
            if delay:
                await asyncio.sleep(delay)
        await asyncio.gather(*futs)
    finally:
        await p.stop()


@dataclass
class Rec:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)
    partition: int = 0


async def read_topic(bootstrap: str, topic: str) -> list[Rec]:
    """Every message of the topic now (no group, from the beginning to the end offsets)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await c.start()
    try:
        md = await c._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in sorted(md.partitions_for_topic(topic) or ())]
        assert tps, f"no topic {topic}"
        c.assign(tps)
        await asyncio.sleep(0)  # let aiokafka's no-group task start (it cannot be cancelled
        # before its first step: stop() would then raise CancelledError)
        ends = await c.end_offsets(tps)
        out: list[Rec] = []
        deadline = time.monotonic() + 30
        while True:
            positions = [await c.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            assert time.monotonic() < deadline, "reading the topic timed out"
            got = await c.getmany(timeout_ms=500)
            for tp, recs in got.items():
                out += [
                    Rec(r.key, r.value, {k: v for k, v in r.headers}, tp.partition) for r in recs
                ]
        return out
    finally:
        await c.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        out = {}
        for p in range(partitions):
            out[p] = await c.committed(TopicPartition(topic, p)) or 0
        return out
    finally:
        await c.stop()


# -- the service ---------------------------------------------------------------------------
class Worker:
    """`python -m stream run ...` as a subprocess (so signals are real), logs in a file."""

    def __init__(self, tmp: Path, name: str, args: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self.alerts_path = tmp / f"{name}.alerts.jsonl"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait/kill
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "run", *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s; log tail:\n{self.log()[-4000:]}"
            ) from None
        finally:
            self._log.close()

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {text!r} in the log:\n{self.log()[-4000:]}")

    def stats(self) -> dict[str, int]:
        """The counters of the final stats line (messages=..., alerts=...)."""
        line = [x for x in self.log().splitlines() if "rmm-stream: messages=" in x][-1]
        out = {}
        for part in line.split("rmm-stream: ", 1)[1].split():
            k, _, v = part.partition("=")
            v = v.split("(")[0]
            if v.isdigit():
                out[k] = int(v)
        return out


def service_args(
    bootstrap: str, topic: str, group: str, store: str, prefix: str, *extra: str
) -> list[str]:
    return [
        "--bootstrap-servers", bootstrap, "--topic", topic, "--group", group,
        "--starting-position", "earliest", "--store", store, "--redis-prefix", prefix,
        "--as-of", AS_OF_TEXT, "--log-level", "INFO",
        *([] if "--http-port" in extra else ["--http-port", "0"]), *extra,
    ]  # fmt: skip


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(port: int, path: str, status: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, body = http_get(port, path)
            if code == status:
                return body
            last = (code, body)
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"GET {path} on {port}: wanted {status}, last {last}")


def table(store: str, prefix: str) -> list[dict[str, Any]]:
    res = subprocess.run(
        [sys.executable, "-m", "stream", "table", "--store", store, "--redis-prefix", prefix,
         "--as-of", AS_OF_TEXT],
        cwd=ROOT, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    rows = [orjson.loads(line) for line in res.stdout.splitlines() if line.strip()]
    for r in rows:
        assert r.pop("RuleId") == RULE_ID
    return rows


def alerts_of(recs: list[Rec]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in recs]


def group_of(row_or_alert: dict[str, Any]) -> tuple[str, str, str]:
    g = row_or_alert.get("Group", row_or_alert)
    return (g["DeviceId"], g["DeviceName"], g["RemoteUrl"])


SKEW = 10 * MINUTE  # the seed rule's alerting.skew: the alert range ends at as_of + skew


def assert_new_alerts_unique(alerts: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Every group of `rows` (the evaluator's alert range) got `new` alerts under one AlertId
    only (repeats of the same alert, e.g. an outbox re-send, are allowed: consumers dedupe on
    AlertId + Sequence), and no other group got one."""
    ids: dict[tuple[str, str, str], set[str]] = {}
    for a in alerts:
        if a["Kind"] == "new":
            ids.setdefault(group_of(a), set()).add(a["AlertId"])
    dup = {g: i for g, i in ids.items() if len(i) > 1}
    assert not dup, f"new alerts duplicated under different AlertIds: {dup}"
    assert set(ids) == {group_of(r) for r in rows}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
