"""The rule model: what a detection says, independent of how it is matched or stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STRING_OPS = frozenset(
    {
        "has",
        "!has",
        "has_cs",
        "!has_cs",
        "has_any",
        "has_all",
        "contains",
        "!contains",
        "contains_cs",
        "!contains_cs",
        "startswith",
        "!startswith",
        "endswith",
        "!endswith",
        "==",
        "!=",
        "=~",
        "!~",
        "in",
        "!in",
        "in~",
        "!in~",
    }
)
NUMERIC_OPS = frozenset({"<", "<=", ">", ">="})
LIST_OPS = frozenset({"has_any", "has_all", "in", "!in", "in~", "!in~"})
AGGREGATE_FUNCS = frozenset({"min", "max", "count", "make_set", "dcount"})
MAKE_SET_DEFAULT_LIMIT = 1_048_576


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: Any  # a scalar, or a tuple for list operators


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Compare | All | AnyOf | Not


@dataclass(frozen=True)
class Aggregate:
    name: str  # output column
    func: str  # min | max | count | make_set | dcount
    column: str | None  # None for count()
    limit: int | None = None  # make_set's max size


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    table: str
    lookback_ticks: int
    where: All
    by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    severity: str = "Medium"
    description: str = ""
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    update_interval_ticks: int = 15 * 60 * 10_000_000
    skew_ticks: int = 10 * 60 * 10_000_000
    source: str = ""  # the file it came from, for messages
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def condition_columns(cond: Condition) -> set[str]:
    if isinstance(cond, Compare):
        return {cond.column}
    if isinstance(cond, Not):
        return condition_columns(cond.item)
    out: set[str] = set()
    for c in cond.items:
        out |= condition_columns(c)
    return out


def condition_to_data(cond: Condition) -> Any:
    """A canonical JSON-able form, used for the rule version hash."""
    if isinstance(cond, Compare):
        v = list(cond.value) if isinstance(cond.value, tuple) else cond.value
        return ["cmp", cond.column, cond.op, v]
    if isinstance(cond, Not):
        return ["not", condition_to_data(cond.item)]
    tag = "all" if isinstance(cond, All) else "any"
    return [tag, [condition_to_data(c) for c in cond.items]]
