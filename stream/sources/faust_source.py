"""Kafka (and the Event Hubs Kafka endpoint) through faust-streaming: the `faust` runner.

The same source interface as `stream.sources.kafka.KafkaSource` (start, stop, fetch,
offsets_after, commit, settle_fresh, all_partitions, refresh_lag, stalled_for, caught_up, the
batch lock), so `stream.service.worker.Service` runs unchanged on top of either. The group
membership, rebalances, fetching and the offset commits are faust's (its aiokafka consumer,
running in faust's consumer thread); what faust may NOT do is decide on its own what to commit.

How that is made safe (docs/operations.md, "The faust runner"):

- One faust App, run inside our own asyncio loop as a mode Service (`await app.start()` /
  `await app.stop()`, never `app.main()` or a faust Worker: our signal handlers, health
  endpoints, `--stop-after-idle` and the outbox flush stay in charge). No Tables, no leader
  topic, no topic creation, no web server, raw values, no data directory.
- One agent over the input topics: `stream.take_events(batch_size, batch_within)`. Each batch is
  handed to the Service through a queue, and the agent then WAITS until the Service has
  processed it (state, alerts and dead letters durable) and committed it, before it asks faust
  for the next batch. Nothing raises out of the agent, so faust's ack-in-`finally` of `take()`
  runs only after a durable batch; a batch abandoned at shutdown is marked acknowledged without
  telling faust's consumer, so it cannot become committable.
- faust's own commits are switched off (a consumer subclass whose `commit()` does nothing;
  `broker_commit_every` / `broker_commit_interval` out of reach anyway). faust acknowledges
  events it skips by itself (flow control paused, old generation), and its contiguous-ack
  tracker has the known gap bugs (#596, #606): letting it commit could commit past messages
  that were never processed. Instead, after each durable batch, exactly the offsets after the
  batch's last message per partition are committed through faust's own group consumer (in its
  thread), the same offsets the aiokafka runner commits (`rmm_stream_commit_seconds`).
- Lag, readiness and the `--stop-after-idle` check read end and committed offsets through a
  separate, group-less-subscription aiokafka client (same security settings).
- faust's Prometheus sensor (`faust.sensors.prometheus`) is registered into our registry
  (metric names `faust_*`), beside ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport.drivers.aiokafka import Consumer as _FaustKafkaConsumer

from stream.config import ConfigError
from stream.metrics import Metrics
from stream.sources.base import RawMessage
from stream.sources.kafka import (
    MAX_PARTITION_FETCH,
    KafkaSource,
    Stopped,
    _tps,
    client_options,
    describe,
    fetch_ends,
    group_caught_up,
    partitions_of,
    record_commit,
    record_lag,
    release_revoked,
)

log = logging.getLogger("rmm_stream")

# faust's own periodic and every-n commits are disabled (see _Consumer); these values only keep
# its timers asleep.
_NEVER_SECONDS = 365 * 24 * 3600.0
_NEVER_COUNT = 2**62


class _Consumer(_FaustKafkaConsumer):
    """faust's aiokafka consumer with faust's own offset commits turned off: the timer, the
    every-n-acks commit, the commit at stop and on agent errors all call `commit()`, which
    here commits nothing. rmm-stream commits exact offsets itself (FaustSource.commit)."""

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        return False


class _App(faust.App):
    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        transport.Consumer = _Consumer  # instance attribute: only this app's consumer
        return transport

    def _create_directories(self) -> None:
        """No Tables, no data directory (the root file system may be read-only)."""


@dataclass
class _Batch:
    messages: list[RawMessage]
    events: list[Any]
    done: asyncio.Future[None]
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


def faust_auth(opts: dict[str, Any]) -> dict[str, Any]:
    """faust settings for the security options of `client_options()`."""
    proto = opts.get("security_protocol", "PLAINTEXT")
    ctx = opts.get("ssl_context")
    if proto in ("SASL_PLAINTEXT", "SASL_SSL"):
        creds: Any = faust.SASLCredentials(
            username=opts["sasl_plain_username"],
            password=opts["sasl_plain_password"],
            ssl_context=ctx if proto == "SASL_SSL" else None,
            mechanism=opts.get("sasl_mechanism") or "PLAIN",
        )
        return {"broker_credentials": creds}
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(ctx)}
    return {}


def faust_settings(s: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """The faust App settings of the runner (exposed for the configuration tests)."""
    batch = max(int(s.get("batch_size") or 1000), 1)
    request_timeout = opts.get("request_timeout_ms", 40_000) / 1000
    session_timeout = opts.get("session_timeout_ms", 10_000) / 1000
    settings: dict[str, Any] = {
        "broker": [f"kafka://{h}" for h in opts["bootstrap_servers"]],
        "broker_client_id": opts["client_id"],
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "web_enabled": False,
        "autodiscover": False,
        "store": "memory://",
        "table_standby_replicas": 0,
        "broker_commit_every": _NEVER_COUNT,
        "broker_commit_interval": _NEVER_SECONDS,
        "broker_commit_livelock_soft_timeout": 600.0,
        # Our batch lock already makes a revocation wait for the batch in hand; faust's
        # wait_empty() would also wait for events it buffered but never handed out.
        "stream_wait_empty": False,
        "consumer_auto_offset_reset": s.get("starting_position") or "latest",
        "broker_request_timeout": request_timeout,
        "broker_session_timeout": session_timeout,
        "broker_heartbeat_interval": opts.get("heartbeat_interval_ms", 3_000) / 1000,
        # A batch that waits longer than this for Redis makes the group move our partitions
        # elsewhere (safe: nothing of it was committed).
        "broker_max_poll_interval": 300.0,
        "broker_max_poll_records": batch,
        "consumer_max_fetch_size": MAX_PARTITION_FETCH,
        # Messages faust may buffer ahead of the agent (one queue for all partitions). faust's
        # default of 4096 could hold gigabytes of 1 MB Event Hubs messages; much below ~1000
        # faust pauses and resumes partitions so often that throughput collapses (measured:
        # 2000 messages in batches of 10 took 47 s with 20, 7 s with 1000).
        "stream_buffer_maxsize": max(2 * batch, 1000),
        "producer_max_request_size": 1_000_000 if s.get("profile") == "eventhubs" else 1_048_576,
        "stream_processing_timeout": 600.0,
    }
    for ours, theirs in (
        ("metadata_max_age_ms", ("consumer_metadata_max_age_ms", "producer_metadata_max_age_ms")),
        (
            "connections_max_idle_ms",
            ("consumer_connections_max_idle_ms", "producer_connections_max_idle_ms"),
        ),
    ):
        if ours in opts:
            for key in theirs:
                settings[key] = opts[ours]
    settings.update(faust_auth(opts))
    return settings


class FaustSource:
    """A faust consumer-group member that yields batches and commits exactly what it is told."""

    def __init__(
        self,
        s: dict[str, Any],
        metrics: Metrics,
        *,
        stopping: Callable[[], bool] = lambda: False,
        revoke_wait: float = 20.0,
    ) -> None:
        topics = s.get("topic") or []
        if not topics:
            raise ConfigError("run: --topic is required (repeatable)")
        self.topics: list[str] = list(dict.fromkeys(topics))
        self.group = s.get("group") or "rmm-stream"
        self.metrics = metrics
        self.revoke_wait = revoke_wait
        self.stopping = stopping
        self.batch_size = max(int(s.get("batch_size") or 1000), 1)
        self.within = float(s.get("batch_within") or 0.5)
        self.starting_position = s.get("starting_position") or "latest"
        opts = client_options(s)
        log.info("kafka consumer options (runner faust): %s", describe(opts))
        self._settings = faust_settings(s, opts)
        # faust's Prometheus sensor, into our registry (what setup_prometheus_sensors does,
        # without its web page: we serve /metrics ourselves). Created once: an App that
        # failed to start is replaced by a new one that reuses the same metrics.
        self._faust_metrics = FaustMetrics.create(metrics.registry, "faust")
        self.app = self._make_app()
        # A plain client for end offsets, the group's committed offsets and metadata; it has
        # the group id (to read commits) but never subscribes, so it never joins the group.
        self.probe = AIOKafkaConsumer(group_id=self.group, enable_auto_commit=False, **opts)
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=1)
        self._in_hand: _Batch | None = None
        self._stream: Any = None
        self.batch_lock = asyncio.Lock()
        self.assigned: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self._fresh: set[TopicPartition] = set()
        self.last_received = time.monotonic()
        self.last_progress = time.monotonic()
        self.started = False
        self._probe_started = False
        self._app_task: asyncio.Task[Any] | None = None
        self._stopped = False

    def _make_app(self) -> _App:
        app = _App(self.group, **self._settings)
        app.monitor = PrometheusMonitor(metrics=self._faust_metrics)
        topic = app.topic(
            *self.topics, value_serializer="raw", key_serializer="raw", allow_empty=True
        )
        app.agent(topic, name="rmm_stream_batches")(self._agent)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        return app

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the probe client and the faust App (joins the group). Returns once faust is
        started; raises Stopped when a stop is requested meanwhile."""
        if not self._probe_started:
            await self.probe.start()
            self._probe_started = True
            self.probe._client.set_topics(self.topics)  # metadata of the input topics only
        if self._app_task is None:
            self._app_task = asyncio.create_task(self.app.start(), name="faust-app-start")
        while not self._app_task.done():
            if self.stopping():
                raise Stopped("the faust app to start")
            await asyncio.wait({self._app_task}, timeout=0.2)
        exc = None if self._app_task.cancelled() else self._app_task.exception()
        if exc is not None or self.app._crashed.is_set():
            # A half-started App cannot be started again: stop it and build a new one for
            # the next try (the Service retries start() with backoff).
            reason = exc or self.app._crash_reason
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.app.stop(), 15)
            self.app, self._app_task = self._make_app(), None
            raise RuntimeError(f"the faust app did not start: {reason!r}")
        # faust's start returns after the first assignment (seconds): idle time counts from here.
        self.last_received = self.last_progress = time.monotonic()
        self.started = True

    async def stop(self) -> None:
        """Leave the group (faust stops its aiokafka consumer) and close the connections. A
        batch still in hand (not durable) cannot be acknowledged to faust any more."""
        if self._stopped:
            return
        self._stopped = True
        self.started = False
        if self._in_hand is not None:
            self._disarm(self._in_hand)
        with contextlib.suppress(Exception):
            if self._app_task is not None and not self._app_task.done():
                self._app_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._app_task
            await self.app.stop()
        if self._probe_started:
            with contextlib.suppress(Exception):
                await self.probe.stop()

    @staticmethod
    def _disarm(b: _Batch) -> None:
        for e in b.events:
            e.message.acked = True  # faust's ack() is then a no-op for it
        if not b.done.done():
            b.done.cancel()

    # -- the agent -------------------------------------------------------------------------
    async def _agent(self, stream: Any) -> None:
        self._stream = stream
        async for events in stream.take_events(self.batch_size, self.within):
            b: _Batch | None = None
            try:
                b = self._to_batch(events)
                if b is None:
                    continue
                await self._queue.put(b)
                await b.done
            except asyncio.CancelledError:
                if b is not None:
                    self._disarm(b)
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # faust stops the agent
                # Only the batch was abandoned (stop requested): it stays unacknowledged.
            except Exception:  # never let faust ack a batch because something raised here
                log.exception("faust agent: handing over a batch failed; it is not committed")
                if b is not None:
                    self._disarm(b)
                await asyncio.sleep(1.0)

    def _to_batch(self, events: list[Any]) -> _Batch | None:
        gen = self.app.consumer_generation_id
        keep = []
        for e in events:
            m = e.message
            # Buffered before a rebalance: the partition's owner (maybe us again, after faust's
            # seek to the committed offset) reads it again.
            if m.generation_id != gen or TopicPartition(m.topic, m.partition) not in self.assigned:
                continue
            keep.append(e)
        if len(keep) < len(events):
            log.debug("dropped %d events buffered before a rebalance", len(events) - len(keep))
        if not keep:
            return None
        msgs = []
        for e in keep:
            m = e.message
            msgs.append(RawMessage(m.value or b"", m.topic, m.offset, m.partition))
        return _Batch(msgs, keep, asyncio.get_running_loop().create_future())

    # -- rebalances (faust signals, run in our loop during faust's rebalance callbacks) -----
    async def _on_revoked(self, sender: Any = None, revoked: Any = (), **kw: Any) -> None:
        await release_revoked(self, {TopicPartition(tp.topic, tp.partition) for tp in revoked})

    async def _on_assigned(self, sender: Any = None, assigned: Any = (), **kw: Any) -> None:
        assigned = {TopicPartition(tp.topic, tp.partition) for tp in assigned}
        self.assigned = set(assigned)
        self._fresh |= assigned
        self.metrics.rebalances.inc()
        self.metrics.assigned_partitions.set(len(self.assigned))
        # A rebalance counts as activity for --stop-after-idle (faust joins more slowly than
        # the plain consumer: a member that just lost or got partitions does not quit at once).
        self.last_progress = self.last_received = time.monotonic()
        log.info("partitions assigned: %s", _tps(assigned) or "none")

    async def settle_fresh(self) -> None:
        """For newly assigned partitions the group never committed, commit the starting
        position, so a restart resumes there and `committed == end` holds for a partition that
        was caught up without messages. faust reads ahead of what was processed, so the
        consumer's position is not used: `earliest` commits the partition's first offset;
        `latest` the end offset now, and only while faust has delivered nothing of it yet
        (otherwise the partition's first durable batch commits it)."""
        if not self._fresh:
            return
        fresh, self._fresh = self._fresh, set()
        todo: dict[TopicPartition, int] = {}
        for tp in sorted(fresh):
            if tp not in self.assigned or tp in self.committed:
                continue
            try:
                c = await asyncio.wait_for(self.probe.committed(tp), 15)
                if c is not None:
                    self.committed[tp] = c
                    continue
                if self.starting_position == "earliest":
                    start = (await asyncio.wait_for(self.probe.beginning_offsets([tp]), 15))[tp]
                else:
                    if self.app.consumer._read_offset.get(tp) is not None:
                        continue
                    start = (await asyncio.wait_for(self.probe.end_offsets([tp]), 15))[tp]
                todo[tp] = start
            except (KafkaError, IllegalStateError, TimeoutError, OSError) as exc:
                log.warning("reading the start of %s failed (%s); will retry", tp, exc)
                self._fresh.add(tp)
        if todo:
            await self.commit(todo)

    # -- batches ---------------------------------------------------------------------------
    async def fetch(self, max_records: int, within: float) -> list[RawMessage]:
        """The next batch faust's agent took (up to --batch-size messages, --batch-within s),
        or [] when none came within `within` seconds."""
        if self._app_task is not None and self._app_task.done() and self.app._crashed.is_set():
            raise RuntimeError(f"the faust app crashed: {self.app._crash_reason!r}")
        try:
            b = await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return []
        if self.stopping():  # let the agent's batch go unacked: it is read again
            self._disarm(b)
            return []
        self._in_hand = b
        self.last_received = time.monotonic()
        return b.messages

    offsets_after = staticmethod(KafkaSource.offsets_after)

    async def commit(self, offsets: dict[TopicPartition, int], timeout: float = 60.0) -> bool:
        """Commit offsets of partitions still held, through faust's group consumer; then let
        the agent acknowledge the batch in hand and take the next one. False when the commit
        could not be done (the messages are then read again, by us or the new owner)."""
        b, self._in_hand = self._in_hand, None
        try:
            return await self._commit(offsets, timeout)
        finally:
            if b is not None:
                # The batch is durable (the Service commits only after Pipeline.process
                # returned): acknowledge it to faust (its sensors count it out) and release
                # the agent. faust's own commits are off, so the acks commit nothing.
                if self._stream is not None:
                    for e in b.events:
                        with contextlib.suppress(Exception):
                            await self._stream.ack(e)
                if not b.done.done():
                    b.done.set_result(None)

    async def _commit(self, offsets: dict[TopicPartition, int], timeout: float) -> bool:
        mine = {tp: o for tp, o in offsets.items() if tp in self.assigned}
        if not mine:
            return not offsets
        consumer = self.app.consumer
        thread = consumer._thread
        sensor_state = self.app.sensors.on_commit_initiated(consumer)
        t0 = time.perf_counter()

        async def in_thread() -> BaseException | None:
            try:
                await thread._ensure_consumer().commit(dict(mine))
            except Exception as exc:  # returned, not raised: faust would crash the thread
                return exc
            return None

        try:
            err = await asyncio.wait_for(thread.call_thread(in_thread), timeout)
        except (TimeoutError, Exception) as exc:
            err = exc
        if err is not None:
            self.metrics.commits.labels("failed").inc()
            why = (
                "the group rebalanced"
                if isinstance(err, (CommitFailedError, IllegalStateError))
                else "broker trouble"
            )
            log.warning("commit of %s failed (%s: %s)", _tps(mine), why, err)
            return False
        record_commit(self, mine, t0)
        with contextlib.suppress(Exception):
            self.app.sensors.on_commit_completed(consumer, sensor_state)
            self.app.monitor.on_tp_commit(mine)
        return True

    # -- lag, readiness, stop-after-idle ----------------------------------------------------
    def all_partitions(self) -> list[TopicPartition]:
        return partitions_of(self.probe, self.topics)

    async def refresh_lag(self) -> bool:
        """End offsets of the partitions held -> lag gauges; also the broker check of
        /readyz (True when the broker answered)."""
        if not self._probe_started:
            return False
        ends = await fetch_ends(self.probe, sorted(self.assigned))
        if ends is None or self.app._crashed.is_set():
            return False
        record_lag(self, ends)
        return True

    def stalled_for(self) -> float:
        """Seconds this worker has held partitions with lag without committing (infinite once
        the faust app has crashed: /healthz fails and the pod is restarted)."""
        if self.started and self.app._crashed.is_set():
            return float("inf")
        if not self.assigned:
            return 0.0
        return time.monotonic() - self.last_progress

    async def caught_up(self) -> bool:
        """Committed offset == end offset for every partition of every input topic (the
        group's commits, whoever made them), read from the broker now."""
        return await group_caught_up(self.probe, self.topics, self.all_partitions)
