"""Kusto string operators with the semantics of the Kusto docs (see docs/semantics.md).

`has` is a term match: the needle must occur (ASCII case-insensitively) with no ASCII letter or
digit immediately before it, when the needle starts with one, and none immediately after it, when
it ends with one. Punctuation inside the needle matches literally, so `has 'splashtop.com'` is a
phrase match of the terms `splashtop` and `com` joined by a dot. `_` and every non-ASCII character
separate terms here (Kusto may treat non-ASCII letters as term characters: documented).
"""

from __future__ import annotations

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def ascii_lower(s: str) -> str:
    """Fold A-Z only. str.lower() would also fold non-ASCII (and can change the length)."""
    if s.isascii():
        return s.lower()
    return s.translate(_ASCII_LOWER)


def is_term_char(ch: str) -> bool:
    return ch in _ALNUM


class HasNeedle:
    """One compiled `has` needle; call it with an already ASCII-folded haystack."""

    __slots__ = ("_left", "_n", "_right", "needle")

    def __init__(self, needle: str) -> None:
        self.needle = ascii_lower(needle)
        self._n = len(self.needle)
        self._left = self._n > 0 and self.needle[0] in _ALNUM
        self._right = self._n > 0 and self.needle[-1] in _ALNUM

    def in_folded(self, hay: str) -> bool:
        n = self._n
        if n == 0:
            # Kusto: `x has ""` is true (the empty string is found everywhere).
            return True
        find = hay.find
        i = find(self.needle)
        hay_len = len(hay)
        while i >= 0:
            if (not self._left or i == 0 or hay[i - 1] not in _ALNUM) and (
                not self._right or i + n == hay_len or hay[i + n] not in _ALNUM
            ):
                return True
            i = find(self.needle, i + 1)
        return False


def has(haystack: str, needle: str) -> bool:
    return HasNeedle(needle).in_folded(ascii_lower(haystack))


def has_cs(haystack: str, needle: str) -> bool:
    """Case-sensitive `has_cs`: same boundaries, no folding."""
    n = HasNeedle("")
    n.needle = needle
    n._n = len(needle)
    n._left = n._n > 0 and needle[0] in _ALNUM
    n._right = n._n > 0 and needle[-1] in _ALNUM
    return n.in_folded(haystack)


def alnum_runs(text: str) -> list[str]:
    """The maximal ASCII letter/digit runs of text, in order."""
    runs: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch in _ALNUM:
            cur.append(ch)
        elif cur:
            runs.append("".join(cur))
            cur = []
    if cur:
        runs.append("".join(cur))
    return runs
