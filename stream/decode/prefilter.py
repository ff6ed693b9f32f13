"""A byte-level prefilter that rules out messages no loaded rule can match, without parsing.

It is conservative by construction: a message is ruled out only when none of the rules' required
literals occurs in its bytes (ASCII case-insensitively) and it holds no JSON escape that could
spell a letter or digit. Literals are runs of ASCII letters and digits, which JSON never escapes
except as \\u00XX, so an escaped `\\u0073plashtop` keeps its message (see docs/semantics.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stream.match.kusto import alnum_runs, ascii_lower
from stream.rules.model import All, AnyOf, Compare, Condition, Not

# \u0030-\u007f covers every ASCII letter and digit; a few harmless escapes also trip it.
_LETTER_ESCAPE = re.compile(rb"\\u00[3-7][0-9a-fA-F]")
# Operators whose true result implies every (has_all) or some (the rest) value occurs as text.
_IMPLY_ANY = {
    "has",
    "has_cs",
    "has_any",
    "contains",
    "contains_cs",
    "startswith",
    "endswith",
    "==",
    "=~",
    "in",
    "in~",
}


def _literal(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None  # numbers print in many forms; no literal
    runs = alnum_runs(value)
    if not runs:
        return None
    return ascii_lower(max(runs, key=len)).encode()


def required_literals(cond: Condition) -> frozenset[bytes] | None:
    """A set of byte strings of which at least one occurs in every record satisfying cond,
    or None when no such set can be derived."""
    if isinstance(cond, Compare):
        if cond.op not in _IMPLY_ANY and cond.op != "has_all":
            return None
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        lits = [_literal(v) for v in values]
        if cond.op == "has_all":
            good = [x for x in lits if x]
            return frozenset([max(good, key=len)]) if good else None
        if any(x is None for x in lits):
            return None
        return frozenset(x for x in lits if x)
    if isinstance(cond, Not):
        return None
    if isinstance(cond, All):
        best: frozenset[bytes] | None = None
        for c in cond.items:
            lits = required_literals(c)
            if lits is not None and (best is None or _score(lits) > _score(best)):
                best = lits
        return best
    if isinstance(cond, AnyOf):
        acc: set[bytes] = set()
        for c in cond.items:
            lits = required_literals(c)
            if lits is None:
                return None
            acc |= lits
        return frozenset(acc)
    return None


def _score(lits: frozenset[bytes]) -> tuple[int, int]:
    # Prefer few, long literals: fewer searches and fewer false candidates.
    return (min(len(x) for x in lits), -len(lits))


class Prefilter:
    def __init__(self, literals: frozenset[bytes] | None) -> None:
        self.literals = tuple(sorted(literals)) if literals else ()
        self.enabled = literals is not None and bool(literals)

    def may_match(self, data: bytes) -> bool:
        if not self.enabled:
            return True
        low = data.lower()
        for lit in self.literals:
            if lit in low:
                return True
        # One regex scan is cheaper here than `in` for "\\u00": its last byte, '0', is common.
        return _LETTER_ESCAPE.search(data) is not None

    def admit(self, data: bytes) -> Callable[[bytes], bool] | None:
        """One look at a message: None when it is ruled out, else the test for its records
        (the same as may_match followed by record_filter, without scanning twice)."""
        low = data.lower()
        for lit in self.literals:
            if lit in low:
                return self.record_filter(data)
        if _LETTER_ESCAPE.search(data) is not None:
            return self.may_match  # letter escapes somewhere: each record needs the full test
        return None

    def has_literal(self, data: bytes) -> bool:
        low = data.lower()
        return any(lit in low for lit in self.literals)

    def record_filter(self, message: bytes) -> Callable[[bytes], bool]:
        """The test for the records of a message that may match: without a letter escape
        anywhere in the message, the literals alone decide (one regex scan per message instead
        of one per record)."""
        if _LETTER_ESCAPE.search(message) is None:
            return self.has_literal
        return self.may_match
