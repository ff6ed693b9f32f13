"""Kafka sinks: alerts as JSON (key = rule id and group key, so one group's alerts land on one
partition, in order) and dead letters (value = the raw bytes, the reason in headers).

A write returns only when the broker has acknowledged every message (acks=all): that is the
confirmation the alert outbox and the source's commit wait for.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.window.model import group_key

log = logging.getLogger("rmm_stream")


class KafkaProducerHolder:
    """One producer shared by the alert and dead-letter sinks."""

    def __init__(self, options: dict[str, Any], *, max_request_size: int = 1_000_000) -> None:
        opts = dict(options)
        # Consumer-only settings are not producer arguments.
        for k in ("session_timeout_ms", "heartbeat_interval_ms"):
            opts.pop(k, None)
        self.producer = AIOKafkaProducer(
            acks="all",
            linger_ms=5,
            max_request_size=max_request_size,
            **opts,
        )
        self.started = False

    async def start(self) -> None:
        if not self.started:
            await self.producer.start()
            self.started = True

    async def stop(self) -> None:
        self.started = False
        await self.producer.stop()  # also when start() failed: closes what it opened

    async def send_all(self, topic: str, items: list[tuple[bytes | None, bytes, list]]) -> None:
        futures = [
            await self.producer.send(topic, value=value, key=key, headers=headers or None)
            for key, value, headers in items
        ]
        await asyncio.gather(*futures)


def alert_key(doc: dict[str, Any]) -> bytes:
    """`<RuleId>:<group key>`, the group key being the same exact JSON array the store uses."""
    return f"{doc.get('RuleId', '')}:{group_key(tuple(doc.get('Group', {}).values()))}".encode()


class KafkaAlertSink:
    def __init__(self, holder: KafkaProducerHolder, topic: str) -> None:
        self.holder = holder
        self.topic = topic

    async def write(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        await self.holder.send_all(self.topic, [(alert_key(d), orjson.dumps(d), []) for d in docs])

    def close(self) -> None:
        pass


class KafkaDeadLetterSink:
    """Headers: reason, error, source (topic/partition@offset), record_index when known."""

    def __init__(self, holder: KafkaProducerHolder, topic: str, max_value: int = 900_000) -> None:
        self.holder = holder
        self.topic = topic
        self.max_value = max_value  # a bad message larger than this is cut (header truncated)

    async def write(self, entries: list[dict[str, Any]]) -> None:
        items = []
        for e in entries:
            if "raw" in e:
                value = str(e["raw"]).encode("utf-8")
            else:
                value = base64.b64decode(e.get("raw_base64") or b"")
            headers = [
                ("reason", str(e.get("reason", "")).encode()),
                ("error", str(e.get("error", ""))[:1000].encode("utf-8", "replace")),
                ("source", str(e.get("source", "")).encode()),
            ]
            if e.get("record_index") is not None:
                headers.append(("record_index", str(e["record_index"]).encode()))
            if len(value) > self.max_value:
                headers.append(("truncated", str(len(value)).encode()))
                value = value[: self.max_value]
            items.append((None, value, headers))
        if items:
            await self.holder.send_all(self.topic, items)

    def close(self) -> None:
        pass
