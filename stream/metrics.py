"""Every Prometheus metric of the service, named in one place (docs/operations.md lists them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    21600,
    86400,
    432000,
)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.messages = Counter("rmm_stream_messages", "Messages read from the source", registry=r)
        self.bytes = Counter("rmm_stream_bytes", "Bytes of messages read", registry=r)
        self.records = Counter(
            "rmm_stream_records",
            "Records by outcome: decoded, other_table, bad, matched, excluded, outside_lookback; "
            "messages the prefilter ruled out count as outcome=prefiltered (messages, not records)",
            ["outcome"],
            registry=r,
        )
        self.bad = Counter(
            "rmm_stream_bad_records", "Bad records by reason", ["reason"], registry=r
        )
        self.dead_letters = Counter(
            "rmm_stream_dead_letters", "Entries written to the dead-letter sink", registry=r
        )
        self.alerts = Counter(
            "rmm_stream_alerts", "Alerts delivered, by rule and kind", ["rule", "kind"], registry=r
        )
        self.excluded = Counter(
            "rmm_stream_excluded",
            "Matched events removed by an exclusion",
            ["rule", "exclusion"],
            registry=r,
        )
        self.set_overflow = Counter(
            "rmm_stream_make_set_overflow",
            "Values make_set left out of an alert row (size cap)",
            ["rule"],
            registry=r,
        )
        self.event_lag = Histogram(
            "rmm_stream_event_lag_seconds",
            "Processing time minus event time of matched events",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rmm_stream_batch_seconds",
            "Time to process one batch end to end",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "rmm_stream_batch_messages",
            "Messages per batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.store_seconds = Histogram(
            "rmm_stream_store_seconds",
            "Time of one store operation",
            ["op"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "rmm_stream_store_errors",
            "Store operations that failed (and were retried)",
            ["op"],
            registry=r,
        )
        self.sink_errors = Counter(
            "rmm_stream_sink_errors",
            "Alert deliveries that failed (kept in the outbox)",
            registry=r,
        )
        self.outbox_depth = Gauge(
            "rmm_stream_outbox_depth",
            "Alerts decided but not yet confirmed by the sink",
            registry=r,
        )
        self.last_event = Gauge(
            "rmm_stream_last_event_timestamp_seconds",
            "Wall time of the last message received",
            registry=r,
        )
        self.exclusions_expired = Gauge(
            "rmm_stream_exclusions_expired",
            "Exclusions past their expiry date (not applied)",
            registry=r,
        )
        self.exclusions_reloads = Counter(
            "rmm_stream_exclusions_reloads",
            "Exclusion file reloads by result",
            ["result"],
            registry=r,
        )
        # -- the live service (stream/service) ---------------------------------------------
        self.consumer_lag = Gauge(
            "rmm_stream_consumer_lag",
            "Messages between the partition's end (high watermark) and the group's committed "
            "offset, for the partitions this worker holds",
            ["topic", "partition"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "rmm_stream_commit_seconds",
            "Time of one offset commit to the broker",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.commits = Counter(
            "rmm_stream_commits",
            "Offset commits by result: ok, failed (retried or left to the new owner)",
            ["result"],
            registry=r,
        )
        self.last_commit = Gauge(
            "rmm_stream_last_commit_timestamp_seconds",
            "Wall time of the last successful offset commit",
            registry=r,
        )
        self.batch_errors = Counter(
            "rmm_stream_batch_errors",
            "Batches that raised and were retried (never committed until they succeed)",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "rmm_stream_assigned_partitions",
            "Input partitions this worker holds",
            registry=r,
        )
        self.rebalances = Counter(
            "rmm_stream_rebalances",
            "Partition assignments received from the group coordinator",
            registry=r,
        )
        self.healthy = Gauge("rmm_stream_healthy", "1 when /healthz answers 200", registry=r)
        self.ready = Gauge("rmm_stream_ready", "1 when /readyz answers 200", registry=r)
