#!/usr/bin/env python3
"""Live-service benchmark: records/s of `rmm-stream run` draining a Kafka topic, per runner,
with the ratio between runners measured in the same run.

    eval "$(scripts/services up redis kafka)"
    python loadtest/bench_kafka.py [--messages 3000] [--partitions 4]

Produces --messages realistic Defender messages (100 records each, ~2.6 KB records, 0.1 %
Splashtop matches, made by loadtest/gen_data.py) to a fresh topic on the local broker, then runs
`rmm-stream run --starting-position earliest --stop-after-idle 2` once per runner on a fresh
consumer group and Redis prefix. The same run on an empty topic gives each runner's fixed cost
(start-up, group join, the idle stop); net records/s = records / (whole - empty). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IDLE_S = 2.0


def make_messages(n: int) -> list[bytes]:
    out = Path(tempfile.mkdtemp()) / "kafka-bench.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "loadtest" / "gen_data.py"),
            str(out),
            "--records",
            str(n * 100),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes().splitlines()


def run_service(runner: str, bootstrap: str, topic: str, redis_url: str) -> float:
    group, prefix = f"bench-{uuid.uuid4().hex[:8]}", f"bench{uuid.uuid4().hex[:8]}:"
    cmd = [
        sys.executable,
        "-m",
        "stream",
        "run",
        "--runner",
        runner,
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--starting-position",
        "earliest",
        "--store",
        redis_url,
        "--redis-prefix",
        prefix,
        "--alerts",
        os.devnull,
        "--as-of",
        "2026-11-30T12:00:00Z",
        "--http-port",
        "0",
        "--stop-after-idle",
        str(IDLE_S),
        "--log-level",
        "WARNING",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=900)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runners", default="aiokafka,faust")
    a = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    redis_url = os.environ["REDIS_URL"]
    from tests.integration.kit import create_topics, produce

    msgs = make_messages(a.messages)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: a.partitions})
    await produce(bootstrap, topic, msgs, a.partitions)
    records = a.messages * 100
    empty = f"bench-empty-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {empty: a.partitions})
    runners = a.runners.split(",")
    # Fixed costs (start-up, group join, the idle stop) measured on an empty topic, same run.
    fixed = {r: run_service(r, bootstrap, empty, redis_url) for r in runners}
    full = {r: run_service(r, bootstrap, topic, redis_url) for r in runners}
    net = {r: max(full[r] - fixed[r], 1e-3) for r in runners}
    base = net[runners[0]]
    size_mb = sum(map(len, msgs)) / 1e6
    print(f"{a.messages} messages ({records} records, {size_mb:.0f} MB), {a.partitions} partitions")
    print(f"{'runner':<10}{'whole s':>9}{'empty s':>9}{'net rec/s':>12}{'x first':>9}")
    for r in runners:
        rate = records / net[r]
        print(f"{r:<10}{full[r]:>9.1f}{fixed[r]:>9.1f}{rate:>12,.0f}{base / net[r]:>9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
