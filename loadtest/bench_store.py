#!/usr/bin/env python3
"""Store benchmark: matched events/s into the Redis store vs the memory store (same run), and
Redis memory per stored event.

    eval "$(scripts/services up redis)"; python loadtest/bench_store.py [--events 200000]

Every event matches the seed rule, so this measures the window path (member building, one Lua
call per bucket per batch, alert decisions) rather than decoding. Events are spread over
--groups groups (device x URL); batches of --batch records, 100 records per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def messages(n: int, groups: int, seed: int = 1) -> list[bytes]:
    from tests.gen import AS_OF, network_props, record

    rnd = random.Random(seed)
    out, recs = [], []
    for i in range(n):
        g = rnd.randrange(groups)
        props = network_props((f"{g:040x}", f"host-{g}.fabrikam.example"),
                              AS_OF - rnd.randrange(4 * 86400 * 10**7), 10**6 + i,
                              f"st{g % 7}-v3-dc.relay.splashtop.com", "Splashtop Inc.")
        recs.append(record(props))
        if len(recs) == 100:
            out.append(json.dumps({"records": recs}).encode())
            recs = []
    if recs:
        out.append(json.dumps({"records": recs}).encode())
    return out


async def run(store, msgs: list[bytes], batch: int) -> float:
    from stream.pipeline import Pipeline
    from stream.sources.base import RawMessage
    from tests.gen import AS_OF
    from tests.harness import ListSink, seed_rules

    pipe = Pipeline(seed_rules(), store, ListSink())
    await pipe.start()
    raw = [RawMessage(m, "bench", i) for i, m in enumerate(msgs)]
    per = max(1, batch // 100)
    t0 = time.perf_counter()
    for i in range(0, len(raw), per):
        await pipe.process(raw[i : i + per], AS_OF)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=1_000, help="records per batch")
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    a = ap.parse_args()
    import redis.asyncio as aioredis

    from stream.stores.memory import MemoryStore
    from stream.stores.redis import RedisStore
    from tests.harness import drop_prefix

    msgs = messages(a.events, a.groups)
    mem = await run(MemoryStore(), msgs, a.batch)
    prefix = f"bench{os.getpid()}:"
    r = aioredis.Redis.from_url(a.redis)
    before = (await r.info("memory"))["used_memory"]
    store = RedisStore(a.redis, prefix)
    red = await run(store, msgs, a.batch)
    after = (await r.info("memory"))["used_memory"]
    await store.close()
    await drop_prefix(a.redis, prefix)
    await r.aclose()
    n = a.events
    print(f"{n} matched events, {a.groups} groups, {a.batch} records per batch")
    print(f"{'store':<10}{'events/s':>12}{'x memory':>10}")
    print(f"{'memory':<10}{n / mem:>12,.0f}{1.0:>10.2f}")
    print(f"{'redis':<10}{n / red:>12,.0f}{mem / red:>10.2f}")
    print(f"Redis memory: {(after - before) / n:.0f} bytes per stored event "
          f"({(after - before) / 1e6:.1f} MB for {n} events in {a.groups} groups)")


if __name__ == "__main__":
    asyncio.run(main())
