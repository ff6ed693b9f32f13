"""The live service: one consumer-group member feeding the pipeline, committing after durable.

The commit path (docs/operations.md, "How offsets are committed"):

1. fetch a batch (`getmany`: up to --batch-size messages, waiting at most --batch-within s);
2. take the batch lock (a rebalance's revocation waits on it), `Pipeline.process` the batch: it
   returns only when the state updates are in the store and the alerts and dead letters are
   confirmed by their sinks; store errors are retried there forever, with capped backoff;
3. any other exception: the batch is NOT committed; the outbox is re-sent and the same batch is
   processed again after a backoff, until it succeeds (redelivered events change nothing);
4. commit, per partition still held, the offset after the batch's last message; release the lock.

Nothing is ever acknowledged message by message, so there are no gaps to commit past.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from typing import Any

from stream.cli import as_of_ticks, compiled_rules
from stream.config import BY_NAME, ConfigError
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.sinks.deadletter import DeadLetterFile
from stream.sinks.jsonl import JsonLinesSink, MultiSink
from stream.sources.base import RawMessage
from stream.sources.kafka import KafkaSource, Stopped, client_options, retry_forever
from stream.stores.factory import make_store

log = logging.getLogger("rmm_stream")

STOP_GRACE = 25.0  # seconds after SIGTERM before the batch in hand is abandoned (uncommitted)
READY_STALE = 30.0  # /readyz fails when the last good broker or Redis check is older than this


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]+@")


def redacted(s: dict[str, Any]) -> dict[str, Any]:
    """Settings for the log: secret options masked, and passwords inside URLs too."""
    out = {}
    for k, v in s.items():
        if BY_NAME.get(k) and BY_NAME[k].secret and v:
            v = "***"
        elif isinstance(v, str):
            v = _URL_PASSWORD.sub(r"\1***@", v)
        out[k] = v
    return out


class Service:
    def __init__(self, s: dict[str, Any]) -> None:
        if s.get("source") == "eventhub":
            raise ConfigError(
                "source eventhub (the native AMQP client) is not part of this build: use "
                "--source kafka --profile eventhubs with the namespace's Kafka endpoint "
                "(NAMESPACE.servicebus.windows.net:9093)"
            )
        self.s = s
        self.metrics = Metrics()
        self.rules = compiled_rules(s)
        self.fixed_as_of = as_of_ticks(s)
        self.batch_size = int(s.get("batch_size") or 1000)
        self.within = float(s.get("batch_within") or 0.5)
        self.stop_after_idle = s.get("stop_after_idle")
        self.unhealthy_after = float(s.get("unhealthy_after") or 300.0)
        self.kafka_opts = client_options(s)  # validates bootstrap and security early
        self.runner = s.get("runner") or BY_NAME["runner"].default
        if self.runner not in ("faust", "aiokafka"):
            raise ConfigError(f"runner: {self.runner!r} is not one of faust, aiokafka")
        if not s.get("alerts") and not s.get("alerts_topic"):
            raise ConfigError("run: no alert sink: give --alerts PATH|- and/or --alerts-topic")
        self.stopping = False
        self.stop_reason = ""
        self.stop_at: float | None = None
        self.broker_ok_at = 0.0
        self.redis_ok_at = 0.0
        self.broker_ok = self.redis_ok = False  # the last checks' results
        self.started = False
        self.main_task: asyncio.Task[Any] | None = None
        self.closers: list[Any] = []
        self.outbox_dirty = False  # a delivery failed: re-send the outbox before going on
        # Configuration errors (store URL, exclusions file) surface here, before connecting.
        self.store = make_store(s["store"], s["redis_prefix"])
        self.exclusions = self._load_exclusions()

    # -- wiring ----------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.s
        if s["store"] == "memory":
            log.warning(
                "store memory: state is private to this process and lost when it stops; "
                "with more than one replica or a restart the results are wrong (tests only)"
            )
        self.producer = None
        if s.get("alerts_topic") or s.get("dead_letter_topic"):
            from stream.sinks.kafka import KafkaProducerHolder

            max_req = 1_000_000 if s.get("profile") == "eventhubs" else 1_048_576
            self.producer = KafkaProducerHolder(self.kafka_opts, max_request_size=max_req)
        alert_sinks: list[Any] = []
        if s.get("alerts"):
            alert_sinks.append(JsonLinesSink(s["alerts"]))
        if s.get("alerts_topic"):
            from stream.sinks.kafka import KafkaAlertSink

            alert_sinks.append(KafkaAlertSink(self.producer, s["alerts_topic"]))
        dead_sinks: list[Any] = []
        if s.get("dead_letter"):
            dead_sinks.append(DeadLetterFile(s["dead_letter"]))
        if s.get("dead_letter_topic"):
            from stream.sinks.kafka import KafkaDeadLetterSink

            dead_sinks.append(KafkaDeadLetterSink(self.producer, s["dead_letter_topic"]))
        excluded = JsonLinesSink(s["excluded"]) if s.get("excluded") else None
        self.closers = [*alert_sinks, *dead_sinks, *([excluded] if excluded else [])]
        self.pipe = Pipeline(
            self.rules,
            self.store,
            alert_sinks[0] if len(alert_sinks) == 1 else MultiSink(alert_sinks),
            dead_letter=(
                None
                if not dead_sinks
                else dead_sinks[0]
                if len(dead_sinks) == 1
                else MultiSink(dead_sinks)
            ),
            excluded_sink=excluded,
            exclusions=self.exclusions,
            metrics=self.metrics,
            validate_all=bool(s.get("validate_all")),
            retries=None,  # the live service never gives up on the store: it stops committing
        )
        if self.runner == "faust":
            from stream.sources.faust_source import FaustSource

            self.source: Any = FaustSource(s, self.metrics, stopping=lambda: self.stopping)
        else:
            self.source = KafkaSource(s, self.metrics)

    # -- health ----------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if self.main_task is not None and self.main_task.done():
            return False, "the consume loop has ended"
        stalled = self.source.stalled_for() if self.started else 0.0  # _build() has run
        if stalled > self.unhealthy_after:
            return False, (
                f"holding partitions with lag and no commit for {stalled:.0f}s "
                f"(unhealthy_after {self.unhealthy_after:.0f}s)"
            )
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        now = time.monotonic()
        if not self.started:
            return False, "starting"
        if self.stopping:
            return False, "stopping"
        if not self.broker_ok or now - self.broker_ok_at > READY_STALE:
            return False, "broker not reachable"
        if not self.redis_ok or now - self.redis_ok_at > READY_STALE:
            return False, "store not reachable"
        return True, f"ok ({len(self.source.assigned)} partitions)"

    async def _ping_store(self) -> bool:
        r = getattr(self.store, "r", None)
        if r is None:
            return True
        try:
            await asyncio.wait_for(r.ping(), 5)
            return True
        except Exception as exc:
            log.debug("store ping failed: %s", exc)
            return False

    async def _monitor(self) -> None:
        while True:
            if self.started:
                self.broker_ok = await self.source.refresh_lag()
                if self.broker_ok:
                    self.broker_ok_at = time.monotonic()
                self.redis_ok = await self._ping_store()
                if self.redis_ok:
                    self.redis_ok_at = time.monotonic()
            self.metrics.healthy.set(1 if self.healthy()[0] else 0)
            self.metrics.ready.set(1 if self.ready()[0] else 0)
            await asyncio.sleep(2.0)

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self, reason: str = "SIGTERM") -> None:
        if self.stopping:
            return
        log.info("stopping (%s): finishing the batch in hand", reason)
        self.stopping = True
        self.stop_reason = reason
        self.stop_at = time.monotonic()
        if self.main_task is not None:
            asyncio.get_running_loop().call_later(STOP_GRACE, self._abandon)

    def _abandon(self) -> None:
        if self.main_task is not None and not self.main_task.done():
            log.error(
                "the batch in hand did not finish within %.0fs of the stop request; leaving it "
                "uncommitted (it will be read again)",
                STOP_GRACE,
            )
            self.main_task.cancel()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        log.info("rmm-stream run: %s", redacted(self.s))
        http = None
        if int(self.s.get("http_port") or 0):
            from stream.service.http import HttpServer

            http = HttpServer(
                int(self.s["http_port"]), self.metrics.registry, self.healthy, self.ready
            )
            await http.start()
        self._build()
        monitor = asyncio.create_task(self._monitor(), name="monitor")
        watchers = self._start_exclusion_watch()
        self.main_task = asyncio.current_task()
        code = 0
        try:
            stop = lambda: self.stopping  # noqa: E731
            if self.producer is not None:
                await retry_forever("kafka producer start", self.producer.start, stop)
            for w in await retry_forever("pipeline start", self.pipe.start, stop):
                log.warning("%s", w)
            await retry_forever("kafka consumer start", self.source.start, stop)
            self.started = True
            await self._consume()
            await self._flush_outbox()
        except Stopped as exc:
            log.info("stop requested while waiting for %s", exc)
        except asyncio.CancelledError:
            code = 1
        except Exception:
            log.exception("rmm-stream run failed")
            code = 1
        finally:
            monitor.cancel()
            for w in watchers:
                w.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.source.stop(), 15)
            if self.producer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.producer.stop(), 15)
            with contextlib.suppress(Exception):
                await self.store.close()
            for c in self.closers:
                with contextlib.suppress(Exception):
                    c.close()
            if http is not None:
                await http.stop()
        log.info(
            "rmm-stream run: stopped (%s), exit %d; %s",
            self.stop_reason or "error",
            code,
            self.pipe.stats.line(),
        )
        return code

    def _load_exclusions(self) -> Any:
        """The live service reloads its exclusions (stream/exclusions/holder.py): on SIGHUP
        and when the file (e.g. a ConfigMap) changes; expiry is judged at --as-of if given."""
        if not self.s.get("exclusions"):
            return None
        from stream.exclusions.holder import ExclusionsHolder
        from stream.timeutil import now_ticks

        fixed = self.fixed_as_of
        return ExclusionsHolder(
            self.s["exclusions"],
            [r.id for r in self.rules],
            metrics=self.metrics,
            clock=(lambda: fixed) if fixed is not None else now_ticks,
        )

    def _start_exclusion_watch(self) -> list[asyncio.Task[Any]]:
        if self.exclusions is None:
            return []
        self.exclusions.install_sighup()
        return [asyncio.create_task(self.exclusions.watch(10.0), name="exclusions-watch")]

    # -- the loop --------------------------------------------------------------------------
    async def _consume(self) -> None:
        src = self.source
        last_idle_check = 0.0
        while not self.stopping:
            try:
                await src.settle_fresh()
                t0 = time.monotonic()
                batch = await src.fetch(self.batch_size, self.within)
            except Exception as exc:  # broker trouble: aiokafka reconnects by itself
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if batch:
                async with src.batch_lock:
                    await self._process(batch)
                    await src.commit(src.offsets_after(batch))
            else:
                if time.monotonic() - t0 < self.within / 2:
                    await asyncio.sleep(self.within)  # no partitions: getmany returns at once
                await self._tick()
            if self.stop_after_idle is not None:
                now = time.monotonic()
                if (
                    now - src.last_received >= float(self.stop_after_idle)
                    and now - last_idle_check >= 1.0
                ):
                    last_idle_check = now
                    if await src.caught_up():
                        self.request_stop(f"idle {float(self.stop_after_idle):g}s, caught up")

    async def _process(self, batch: list[RawMessage]) -> None:
        """Process the batch until it succeeds. After a failure, alerts already decided wait
        in the store's outbox (a redelivered batch decides nothing new): they are re-sent
        first, so the batch is committed only once its alerts are delivered."""
        delay = 0.5
        while True:
            try:
                if self.outbox_dirty:
                    await self._resend_outbox()
                await self.pipe.process(batch, self.fixed_as_of)
                return
            except Exception as exc:
                self.outbox_dirty = True
                self.metrics.batch_errors.inc()
                log.error(
                    "batch of %d messages failed (%s: %s); not committed, retrying in %.1fs",
                    len(batch),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _tick(self) -> None:
        """Due updates while idle; a failing sink here must not end the service."""
        try:
            if self.outbox_dirty:
                await self._resend_outbox()
            await self.pipe.maybe_tick(self.fixed_as_of)
        except Exception as exc:
            self.outbox_dirty = True
            log.error("tick failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(1.0)

    async def _resend_outbox(self) -> None:
        pending = await self.store.outbox(self.rules)
        self.metrics.outbox_depth.set(0)
        if pending:
            log.info("re-sending %d alerts left in the outbox", len(pending))
            await self.pipe.deliver(pending)
        self.outbox_dirty = False

    async def _flush_outbox(self) -> None:
        """At shutdown: deliver what is decided but unconfirmed (bounded by the grace)."""
        try:
            await asyncio.wait_for(self._resend_outbox(), 10)
        except Exception as exc:
            log.warning("outbox not flushed at shutdown (%s); the next start re-sends it", exc)
