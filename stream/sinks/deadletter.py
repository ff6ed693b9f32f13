"""Dead letters: one JSON line per bad record or message, with the reason and the raw text."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from stream.decode.events import BadRecord
from stream.sinks.jsonl import JsonLinesSink


def dead_letter_entry(bad: BadRecord, source: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"reason": bad.reason, "error": bad.error, "source": source}
    if bad.index is not None:
        entry["record_index"] = bad.index
    try:
        entry["raw"] = bad.raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["raw_base64"] = base64.b64encode(bad.raw).decode()
    return entry


class DeadLetterFile:
    def __init__(self, path: str) -> None:
        self.sink = JsonLinesSink(path)

    async def write(self, entries: list[dict[str, Any]]) -> None:
        self.sink.write_raw([orjson.dumps(e) for e in entries])

    def close(self) -> None:
        self.sink.close()
