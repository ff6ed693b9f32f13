"""Kafka (and the Event Hubs Kafka endpoint) as a source of batches, with explicit commits.

The consumer never commits on its own (`enable_auto_commit=False`). The service asks for a batch,
hands it to the pipeline, and only when the pipeline has returned (state stored, alerts and dead
letters confirmed) commits, per partition, the offset after the batch's last message. A batch
that raised is never committed: it is retried. Offsets of partitions this worker no longer holds
are not committed (their new owner re-reads those messages; the store's identity makes that
harmless). docs/operations.md explains the choice of a plain aiokafka group consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream.config import ConfigError
from stream.metrics import Metrics
from stream.sources.base import RawMessage

log = logging.getLogger("rmm_stream")

# Microsoft's recommended client settings for the Event Hubs Kafka endpoint: idle connections
# and metadata refreshed before Azure's 240 s idle cut, and its request/session timeouts.
EVENTHUBS_DEFAULTS: dict[str, Any] = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_plain_username": "$ConnectionString",
    "connections_max_idle_ms": 180_000,
    "metadata_max_age_ms": 180_000,
    "request_timeout_ms": 60_000,
    "session_timeout_ms": 30_000,
    "heartbeat_interval_ms": 3_000,
}
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Event Hubs rejects requests of 1 MB and more (Standard tier message limit).
EVENTHUBS_MAX_REQUEST = 1_000_000
# Large enough for one whole Event Hubs message (1 MB) per partition fetch.
MAX_PARTITION_FETCH = 2 * 1024 * 1024


def sasl_password(s: dict[str, Any]) -> str | None:
    """The SASL password from --sasl-password / RMM_STREAM_SASL_PASSWORD, or the file."""
    if s.get("sasl_password"):
        return str(s["sasl_password"])
    path = s.get("sasl_password_file")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"sasl_password_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
    return None


def client_options(s: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments shared by the consumer and the producer (security, timeouts)."""
    if not s.get("bootstrap_servers"):
        raise ConfigError("run: --bootstrap-servers is required")
    opts: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in str(s["bootstrap_servers"]).split(",") if h],
        "client_id": f"rmm-stream-{s.get('group') or 'rmm-stream'}",
    }
    profile = s.get("profile") or ""
    if profile not in ("", "eventhubs"):
        raise ConfigError(f"profile: {profile!r} is not one of eventhubs or empty")
    for key, allowed in (("security_protocol", PROTOCOLS), ("sasl_mechanism", MECHANISMS)):
        if s.get(key) and s[key] not in allowed:
            raise ConfigError(f"{key}: {s[key]!r} is not one of {', '.join(allowed)}")
    eventhubs = profile == "eventhubs"
    if eventhubs:
        opts.update(EVENTHUBS_DEFAULTS)
    if s.get("security_protocol"):
        opts["security_protocol"] = s["security_protocol"]
    if s.get("sasl_mechanism"):
        opts["sasl_mechanism"] = s["sasl_mechanism"]
    if s.get("sasl_username"):
        opts["sasl_plain_username"] = s["sasl_username"]
    proto = opts.get("security_protocol", "PLAINTEXT")
    if proto.startswith("SASL"):
        pw = sasl_password(s)
        if not pw:
            raise ConfigError(
                f"security_protocol {proto} needs a password: RMM_STREAM_SASL_PASSWORD or "
                "--sasl-password-file"
                + (" (Event Hubs: the namespace connection string)" if eventhubs else "")
            )
        if not opts.get("sasl_plain_username"):
            raise ConfigError(f"security_protocol {proto} needs --sasl-username")
        opts["sasl_plain_password"] = pw
    else:
        opts.pop("sasl_mechanism", None)
        opts.pop("sasl_plain_username", None)
    if proto in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(cafile=s.get("ssl_cafile") or None)
    return opts


def describe(opts: dict[str, Any]) -> dict[str, Any]:
    """The options without secrets, for logs."""
    return {k: ("***" if "password" in k else v) for k, v in opts.items() if k != "ssl_context"}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.source._on_assigned(set(assigned))


class KafkaSource:
    """A consumer-group member that yields batches and commits exactly what it is told."""

    def __init__(
        self,
        s: dict[str, Any],
        metrics: Metrics,
        *,
        revoke_wait: float = 20.0,
    ) -> None:
        topics = s.get("topic") or []
        if not topics:
            raise ConfigError("run: --topic is required (repeatable)")
        self.topics: list[str] = list(dict.fromkeys(topics))
        self.group = s.get("group") or "rmm-stream"
        self.metrics = metrics
        self.revoke_wait = revoke_wait
        opts = client_options(s)
        log.info("kafka consumer options: %s", describe(opts))
        self.consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=s.get("starting_position") or "latest",
            max_partition_fetch_bytes=MAX_PARTITION_FETCH,
            # A batch that waits longer than this for Redis makes the group move our
            # partitions elsewhere (safe: nothing of it was committed).
            max_poll_interval_ms=300_000,
            **opts,
        )
        # The batch lock is held from the moment a batch is handed out until its commit is
        # done, so a revocation waits for the batch in hand (and its commit) to finish.
        self.batch_lock = asyncio.Lock()
        self.assigned: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}  # last offset known committed
        self.end: dict[TopicPartition, int] = {}  # last end offsets read
        self._fresh: set[TopicPartition] = set()  # assigned, initial commit not checked yet
        self.last_received = time.monotonic()
        self.last_progress = time.monotonic()  # last commit, assignment or zero lag
        self.started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(topics=self.topics, listener=_Listener(self))
        self.started = True

    async def stop(self) -> None:
        """Leave the group (aiokafka sends LeaveGroup) and close the connections."""
        if not self._stopped:
            self._stopped = True
            self.started = False
            await self.consumer.stop()

    # -- rebalances ------------------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        await release_revoked(self, revoked)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self._fresh |= assigned
        self.metrics.rebalances.inc()
        self.metrics.assigned_partitions.set(len(self.assigned))
        self.last_progress = time.monotonic()
        log.info("partitions assigned: %s", _tps(assigned) or "none")

    async def settle_fresh(self) -> None:
        """For newly assigned partitions the group never committed, commit the starting
        position (earliest or latest), so a restart resumes there and so `committed == end`
        is true of a partition that was caught up without messages. Called only between
        batches: every message before the consumer's position is then durable."""
        if not self._fresh:
            return
        fresh, self._fresh = self._fresh, set()
        todo: dict[TopicPartition, int] = {}
        for tp in fresh:
            if tp not in self.assigned:
                continue
            try:
                c = await self.consumer.committed(tp)
                if c is None:
                    todo[tp] = await self.consumer.position(tp)
                else:
                    self.committed[tp] = c
            except (KafkaError, IllegalStateError) as exc:
                log.warning("reading the start of %s failed (%s); will retry", tp, exc)
                self._fresh.add(tp)
        if todo:
            await self.commit(todo)

    # -- batches ---------------------------------------------------------------------------
    async def fetch(self, max_records: int, within: float) -> list[RawMessage]:
        """Messages available now, up to max_records, waiting at most `within` seconds."""
        got = await self.consumer.getmany(timeout_ms=int(within * 1000), max_records=max_records)
        out: list[RawMessage] = []
        for tp, records in got.items():
            for rec in records:
                out.append(RawMessage(rec.value or b"", tp.topic, rec.offset, tp.partition))
        if out:
            self.last_received = time.monotonic()
        return out

    @staticmethod
    def offsets_after(batch: list[RawMessage]) -> dict[TopicPartition, int]:
        """Per partition, the offset of the next message after the batch (what to commit)."""
        out: dict[TopicPartition, int] = {}
        for m in batch:
            tp = TopicPartition(m.source, m.partition or 0)
            if m.line + 1 > out.get(tp, -1):
                out[tp] = m.line + 1
        return out

    async def commit(self, offsets: dict[TopicPartition, int], timeout: float = 60.0) -> bool:
        """Commit offsets of partitions still held. False when the commit could not be done
        (then the messages are read again, by us or the partition's new owner)."""
        mine = {tp: o for tp, o in offsets.items() if tp in self.assigned}
        if not mine:
            return not offsets
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(self.consumer.commit(mine), timeout)
        except (CommitFailedError, IllegalStateError) as exc:
            self.metrics.commits.labels("failed").inc()
            log.warning("commit of %s failed (%s): the group rebalanced", _tps(mine), exc)
            return False
        except (KafkaError, TimeoutError) as exc:
            self.metrics.commits.labels("failed").inc()
            log.warning("commit of %s failed (%s)", _tps(mine), exc)
            return False
        record_commit(self, mine, t0)
        return True

    # -- lag, readiness, stop-after-idle ----------------------------------------------------
    def all_partitions(self) -> list[TopicPartition]:
        return partitions_of(self.consumer, self.topics)

    async def refresh_lag(self) -> bool:
        """Read the end offsets of the partitions held and set the lag gauges. Also the
        broker check of /readyz: True when the broker answered."""
        ends = await fetch_ends(self.consumer, sorted(self.assigned))
        if ends is None:
            return False
        record_lag(self, ends)
        return True

    def stalled_for(self) -> float:
        """Seconds this worker has held partitions with lag without committing."""
        if not self.assigned:
            return 0.0
        return time.monotonic() - self.last_progress

    async def caught_up(self) -> bool:
        """Committed offset == end offset for every partition of every input topic (the
        group's commits, whoever made them), read from the broker now."""
        return await group_caught_up(self.consumer, self.topics, self.all_partitions)


def record_commit(source: Any, offsets: dict[TopicPartition, int], started: float) -> None:
    """Bookkeeping after a successful commit (shared by both runners)."""
    source.metrics.commit_seconds.observe(time.perf_counter() - started)
    source.metrics.commits.labels("ok").inc()
    source.metrics.last_commit.set(time.time())
    source.last_progress = time.monotonic()
    source.committed.update(offsets)


def partitions_of(client: Any, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the input topics, as the client's metadata knows them."""
    return [
        TopicPartition(t, p) for t in topics for p in sorted(client.partitions_for_topic(t) or ())
    ]


async def release_revoked(source: Any, revoked: set[TopicPartition]) -> None:
    """Rebalance: let the batch in hand finish and commit while we still own its partitions,
    then forget the revoked ones (shared by both runners)."""
    try:
        await asyncio.wait_for(source.batch_lock.acquire(), source.revoke_wait)
    except TimeoutError:
        log.warning(
            "rebalance: the batch in hand did not finish within %.0fs; its partitions' "
            "new owners will re-read it",
            source.revoke_wait,
        )
    else:
        source.batch_lock.release()
    for tp in revoked:
        source.assigned.discard(tp)
        source._fresh.discard(tp)
        source.committed.pop(tp, None)
        with contextlib.suppress(KeyError):
            source.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
    source.metrics.assigned_partitions.set(len(source.assigned))
    if revoked:
        log.info("partitions revoked: %s", _tps(revoked))


async def fetch_ends(client: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int] | None:
    """End offsets of tps (or, with none held, a metadata round trip); None when the broker
    did not answer. Doubles as the broker check of /readyz."""
    try:
        if tps:
            return await asyncio.wait_for(client.end_offsets(tps), 15)
        await asyncio.wait_for(client._client.fetch_all_metadata(), 15)
        return {}
    except (KafkaError, TimeoutError, OSError) as exc:
        log.debug("broker check failed: %s", exc)
        return None


def record_lag(source: Any, ends: dict[TopicPartition, int]) -> None:
    """Set the lag gauges of the partitions held; progress is made while none lags."""
    lagging = False
    for tp, end in ends.items():
        source.end[tp] = end
        if tp not in source.assigned:
            continue
        c = source.committed.get(tp)
        lag = end - c if c is not None else end
        source.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        lagging = lagging or lag > 0
    if not lagging:
        source.last_progress = time.monotonic()


async def group_caught_up(client: Any, topics: list[str], tps: list[TopicPartition]) -> bool:
    """Committed offset == end offset for every partition of every input topic (the group's
    commits, whoever made them), read from the broker now."""
    try:
        await asyncio.wait_for(client._client.force_metadata_update(), 15)
        tps = tps() if callable(tps) else tps
        if len(tps) == 0 or any(not client.partitions_for_topic(t) for t in topics):
            return False
        ends = await asyncio.wait_for(client.end_offsets(tps), 15)
        for tp in tps:
            c = await asyncio.wait_for(client.committed(tp), 15)
            if (c or 0) != ends[tp]:
                return False
    except (KafkaError, TimeoutError, OSError, IllegalStateError) as exc:
        log.debug("caught-up check failed: %s", exc)
        return False
    return True


def _tps(tps: Any) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps))


class Stopped(Exception):
    """A stop was requested while waiting to (re)try."""


async def retry_forever(
    what: str, fn: Callable[[], Awaitable[Any]], stop: Callable[[], bool]
) -> Any:
    """Call fn with capped backoff until it succeeds; raise Stopped once stop() is true."""
    delay = 0.2
    while True:
        if stop():
            raise Stopped(what)
        try:
            return await fn()
        except Exception as exc:
            if stop():
                raise Stopped(what) from exc
            log.warning("%s failed (%s); retry in %.1fs", what, exc, delay)
            until = time.monotonic() + delay
            while time.monotonic() < until and not stop():
                await asyncio.sleep(min(0.2, delay))
            delay = min(delay * 2, 10.0)
