"""Compiled exclusion conditions: value sets, prefix lists, CIDR sets and local-time windows.

Everything here is built once when the file loads; the per-event work is a dict/set look-up, a
`bisect` over merged integer ranges, or one time-zone conversion.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from stream.decode.events import Event
from stream.exclusions.model import Predicate
from stream.match.kusto import ascii_lower
from stream.rules.compiled import as_text
from stream.timeutil import TICKS_PER_DAY, TICKS_PER_SECOND, TimeParseError, parse_ticks

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# -- IP addresses ---------------------------------------------------------------------------------

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_ip_cache: dict[str, tuple[int, int] | None] = {}
_IP_CACHE_MAX = 65_536
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_from_bytes = int.from_bytes


def parse_ip(text: Any) -> tuple[int, int] | None:
    """(version, integer) of an address string, or None when it is not one. An IPv4-mapped IPv6
    address (::ffff:10.1.2.3) is its IPv4 address; a zone index (fe80::1%eth0) is ignored."""
    if type(text) is not str:
        return None
    hit = _ip_cache.get(text, _ip_cache)
    if hit is not _ip_cache:
        return hit  # type: ignore[return-value]
    out: tuple[int, int] | None
    if ":" not in text:
        # Without a colon it can only be IPv4. inet_pton is strict like ipaddress.IPv4Address
        # (four decimal octets, no leading zeros, <= 255; tests/test_exclusions.py compares them)
        # and about 10x faster.
        try:
            out = (4, _from_bytes(_inet_pton(_AF_INET, text), "big"))
        except (OSError, ValueError):
            out = None
    else:
        try:
            addr = ipaddress.IPv6Address(text)
        except ValueError:
            out = None
        else:
            mapped = addr.ipv4_mapped
            out = (4, int(mapped)) if mapped is not None else (6, int(addr))
    if len(_ip_cache) >= _IP_CACHE_MAX:
        _ip_cache.clear()
    _ip_cache[text] = out
    return out


def parse_network(text: str) -> IPNetwork:
    """A network from 'a.b.c.d/n', 'x::/n' or a bare address (/32, /128). Raises ValueError with a
    readable reason. Networks inside ::ffff:0:0/96 become the IPv4 networks they map."""
    text = text.strip()
    cls: type[IPNetwork] = ipaddress.IPv6Network if ":" in text else ipaddress.IPv4Network
    try:
        net: IPNetwork = cls(text, strict=True)
    except ValueError as exc:
        try:
            loose = cls(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv{cls._version} network: {exc}") from None
        raise ValueError(f"{text!r} has host bits set (did you mean {loose}?)") from None
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_MAPPED):  # type: ignore[arg-type]
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        net = ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


class CidrSet:
    """Networks compiled to sorted, merged, non-overlapping [start, end] integer ranges per IP
    version; membership is one bisect."""

    __slots__ = ("_ends", "_starts", "networks")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version in (4, 6):
            ranges = sorted(
                (int(n.network_address), int(n.broadcast_address))
                for n in self.networks
                if n.version == version
            )
            starts: list[int] = []
            ends: list[int] = []
            for lo, hi in ranges:
                if ends and lo <= ends[-1] + 1:
                    if hi > ends[-1]:
                        ends[-1] = hi
                else:
                    starts.append(lo)
                    ends.append(hi)
            self._starts[version] = starts
            self._ends[version] = ends

    def ranges(self, version: int) -> list[tuple[int, int]]:
        return list(zip(self._starts[version], self._ends[version], strict=True))

    def contains_ip(self, ip: tuple[int, int]) -> bool:
        version, x = ip
        starts = self._starts[version]
        i = bisect.bisect_right(starts, x) - 1
        return i >= 0 and x <= self._ends[version][i]

    def __contains__(self, text: object) -> bool:
        ip = parse_ip(text)
        return ip is not None and self.contains_ip(ip)


# -- values -------------------------------------------------------------------------------------


def text_of(v: Any) -> str:
    """A value as a string column sees it (Kusto's tostring(); null is "")."""
    return v if type(v) is str else as_text(v)


def is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v  # NaN equals nothing


def in_strings(column: str, values: Iterable[str], negate: bool) -> Predicate:
    folded = frozenset(ascii_lower(v) for v in values)

    def pred(e: Event) -> bool:
        v = e.props.get(column)
        if type(v) is not str:
            v = as_text(v)
        return (v.lower() if v.isascii() else ascii_lower(v)) in folded

    if negate:
        return lambda e: not pred(e)
    return pred


def in_numbers(column: str, values: Iterable[int | float], negate: bool) -> Predicate:
    nums = frozenset(values)
    if negate:

        def pred(e: Event) -> bool:
            v = e.props.get(column)
            return is_number(v) and v not in nums

        return pred

    def pred(e: Event) -> bool:
        v = e.props.get(column)
        return is_number(v) and v in nums

    return pred


def in_bools(column: str, values: Iterable[bool], negate: bool) -> Predicate:
    want = frozenset(values)
    if negate:
        return lambda e: type(v := e.props.get(column)) is bool and v not in want
    return lambda e: type(v := e.props.get(column)) is bool and v in want


def affix(column: str, values: Iterable[str], op: str) -> Predicate:
    """startswith / endswith (case-insensitive, as Kusto's): any of the values."""
    folded = tuple(ascii_lower(v) for v in values)
    if op == "startswith":
        return lambda e: ascii_lower(text_of(e.props.get(column))).startswith(folded)
    return lambda e: ascii_lower(text_of(e.props.get(column))).endswith(folded)


def cidr(column: str, cidrs: CidrSet, negate: bool) -> Predicate:
    contains = cidrs.contains_ip
    if negate:

        def pred(e: Event) -> bool:
            ip = parse_ip(e.props.get(column))
            return ip is not None and not contains(ip)

        return pred

    def pred(e: Event) -> bool:
        ip = parse_ip(e.props.get(column))
        return ip is not None and contains(ip)

    return pred


# -- local time ---------------------------------------------------------------------------------

_zones: dict[str, ZoneInfo] = {}
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_TICKS = 719_162 * TICKS_PER_DAY


def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo; raises KeyError (zoneinfo's ZoneInfoNotFoundError) or ValueError."""
    z = _zones.get(name)
    if z is None:
        z = _zones[name] = ZoneInfo(name)
    return z


class TimeWindow:
    """Local weekdays and/or a local [start, end) time of day, in one IANA zone (UTC default).

    `start_s`/`end_s` are seconds since local midnight; end may be 86400 ("24:00"); end < start
    wraps past midnight. Weekdays are Monday=0 .. Sunday=6, of the local date.
    """

    __slots__ = ("end_s", "start_s", "tz", "tz_name", "weekdays")

    def __init__(
        self,
        tz_name: str = "UTC",
        weekdays: frozenset[int] | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
    ) -> None:
        self.tz_name = tz_name
        self.tz = None if tz_name == "UTC" else zone(tz_name)
        self.weekdays = weekdays
        self.start_s = start_s
        self.end_s = end_s

    def local(self, ticks: int) -> tuple[int, int]:
        """(weekday, second of day) of the instant, in the window's zone."""
        secs = (ticks - _UNIX_TICKS) // TICKS_PER_SECOND
        if self.tz is None:
            days, sod = divmod(secs, 86_400)
            return (days + 3) % 7, sod  # 1970-01-01 was a Thursday
        d = (_UNIX + timedelta(seconds=secs)).astimezone(self.tz)
        return d.weekday(), d.hour * 3600 + d.minute * 60 + d.second

    def holds(self, ticks: int) -> bool:
        try:
            wd, sod = self.local(ticks)
        except OverflowError:  # an instant at the very edge of the calendar (year 1 or 9999)
            return False
        if self.weekdays is not None and wd not in self.weekdays:
            return False
        if self.start_s is None or self.end_s is None:
            return True
        if self.start_s < self.end_s:
            return self.start_s <= sod < self.end_s
        return sod >= self.start_s or sod < self.end_s


def time_window(column: str, window: TimeWindow) -> Predicate:
    holds = window.holds
    if column == "Timestamp":
        return lambda e: holds(e.ticks)

    def pred(e: Event) -> bool:
        v = e.props.get(column)
        if type(v) is not str:
            return False
        try:
            t = parse_ticks(v)
        except TimeParseError:
            return False
        return holds(t)

    return pred
