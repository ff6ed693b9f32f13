from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RawMessage:
    """One message body as it arrived, and where it came from (for dead letters)."""

    data: bytes
    source: str  # file name, "-", or topic
    line: int = 0  # line number, or the offset for Kafka / sequence number for Event Hubs
    partition: int | None = None

    @property
    def position(self) -> str:
        if self.partition is not None:
            return f"{self.source}/{self.partition}@{self.line}"
        return f"{self.source}:{self.line}" if self.line else self.source
