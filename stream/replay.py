"""`rmm-stream replay`: files or stdin through the pipeline, then optional summary."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson

from stream.cli import UsageError, as_of_ticks, compiled_rules
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.sinks.deadletter import DeadLetterFile
from stream.sinks.jsonl import JsonLinesSink
from stream.sources.files import SourceError, file_batches, stdin_batches
from stream.sources.parallel import parallel_batches, worth_it
from stream.stores.factory import make_store
from stream.timeutil import now_ticks

log = logging.getLogger("rmm_stream")


def load_exclusions_for(s: dict[str, Any], rules: list[Any], metrics: Metrics) -> Any:
    """The exclusions file of --exclusions / `exclusions:`, or None. Expiry is judged at the
    query's now(): --as-of when given, else the clock at start."""
    if not s.get("exclusions"):
        return None
    from stream.exclusions.loader import load_exclusions

    as_of = as_of_ticks(s)
    return load_exclusions(
        s["exclusions"],
        [r.id for r in rules],
        metrics=metrics,
        now=as_of if as_of is not None else now_ticks(),
    )


async def run_replay(s: dict[str, Any], inputs: list[str]) -> int:
    if s.get("alerts") == "-" and s.get("summary") == "-":
        raise UsageError("--alerts - and --summary - cannot both write to stdout")
    if inputs.count("-") > 1:
        raise UsageError("stdin (-) may be given once")
    rules = compiled_rules(s)
    fixed_as_of = as_of_ticks(s)
    metrics = Metrics()
    exclusions = load_exclusions_for(s, rules, metrics)
    store = make_store(s["store"], s["redis_prefix"])
    alerts = JsonLinesSink(s["alerts"] or "-")
    dead = DeadLetterFile(s["dead_letter"]) if s.get("dead_letter") else None
    excluded = JsonLinesSink(s["excluded"]) if s.get("excluded") else None
    if s.get("metrics_port"):
        from prometheus_client import start_http_server

        start_http_server(int(s["metrics_port"]), registry=metrics.registry)
    pipe = Pipeline(
        rules,
        store,
        alerts,
        dead_letter=dead,
        excluded_sink=excluded,
        exclusions=exclusions,
        metrics=metrics,
        validate_all=bool(s.get("validate_all")),
    )
    batch = int(s.get("batch_size") or 1000)
    workers = int(s.get("workers") or 0) or min(os.cpu_count() or 1, 4)
    # Files: one now() for the whole run, as in KQL. stdin: the window moves with the clock.
    run_as_of = fixed_as_of if fixed_as_of is not None else now_ticks()
    try:
        for w in await pipe.start():
            log.warning("%s", w)
        for path in inputs:
            if path == "-":
                async for msgs in stdin_batches(batch):
                    run_as_of = fixed_as_of if fixed_as_of is not None else now_ticks()
                    if msgs:
                        await pipe.process(msgs, run_as_of)
                    else:
                        await pipe.maybe_tick(run_as_of)
            elif pipe.prefilter.enabled and worth_it(path, workers) and not path.endswith(".json"):
                async for pb in parallel_batches(path, pipe.prefilter, workers, batch):
                    await pipe.process(
                        pb.messages, run_as_of, ruled_out=(pb.ruled_out, pb.ruled_out_bytes)
                    )
            else:
                try:
                    for msgs in file_batches(path, batch):
                        await pipe.process(msgs, run_as_of)
                except SourceError as exc:
                    raise UsageError(str(exc)) from None
        await pipe.finish(run_as_of)
        if s.get("summary"):
            out = JsonLinesSink(s["summary"], append=False)
            for rule in sorted(rules, key=lambda r: r.id):
                rows = await store.table(rule, run_as_of)
                out.write_raw([orjson.dumps({"RuleId": rule.id, **rr.row}) for rr in rows])
            out.close()
    finally:
        await store.close()
        alerts.close()
        if dead:
            dead.close()
        if excluded:
            excluded.close()
    print(pipe.stats.line(), file=sys.stderr)
    return 0
