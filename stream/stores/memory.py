"""The embedded default store: everything in this process, gone when it exits."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.alerts.decision import Decision, alert_id
from stream.rules.compiled import CompiledRule
from stream.stores.base import GroupUpdate, Store, sort_rows
from stream.timeutil import TICK_WIDTH, TICKS_PER_MS
from stream.window.model import Bounds, RowResult, compute_row, member_ticks


def _pad(t: int) -> str:
    return f"{t:0{TICK_WIDTH}d}"


@dataclass
class _Group:
    key_values: tuple[Any, ...]
    members: list[str] = field(default_factory=list)  # sorted
    payloads: dict[str, list[Any]] = field(default_factory=dict)
    last: int | None = None  # newest member in the alert range at the last evaluation
    id: str | None = None
    seq: int = 0
    start: int = 0
    pend: int = 0  # wall ms of the first unreported change, 0 when none
    evidence: bytes | None = None
    evt: int = -1

    def first_in(self, lo: int, hi: int) -> str | None:
        i = bisect.bisect_left(self.members, _pad(lo))
        if i < len(self.members) and member_ticks(self.members[i]) <= hi:
            return self.members[i]
        return None

    def last_in(self, lo: int, hi: int) -> str | None:
        j = bisect.bisect_left(self.members, _pad(hi + 1)) - 1
        if j >= 0 and member_ticks(self.members[j]) >= lo:
            return self.members[j]
        return None

    def in_range(self, lo: int, hi: int) -> list[str]:
        i = bisect.bisect_left(self.members, _pad(lo))
        j = bisect.bisect_left(self.members, _pad(hi + 1))
        return self.members[i:j]

    def trim(self, lo: int) -> None:
        i = bisect.bisect_left(self.members, _pad(lo))
        if i:
            for m in self.members[:i]:
                self.payloads.pop(m, None)
            del self.members[:i]

    def add(self, member: str, payload: list[Any] | None) -> bool:
        i = bisect.bisect_left(self.members, member)
        if i < len(self.members) and self.members[i] == member:
            return False
        self.members.insert(i, member)
        if payload is not None:
            self.payloads[member] = payload
        return True


class MemoryStore(Store):
    name = "memory"

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}
        self._due: dict[str, dict[str, int]] = {}  # rule -> gk -> wall ms
        self._fut: dict[str, dict[str, int]] = {}  # rule -> gk -> as_of ticks
        self._outbox: dict[str, Decision] = {}

    def _emit(self, kind: str, rule: CompiledRule, gk: str, g: _Group, as_of: int, wall: int):
        d = Decision(kind, g.id or "", g.seq, rule.id, gk, as_of, g.start, g.evidence, wall)
        self._outbox[d.field] = d
        return d

    def _evaluate(
        self, rule: CompiledRule, gk: str, g: _Group, b: Bounds, changed: bool, wall: int
    ) -> Decision | None:
        was_open = g.last is not None and g.last >= b.lo
        cur = g.last_in(b.lo, b.alert_hi)
        if cur is None:
            return None
        if not was_open:
            first = g.first_in(b.lo, b.alert_hi)
            assert first is not None
            g.start = member_ticks(first)
            g.id = alert_id(rule.id, gk, g.start)
            g.seq = 0
            g.pend = 0
            g.last = member_ticks(cur)
            self._due.get(rule.id, {}).pop(gk, None)
            return self._emit("new", rule, gk, g, b.as_of, wall)
        if changed and not g.pend:
            g.pend = wall
            self._due.setdefault(rule.id, {})[gk] = wall + rule.update_interval // TICKS_PER_MS
        g.last = member_ticks(cur)
        return None

    def _schedule_future(self, rule: CompiledRule, gk: str, g: _Group, b: Bounds) -> None:
        i = bisect.bisect_left(g.members, _pad(b.alert_hi + 1))
        if i < len(g.members):
            self._fut.setdefault(rule.id, {})[gk] = member_ticks(g.members[i]) - rule.skew

    async def apply(self, updates: list[GroupUpdate], as_of: int, wall_ms: int) -> list[Decision]:
        out: list[Decision] = []
        for u in updates:
            rule = u.rule
            b = Bounds.at(rule, as_of)
            g = self._groups.get((rule.id, u.gk))
            if g is None:
                g = self._groups[(rule.id, u.gk)] = _Group(u.key_values)
            g.trim(b.lo)
            added_in = sum(g.add(m, p) for m, p in u.members.items())
            added_f = sum(g.add(m, p) for m, p in u.future.items())
            if (added_in or added_f) and u.evidence is not None and u.evidence_ticks > g.evt:
                g.evidence, g.evt = u.evidence, u.evidence_ticks
            d = self._evaluate(rule, u.gk, g, b, added_in > 0, wall_ms)
            if d is not None:
                out.append(d)
            if added_f:
                self._schedule_future(rule, u.gk, g, b)
        return out

    async def tick(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]:
        return self._tick(rules, as_of, wall_ms, wall_ms)

    async def flush(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]:
        return self._tick(rules, as_of, wall_ms, 2**62)

    def _tick(
        self, rules: list[CompiledRule], as_of: int, wall_ms: int, due_ms: int
    ) -> list[Decision]:
        out: list[Decision] = []
        for rule in rules:
            b = Bounds.at(rule, as_of)
            fut = self._fut.get(rule.id, {})
            for gk in [k for k, t in fut.items() if t <= as_of]:
                del fut[gk]
                g = self._groups.get((rule.id, gk))
                if g is None:
                    continue
                d = self._evaluate(rule, gk, g, b, True, wall_ms)
                if d is not None:
                    out.append(d)
                self._schedule_future(rule, gk, g, b)
            due = self._due.get(rule.id, {})
            for gk in sorted(k for k, t in due.items() if t <= due_ms):
                del due[gk]
                g = self._groups.get((rule.id, gk))
                if g is None:
                    continue
                g.pend = 0
                cur = g.last_in(b.lo, b.alert_hi)
                if cur is None or g.id is None:
                    continue
                g.seq += 1
                g.last = member_ticks(cur)
                out.append(self._emit("update", rule, gk, g, as_of, wall_ms))
            # drop groups whose every member is out of the window
            for key in [
                k
                for k, g in self._groups.items()
                if k[0] == rule.id and g.members and member_ticks(g.members[-1]) < b.lo
            ]:
                del self._groups[key]
        return out

    async def rows(
        self, rule: CompiledRule, gks: list[str], as_of: int, alert_range: bool = True
    ) -> dict[str, RowResult]:
        b = Bounds.at(rule, as_of)
        hi = b.alert_hi if alert_range else b.hi
        out: dict[str, RowResult] = {}
        for gk in gks:
            g = self._groups.get((rule.id, gk))
            members = g.in_range(b.lo, hi) if g else []
            kv = list(g.key_values) if g else list(orjson.loads(gk))
            out[gk] = compute_row(rule, kv, members, g.payloads if g else None)
        return out

    async def table(self, rule: CompiledRule, as_of: int) -> list[RowResult]:
        b = Bounds.at(rule, as_of)
        rows = []
        for (rid, _gk), g in self._groups.items():
            if rid != rule.id:
                continue
            members = g.in_range(b.lo, b.hi)
            if members:
                rows.append(compute_row(rule, list(g.key_values), members, g.payloads))
        return sort_rows(rule, rows)

    async def outbox(self, rules: list[CompiledRule]) -> list[Decision]:
        ids = {r.id for r in rules}
        return [d for d in self._outbox.values() if d.rule_id in ids]

    async def ack(self, rules: list[CompiledRule], decisions: list[Decision]) -> None:
        for d in decisions:
            self._outbox.pop(d.field, None)
