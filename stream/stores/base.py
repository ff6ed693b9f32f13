"""The store interface. Both stores implement the same episode rules (docs/semantics.md):

- apply(): add a batch's members to their groups, and decide `new` alerts and pending changes,
  recording each decision in the outbox in the same atomic step as the state;
- tick(): fire due `update`s (pending change at least the update interval old, wall clock) and
  re-evaluate groups whose future-dated events have come into range;
- outbox()/ack(): decisions not yet confirmed by a sink, and their removal once confirmed;
- rows()/table(): the summarize output at an as_of.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from stream.alerts.decision import Decision
from stream.errors import ConfigurationError
from stream.rules.compiled import CompiledRule
from stream.window.model import RowResult


class StoreConfigError(ConfigurationError):
    """A store URL or setting that cannot work."""


@dataclass
class GroupUpdate:
    rule: CompiledRule
    gk: str  # encoded group key
    key_values: tuple[Any, ...]
    bucket: int
    # members with ticks in [lo, alert_hi] and members later than alert_hi (future-dated)
    members: dict[str, list[Any] | None]
    future: dict[str, list[Any] | None]
    evidence: bytes | None
    evidence_ticks: int


class Store(ABC):
    name = "store"

    async def open(self, rules: list[CompiledRule]) -> list[str]:
        """Connect and prepare; return warnings for the operator."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    async def apply(
        self, updates: list[GroupUpdate], as_of: int, wall_ms: int
    ) -> list[Decision]: ...

    @abstractmethod
    async def tick(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]: ...

    @abstractmethod
    async def flush(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]:
        """Like tick, with every pending update due now (end of a replay)."""

    @abstractmethod
    async def rows(
        self, rule: CompiledRule, gks: list[str], as_of: int, alert_range: bool = True
    ) -> dict[str, RowResult]: ...

    @abstractmethod
    async def table(self, rule: CompiledRule, as_of: int) -> list[RowResult]: ...

    @abstractmethod
    async def outbox(self, rules: list[CompiledRule]) -> list[Decision]: ...

    @abstractmethod
    async def ack(self, rules: list[CompiledRule], decisions: list[Decision]) -> None: ...


def sort_rows(rule: CompiledRule, rows: list[RowResult]) -> list[RowResult]:
    from stream.window.model import _sort_key

    return sorted(rows, key=lambda r: tuple(_sort_key(r.row[k]) for k in rule.by))
