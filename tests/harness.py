"""Run the pipeline in-process over raw messages, collecting alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream.pipeline import Pipeline
from stream.rules.compiled import CompiledRule
from stream.rules.loader import load_rules
from stream.sources.base import RawMessage
from stream.stores.base import Store

ROOT = Path(__file__).resolve().parent.parent


def seed_rules(buckets: int = 256) -> list[CompiledRule]:
    return [CompiledRule(r, buckets) for r in load_rules([ROOT / "config" / "rules"])]


class ListSink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    async def write(self, docs: list[dict[str, Any]]) -> None:
        self.docs.extend(docs)


async def run(
    store: Store,
    messages: list[bytes],
    as_of: int,
    *,
    batch: int = 7,
    rules: list[CompiledRule] | None = None,
    finish: bool = True,
    **kw: Any,
) -> tuple[Pipeline, ListSink]:
    rules = rules or seed_rules()
    sink = ListSink()
    dead = ListSink()
    pipe = Pipeline(rules, store, sink, dead_letter=dead, **kw)
    await pipe.start()
    raw = [RawMessage(m, "test", i + 1) for i, m in enumerate(messages)]
    for i in range(0, len(raw), batch):
        await pipe.process(raw[i : i + batch], as_of)
    if finish:
        await pipe.finish(as_of)
    sink.dead = dead.docs
    return pipe, sink


async def table(store: Store, as_of: int, rules: list[CompiledRule] | None = None):
    rules = rules or seed_rules()
    rows = []
    for r in rules:
        rows += [rr.row for rr in await store.table(r, as_of)]
    return rows


async def drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 500):
            await r.delete(*keys[i : i + 500])
    finally:
        await r.aclose()
