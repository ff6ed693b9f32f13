"""The `has` matcher against hand-derived expectations (Kusto docs: a term is a maximal run of
ASCII letters and digits; `has` needs the needle's alphanumeric ends on term boundaries)."""

from __future__ import annotations

import pytest

from stream.match.kusto import ascii_lower, has, has_cs
from tests.oracle import kusto_has

CASES = [
    # (haystack, needle, expected) -- RemoteUrl has 'splashtop.com'
    ("splashtop.com", "splashtop.com", True),
    ("www.splashtop.com", "splashtop.com", True),
    ("SPLASHTOP.COM", "splashtop.com", True),
    ("Splashtop.Com", "splashtop.com", True),
    ("splashtop.com.example.net", "splashtop.com", True),  # not a domain-suffix match
    ("notsplashtop.com", "splashtop.com", False),
    ("splashtop.community.org", "splashtop.com", False),
    ("st2-v3-dc.relay.splashtop.com", "splashtop.com", True),
    ("https://my.splashtop.com/login?x=1", "splashtop.com", True),
    ("https://my.splashtop.com:443/", "splashtop.com", True),
    ("my_splashtop.com", "splashtop.com", True),  # '_' separates terms
    ("splashtop.com_x", "splashtop.com", True),
    ("splashtop2.com", "splashtop.com", False),
    ("splashtop.com2", "splashtop.com", False),
    ("splashtopXcom", "splashtop.com", False),  # the dot is literal
    ("splashtop..com", "splashtop.com", False),
    ("", "splashtop.com", False),
    ("splashtop", "splashtop.com", False),
    ("a.splashtop.eu", "splashtop.eu", True),
    ("splashtop.europe.example", "splashtop.eu", False),
    ("splashtop.eu:443", "splashtop.eu", True),
    ("xsplashtop.eu", "splashtop.eu", False),
    ("splashtop.com\u00e9", "splashtop.com", True),  # non-ASCII is a separator here
    ("\u00e9splashtop.com", "splashtop.com", True),
    ("splashtop\u212a.com", "splashtop.com", False),  # Kelvin sign is not ASCII K
    # InitiatingProcessVersionInfoCompanyName has 'Splashtop'
    ("Splashtop Inc.", "Splashtop", True),
    ("SplashtopInc", "Splashtop", False),
    ("splashtop inc", "Splashtop", True),
    ("SPLASHTOP", "Splashtop", True),
    ("Splashtop, Inc.", "Splashtop", True),
    ("Splashtop_Inc", "Splashtop", True),
    ("MySplashtop", "Splashtop", False),
    ("Splashtop2", "Splashtop", False),
    ("(Splashtop)", "Splashtop", True),
    ("Microsoft Corporation", "Splashtop", False),
    # Docs examples
    ("North America", "america", True),
    ("North America", "amer", False),
    ("KustoExplorerQueryRun", "Explorer", False),
    # Needles with punctuation at their edges need no boundary there
    ("xx.splashtop.com", ".splashtop.com", True),
    ("xsplashtop.com", ".splashtop.com", False),
    ("abc-", "c-", False),  # left end "c" follows "b"
    ("c-", "c-", True),
    ("abc-def", "c-", False),  # left end 'c' needs a boundary before it
    ("ab c-def", "c-", True),
    ("a--b", "-", True),
]


@pytest.mark.parametrize(("hay", "needle", "expected"), CASES)
def test_has_table(hay: str, needle: str, expected: bool) -> None:
    assert has(hay, needle) is expected


@pytest.mark.parametrize(("hay", "needle", "expected"), CASES)
def test_oracle_agrees_with_table(hay: str, needle: str, expected: bool) -> None:
    # The brute-force evaluator used by the property tests must agree with the table too.
    assert kusto_has(hay, needle) is expected


def test_has_cs_is_case_sensitive() -> None:
    assert has_cs("Splashtop Inc.", "Splashtop")
    assert not has_cs("SPLASHTOP Inc.", "Splashtop")
    assert not has_cs("SplashtopInc", "Splashtop")


def test_ascii_lower_folds_ascii_only() -> None:
    assert ascii_lower("SPLASHTOP") == "splashtop"
    assert ascii_lower("\u0130X") == "\u0130x"  # str.lower() would turn this into 'i̇x'
    assert ascii_lower("\u212a") == "\u212a"


def test_table_has_enough_pairs() -> None:
    assert len(CASES) >= 30
