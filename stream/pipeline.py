"""The path of one batch: decode -> match -> exclude -> window -> alert -> sink.

Every source (files, stdin, Kafka, Event Hubs) hands batches of raw messages to `Pipeline.process`;
the pipeline returns only when the batch's state updates are stored and its alerts and dead
letters are confirmed by their sinks, so a source may commit its position after it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from stream.alerts.decision import Decision, evidence_of
from stream.alerts.document import alert_document
from stream.decode.events import Checker, Decoder, Event
from stream.decode.prefilter import Prefilter, required_literals
from stream.metrics import Metrics
from stream.rules.compiled import CompiledRule
from stream.rules.model import AnyOf
from stream.sinks.deadletter import dead_letter_entry
from stream.sources.base import RawMessage
from stream.stores.base import GroupUpdate, Store
from stream.timeutil import TICKS_PER_SECOND, UNIX_EPOCH_TICKS, now_ticks
from stream.window.model import Bounds, bucket_of, encode_member, group_key

log = logging.getLogger("rmm_stream")
T = TypeVar("T")


class Sink(Protocol):
    async def write(self, docs: list[dict[str, Any]]) -> None: ...


class Exclusions(Protocol):
    def first_match(self, rule_id: str, event: Event) -> str | None: ...


@dataclass
class Stats:
    messages: int = 0
    bytes: int = 0
    prefiltered: int = 0
    records: int = 0
    skipped: int = 0
    decoded: int = 0
    other_tables: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    outside_lookback: int = 0
    matched: int = 0
    excluded: Counter[tuple[str, str]] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    set_overflow: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        secs = max(time.monotonic() - self.started, 1e-9)
        bad = ",".join(f"{k}={v}" for k, v in sorted(self.bad.items()))
        excl = sum(self.excluded.values())
        excl_by = ",".join(f"{r}/{x}={n}" for (r, x), n in sorted(self.excluded.items()))
        alerts = ",".join(f"{k}={v}" for k, v in sorted(self.alerts.items()))
        return (
            f"rmm-stream: messages={self.messages} bytes={self.bytes} "
            f"prefiltered_out={self.prefiltered} records={self.records} "
            f"records_prefiltered_out={self.skipped} "
            f"decoded={self.decoded} other_tables={self.other_tables} "
            f"bad={sum(self.bad.values())}"
            + (f"({bad})" if bad else "")
            + f" outside_lookback={self.outside_lookback} matched={self.matched} "
            f"excluded={excl}"
            + (f"({excl_by})" if excl_by else "")
            + f" alerts={sum(self.alerts.values())}"
            + (f"({alerts})" if alerts else "")
            + f" seconds={secs:.3f} messages/s={self.messages / secs:.0f} "
            f"MB/s={self.bytes / secs / 1e6:.1f} records/s={self.records / secs:.0f}"
        )


class Pipeline:
    def __init__(
        self,
        rules: list[CompiledRule],
        store: Store,
        alerts: Sink,
        *,
        dead_letter: Sink | None = None,
        excluded_sink: Sink | None = None,
        exclusions: Exclusions | None = None,
        metrics: Metrics | None = None,
        validate_all: bool = False,
        retries: int | None = 5,
        tick_every_ms: int = 1000,
    ) -> None:
        if not rules:
            raise ValueError("no rules loaded")
        self.rules = rules
        self.by_id = {r.id: r for r in rules}
        self.store = store
        self.alerts = alerts
        self.dead_letter = dead_letter
        self.excluded_sink = excluded_sink
        self.exclusions = exclusions
        self.metrics = metrics or Metrics()
        self.stats = Stats()
        self.retries = retries
        self.tick_every_ms = tick_every_ms
        self._last_tick_ms = 0
        self._undelivered: set[str] = set()  # outbox fields handed to the sink, not yet acked
        # Decisions left in the outbox by a process that died are re-sent by whoever sees them
        # first once they are this old (younger ones may still be in flight elsewhere).
        self.outbox_sweep_ms = 60_000
        self._last_sweep_ms = _wall_ms()
        tables: dict[str, dict[str, Any]] = {}
        self.rules_by_table: dict[str, list[CompiledRule]] = {}
        for r in rules:
            tables.setdefault(r.rule.table, {}).update(r.columns)
            self.rules_by_table.setdefault(r.rule.table, []).append(r)
        self.decoder = Decoder([Checker(t, cols) for t, cols in tables.items()])
        lits = required_literals(AnyOf(tuple(r.rule.where for r in rules)))
        self.prefilter = Prefilter(None if validate_all else lits)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> list[str]:
        """Open the store and re-send what a previous process decided but did not deliver."""
        warnings = await self._retry("open", lambda: self.store.open(self.rules))
        await self.resend_outbox()
        return warnings

    async def finish(self, as_of: int) -> None:
        """End of input (replay): every pending update is due now."""
        decisions = await self._retry(
            "tick", lambda: self.store.flush(self.rules, as_of, _wall_ms())
        )
        await self.deliver(decisions)

    # -- the hot path ----------------------------------------------------------------------
    async def process(
        self,
        messages: list[RawMessage],
        as_of: int | None = None,
        *,
        ruled_out: tuple[int, int] | None = None,
    ) -> None:
        """ruled_out=(messages, bytes): the source ran the prefilter itself (parallel file
        reading); `messages` are the candidates and these counts are the rest."""
        started = time.perf_counter()
        as_of = now_ticks() if as_of is None else as_of
        wall_ms = _wall_ms()
        st = self.stats
        m = self.metrics
        bounds = {r.id: Bounds.at(r, as_of) for r in self.rules}
        updates: dict[tuple[str, str], GroupUpdate] = {}
        latest: dict[tuple[str, str], Event] = {}
        dead: list[dict[str, Any]] = []
        excluded_docs: list[dict[str, Any]] = []
        prefiltered = decoded = records = skipped = other = matched = outside = n_excluded = 0
        nbytes = 0
        pre = self.prefilter
        # screen(data) -> None when the message is ruled out, else the test for its records
        screen = None if not pre.enabled else pre.admit if ruled_out is None else pre.record_filter
        if ruled_out is not None:
            prefiltered, nbytes = ruled_out
        decode = self.decoder.decode
        rules_by_table = self.rules_by_table
        lag_obs = m.event_lag.observe
        now_unix = time.time()
        for msg in messages:
            data = msg.data
            nbytes += len(data)
            record_filter = None
            if screen is not None:
                record_filter = screen(data)
                if record_filter is None:
                    prefiltered += 1
                    continue
            dec = decode(data, record_filter)
            records += dec.records
            skipped += dec.skipped
            other += dec.other_tables
            decoded += len(dec.events)
            for bad in dec.bad:
                st.bad[bad.reason] += 1
                m.bad.labels(bad.reason).inc()
                dead.append(dead_letter_entry(bad, msg.position))
            for ev in dec.events:
                for rule in rules_by_table.get(ev.table, ()):
                    if not rule.predicate(ev):
                        continue
                    matched += 1
                    props = ev.props
                    if self.exclusions is not None:
                        name = self.exclusions.first_match(rule.id, ev)
                        if name is not None:
                            n_excluded += 1
                            st.excluded[(rule.id, name)] += 1
                            m.excluded.labels(rule.id, name).inc()
                            if self.excluded_sink is not None:
                                excluded_docs.append(
                                    {
                                        "RuleId": rule.id,
                                        "Exclusion": name,
                                        "Source": msg.position,
                                        "Record": props,
                                    }
                                )
                            continue
                    b = bounds[rule.id]
                    if ev.ticks < b.lo:
                        outside += 1
                        continue
                    lag_obs(max(0.0, now_unix - (ev.ticks - UNIX_EPOCH_TICKS) / TICKS_PER_SECOND))
                    values = rule.group_values(props)
                    gk = group_key(values)
                    key = (rule.id, gk)
                    u = updates.get(key)
                    if u is None:
                        u = updates[key] = GroupUpdate(
                            rule, gk, values, bucket_of(gk, rule.buckets), {}, {}, None, -1
                        )
                    member = encode_member(ev.ticks, props["ReportId"], rule.member_extra(props))
                    target = u.members if ev.ticks <= b.alert_hi else u.future
                    target[member] = rule.payload(props)
                    if ev.ticks > u.evidence_ticks:
                        u.evidence_ticks = ev.ticks
                        latest[key] = ev
        for key, ev in latest.items():
            updates[key].evidence = evidence_of(ev.props, ev.envelope)
        n_messages = len(messages) + (ruled_out[0] if ruled_out else 0)
        st.messages += n_messages
        st.bytes += nbytes
        st.prefiltered += prefiltered
        st.records += records
        st.skipped += skipped
        st.decoded += decoded
        st.other_tables += other
        st.matched += matched
        st.outside_lookback += outside
        m.messages.inc(n_messages)
        m.bytes.inc(nbytes)
        m.last_event.set(now_unix)
        for outcome, n in (
            ("prefiltered", prefiltered),
            ("decoded", decoded),
            ("other_table", other),
            ("bad", len(dead)),
            ("matched", matched),
            ("outside_lookback", outside),
            ("excluded", n_excluded),
        ):
            if n:
                m.records.labels(outcome).inc(n)
        m.batch_size.observe(n_messages)
        if dead and self.dead_letter is not None:
            await self.dead_letter.write(dead)
            m.dead_letters.inc(len(dead))
        if excluded_docs and self.excluded_sink is not None:
            await self.excluded_sink.write(excluded_docs)
        if updates:
            ups = list(updates.values())
            decisions = await self._retry("apply", lambda: self.store.apply(ups, as_of, wall_ms))
            await self.deliver(decisions)
        await self.maybe_tick(as_of)
        m.batch_seconds.observe(time.perf_counter() - started)

    async def maybe_tick(self, as_of: int | None = None, force: bool = False) -> None:
        wall = _wall_ms()
        if not force and wall - self._last_tick_ms < self.tick_every_ms:
            return
        self._last_tick_ms = wall
        as_of = now_ticks() if as_of is None else as_of
        decisions = await self._retry("tick", lambda: self.store.tick(self.rules, as_of, wall))
        await self.deliver(decisions)
        if wall - self._last_sweep_ms >= self.outbox_sweep_ms:
            self._last_sweep_ms = wall
            await self.resend_outbox(older_than_ms=self.outbox_sweep_ms)

    async def resend_outbox(self, older_than_ms: int = 0) -> int:
        """Deliver outbox entries decided at least older_than_ms ago; return how many."""
        cutoff = _wall_ms() - older_than_ms
        pending = await self._retry("outbox", lambda: self.store.outbox(self.rules))
        stale = [d for d in pending if d.decided_ms <= cutoff]
        if stale:
            log.info("re-sending %d alerts left in the outbox", len(stale))
            await self.deliver(stale)
        return len(stale)

    # -- alerts ----------------------------------------------------------------------------
    async def deliver(self, decisions: list[Decision]) -> None:
        """Build alert documents, hand them to the sink, and only then clear the outbox."""
        if not decisions:
            return
        self._undelivered.update(d.field for d in decisions)
        self.metrics.outbox_depth.set(len(self._undelivered))
        docs: list[dict[str, Any]] = []
        groups: dict[tuple[str, int], list[Decision]] = {}
        for d in decisions:
            if d.rule_id in self.by_id:
                groups.setdefault((d.rule_id, d.as_of), []).append(d)
        for (rid, as_of), ds in groups.items():
            rule = self.by_id[rid]
            gks = list(dict.fromkeys(d.gk for d in ds))
            rows = await self._retry(
                "rows", lambda r=rule, g=gks, a=as_of: self.store.rows(r, g, a)
            )
            wall = _wall_ms()
            for d in ds:
                rr = rows[d.gk]
                if rr.set_overflow:
                    self.stats.set_overflow += rr.set_overflow
                    self.metrics.set_overflow.labels(rid).inc(rr.set_overflow)
                docs.append(alert_document(rule, d, rr.row, wall))
        try:
            await self.alerts.write(docs)
        except Exception:
            self.metrics.sink_errors.inc()
            raise
        delivered = [d for d in decisions if d.rule_id in self.by_id]
        await self._retry("ack", lambda: self.store.ack(self.rules, delivered))
        self._undelivered.difference_update(d.field for d in delivered)
        self.metrics.outbox_depth.set(len(self._undelivered))
        for d in delivered:
            self.stats.alerts[d.kind] += 1
            self.metrics.alerts.labels(d.rule_id, d.kind).inc()

    # -- retries ---------------------------------------------------------------------------
    async def _retry(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Store calls are retried with capped exponential backoff; each failure is counted.
        With retries=None (the live service) it never gives up: the source stops committing."""
        delay = 0.1
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                result = await fn()
                self.metrics.store_seconds.labels(op).observe(time.perf_counter() - t0)
                return result
            except (ConnectionError, OSError, TimeoutError) as exc:
                err: Exception = exc
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                err = exc
            attempt += 1
            self.metrics.store_errors.labels(op).inc()
            if self.retries is not None and attempt > self.retries:
                raise err
            log.warning("store %s failed (%s); retry %d in %.1fs", op, err, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_transient(exc: Exception) -> bool:
    from redis.exceptions import BusyLoadingError, ClusterDownError, TryAgainError
    from redis.exceptions import ConnectionError as RConnErr
    from redis.exceptions import TimeoutError as RTimeout

    return isinstance(
        exc, RConnErr | RTimeout | BusyLoadingError | ClusterDownError | TryAgainError
    )


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
