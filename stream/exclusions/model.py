"""The compiled form of an exclusions file, and the one call the pipeline makes on it.

`ExclusionSet.first_match(rule_id, event)` runs only on events that already matched a rule. It
walks the exclusions that apply to that rule, in file order, and returns the name of the first one
whose every condition holds (or None). Each condition is a closure built once by the loader; the
cheap ones (set look-ups) run before the dearer ones (CIDR, local time).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream.decode.events import Event
from stream.errors import ConfigurationError
from stream.timeutil import TICKS_PER_DAY

log = logging.getLogger("rmm_stream")

Predicate = Callable[[Event], bool]
# (real path, device, inode, mtime ns, size) of what a path resolves to; (path, None) if missing.
FileId = tuple[str, int, int, int, int] | tuple[str, None]
Files = tuple[tuple[Path, FileId], ...]


def file_identity(path: Path) -> FileId:
    """The identity of the file path resolves to now (symlinks followed, as a Kubernetes
    ConfigMap's `..data` swap changes it)."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return (str(path), None)
    return (real, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ExclusionError(ConfigurationError):
    """An exclusions file is unreadable or invalid; the message names the file, the exclusion and
    the key. `files`: every file the load read or tried to read, with its identity just before
    the read (the watcher retries only once one of them changes)."""

    def __init__(self, message: str, files: Files = ()) -> None:
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class Condition:
    """One compiled condition: `column.op` (e.g. LocalIP.cidr) and its predicate."""

    column: str
    op: str
    predicate: Predicate
    cost: int  # evaluation order: cheap first


@dataclass(frozen=True)
class Exclusion:
    name: str
    rules: tuple[str, ...] | None  # None: every rule
    conditions: tuple[Condition, ...]
    owner: str = ""
    reason: str = ""
    ticket: str = ""
    expires: dt.date | None = None
    enabled: bool = True
    predicates: tuple[Predicate, ...] = field(default=(), compare=False)

    def expired_at(self, now_ticks: int) -> bool:
        """True once the UTC date of now is after `expires` (it applies through that date)."""
        if self.expires is None:
            return False
        return now_ticks >= self.expires.toordinal() * TICKS_PER_DAY  # the next day's 00:00

    def holds(self, event: Event) -> bool:
        return all(p(event) for p in self.predicates)


class ExclusionSet:
    """The exclusions of one file, ready for the hot path.

    Which exclusions are active depends on `now` (expiry is judged by the query's now(): the
    --as-of instant in replay, the clock in the live service); `set_now` re-evaluates it.
    """

    def __init__(
        self,
        exclusions: list[Exclusion],
        *,
        source: str = "",
        files: Files = (),
        rule_ids: list[str] | None = None,
        now_ticks: int | None = None,
    ) -> None:
        self.exclusions = list(exclusions)
        self.source = source
        self.files = files  # the exclusions file and every list file it names, with identities
        self.rule_ids = list(rule_ids) if rule_ids is not None else None
        self.expired: list[Exclusion] = []
        self._default: tuple[Exclusion, ...] = ()
        self._by_rule: dict[str, tuple[Exclusion, ...]] = {}
        self.now_ticks = 0
        if now_ticks is None:
            from stream.timeutil import now_ticks as _now

            now_ticks = _now()
        self.set_now(now_ticks)

    def __len__(self) -> int:
        return len(self.exclusions)

    @property
    def active(self) -> list[Exclusion]:
        return [e for e in self.exclusions if e.enabled and not e.expired_at(self.now_ticks)]

    def set_now(self, now_ticks: int) -> list[Exclusion]:
        """Judge expiry at now_ticks; returns the exclusions that expired since the last call."""
        before = {e.name for e in self.expired}
        self.now_ticks = now_ticks
        self.expired = [e for e in self.exclusions if e.expired_at(now_ticks)]
        active = self.active
        self._default = tuple(e for e in active if e.rules is None)
        ids = set(self.rule_ids or ())
        for e in active:
            ids.update(e.rules or ())
        self._by_rule = {
            rid: tuple(e for e in active if e.rules is None or rid in e.rules) for rid in ids
        }
        return [e for e in self.expired if e.name not in before]

    def applies_to(self, rule_id: str) -> tuple[Exclusion, ...]:
        return self._by_rule.get(rule_id, self._default)

    def first_match(self, rule_id: str, event: Event) -> str | None:
        """The name of the first active exclusion for rule_id that holds for event, or None."""
        for ex in self._by_rule.get(rule_id, self._default):
            for p in ex.predicates:
                if not p(event):
                    break
            else:
                return ex.name
        return None

    def describe(self) -> str:
        n_exp = len(self.expired)
        n_off = sum(1 for e in self.exclusions if not e.enabled)
        parts = [f"{len(self.exclusions)} exclusions"]
        if n_exp:
            parts.append(f"{n_exp} expired")
        if n_off:
            parts.append(f"{n_off} disabled")
        return ", ".join(parts)
