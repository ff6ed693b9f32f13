"""Exclusions: every operator and edge, list files, expiry, error messages, reloading."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.cli import USAGE_ERRORS
from stream.decode.events import Event
from stream.exclusions import ExclusionError, ExclusionsHolder, load_exclusions
from stream.exclusions.conditions import CidrSet, parse_ip, parse_network
from stream.exclusions.loader import list_file_values
from stream.metrics import Metrics
from stream.pipeline import Stats
from stream.timeutil import parse_ticks

RULE = "7253fc17-ed4b-4c54-9612-7ad48274c294"
OTHER = "0a1b2c3d-other-rule"
NOW = parse_ticks("2026-11-30T12:00:00Z")


def ev(ts: str = "2026-11-30T09:00:00.1234567Z", **props: Any) -> Event:
    p = {"Timestamp": ts, "DeviceId": "d1", "DeviceName": "pc-1", "ReportId": 1, **props}
    return Event(parse_ticks(ts), p, None, "DeviceNetworkEvents")


def write(tmp: Path, text: str, name: str = "exclusions.yaml") -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def load(tmp: Path, text: str, rule_ids: list[str] | None = None, now: int = NOW, **kw: Any):
    return load_exclusions(write(tmp, text), rule_ids or [RULE, OTHER], now=now, **kw)


def one(tmp: Path, when: str, extra: str = "", now: int = NOW):
    """An exclusions set with one exclusion named x: `when` is its YAML flow mapping."""
    return load(tmp, f"exclusions:\n  - name: x\n{extra}    when: {when}\n", now=now)


def hit(exset, event: Event, rule: str = RULE) -> bool:
    return exset.first_match(rule, event) == "x"


# -- in / not_in ----------------------------------------------------------------------------------


def test_in_strings_is_case_insensitive_exact(tmp_path):
    s = one(tmp_path, '{InitiatingProcessFileName: {in: ["CcmExec.exe", "ansible-runner.exe"]}}')
    assert hit(s, ev(InitiatingProcessFileName="CcmExec.exe"))
    assert hit(s, ev(InitiatingProcessFileName="ccmexec.EXE"))
    assert hit(s, ev(InitiatingProcessFileName="ANSIBLE-RUNNER.EXE"))
    assert not hit(s, ev(InitiatingProcessFileName="CcmExec.exe "))  # exact, not contains
    assert not hit(s, ev(InitiatingProcessFileName="xCcmExec.exe"))
    assert not hit(s, ev(InitiatingProcessFileName=None))
    assert not hit(s, ev())


def test_in_folds_ascii_only_like_the_rule_matcher(tmp_path):
    s = one(tmp_path, '{InitiatingProcessAccountUpn: {in: ["jörg@contoso.example"]}}')
    assert hit(s, ev(InitiatingProcessAccountUpn="JöRG@Contoso.Example"))
    assert not hit(s, ev(InitiatingProcessAccountUpn="JÖRG@contoso.example"))


def test_in_strings_null_is_empty_and_numbers_are_text(tmp_path):
    s = one(tmp_path, '{DeviceName: {in: ["", 12345]}}')
    assert hit(s, ev(DeviceName=None))
    assert hit(s, ev(DeviceName=""))
    assert hit(s, ev(DeviceName="12345"))
    assert not hit(s, ev(DeviceName="pc-1"))


def test_in_numbers_plain_equality(tmp_path):
    s = one(tmp_path, '{RemotePort: {in: [22, "443"]}}')
    assert hit(s, ev(RemotePort=22))
    assert hit(s, ev(RemotePort=443))
    assert hit(s, ev(RemotePort=443.0))
    assert not hit(s, ev(RemotePort="443"))  # a string is not a number
    assert not hit(s, ev(RemotePort=None))
    assert not hit(s, ev(RemotePort=3389))
    assert not hit(s, ev())


def test_in_bools(tmp_path):
    s = one(tmp_path, "{IsInitiatingProcessRemoteSession: {in: [true]}}")
    assert hit(s, ev(IsInitiatingProcessRemoteSession=True))
    assert not hit(s, ev(IsInitiatingProcessRemoteSession=False))
    assert not hit(s, ev(IsInitiatingProcessRemoteSession=1))
    assert not hit(s, ev())


def test_not_in(tmp_path):
    s = one(tmp_path, '{RemotePort: {not_in: [22]}, DeviceName: {not_in: ["pc-9"]}}')
    assert hit(s, ev(RemotePort=443))
    assert not hit(s, ev(RemotePort=22))
    assert not hit(s, ev(RemotePort=None))  # no number: not comparable, never holds
    assert not hit(s, ev(RemotePort=443, DeviceName="PC-9"))


def test_startswith_endswith(tmp_path):
    s = one(
        tmp_path,
        '{InitiatingProcessFolderPath: {startswith: ["C:\\\\Program Files\\\\Splashtop\\\\"]},'
        ' InitiatingProcessCommandLine: {endswith: [" -silent", " /q"]}}',
    )
    base = {"InitiatingProcessFolderPath": "c:\\program files\\splashtop\\srservice.exe"}
    assert hit(s, ev(**base, InitiatingProcessCommandLine="SRService.exe -SILENT"))
    assert hit(s, ev(**base, InitiatingProcessCommandLine="x /Q"))
    assert not hit(s, ev(**base, InitiatingProcessCommandLine="x /q2"))
    assert not hit(
        s, ev(InitiatingProcessFolderPath="D:\\Splashtop\\", InitiatingProcessCommandLine=" /q")
    )


# -- cidr -----------------------------------------------------------------------------------------


def test_cidr_ipv4_ipv6_mapped_and_non_ip(tmp_path):
    s = one(tmp_path, '{LocalIP: {cidr: ["10.50.0.0/16", "fd00:50::/32", "192.0.2.7"]}}')
    for ip in (
        "10.50.0.0",
        "10.50.1.2",
        "10.50.255.255",
        "::ffff:10.50.1.2",
        "::FFFF:10.50.0.1",
        "fd00:50::1",
        "FD00:50:FFFF::1",
        "fd00:50::1%eth0",
        "192.0.2.7",
        "::ffff:192.0.2.7",
    ):
        assert hit(s, ev(LocalIP=ip)), ip
    for ip in (
        "10.49.255.255",
        "10.51.0.0",
        "fd00:51::1",
        "192.0.2.8",
        "::10.50.1.2",
        "-",
        "",
        None,
        "10.50.1",
        "10.050.1.2",
        "10.50.1.2/32",
        "localhost",
        " 10.50.1.2",
        5,
        ["10.50.1.2"],
    ):
        assert not hit(s, ev(LocalIP=ip)), ip
    assert not hit(s, ev())


def test_not_cidr_needs_an_address(tmp_path):
    s = one(tmp_path, '{RemoteIP: {not_cidr: ["10.0.0.0/8"]}}')
    assert hit(s, ev(RemoteIP="198.51.100.1"))
    assert hit(s, ev(RemoteIP="2001:db8::1"))
    assert not hit(s, ev(RemoteIP="10.1.2.3"))
    assert not hit(s, ev(RemoteIP="::ffff:10.1.2.3"))
    assert not hit(s, ev(RemoteIP="-"))
    assert not hit(s, ev(RemoteIP=None))


def test_cidr_written_as_mapped_ipv6_is_ipv4(tmp_path):
    s = one(tmp_path, '{LocalIP: {cidr: ["::ffff:10.50.0.0/112"]}}')
    assert hit(s, ev(LocalIP="10.50.3.4"))
    assert hit(s, ev(LocalIP="::ffff:10.50.3.4"))
    assert not hit(s, ev(LocalIP="10.51.3.4"))
    assert parse_network("::ffff:10.50.0.0/112") == ipaddress.ip_network("10.50.0.0/16")


def test_cidr_set_merges_ranges():
    nets = [
        parse_network(n)
        for n in (
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "10.0.3.0/24",
            "0.0.0.0/32",
            "::/0",
        )
    ]
    cs = CidrSet(nets)
    assert cs.ranges(4) == [
        (0, 0),
        (int(ipaddress.ip_address("10.0.0.0")), int(ipaddress.ip_address("10.0.1.255"))),
        (int(ipaddress.ip_address("10.0.3.0")), int(ipaddress.ip_address("10.0.3.255"))),
    ]
    assert cs.ranges(6) == [(0, 2**128 - 1)]
    assert "10.0.1.255" in cs and "10.0.2.0" not in cs and "0.0.0.0" in cs
    assert "::1" in cs and "::ffff:10.0.2.1" not in cs  # mapped: judged as IPv4
    assert parse_ip("::ffff:1.2.3.4") == (4, 0x01020304)
    assert parse_ip("-") is None and parse_ip(None) is None


def _reference_ip(text: str) -> tuple[int, int] | None:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    if a.version == 6 and a.ipv4_mapped is not None:
        return (4, int(a.ipv4_mapped))
    return (a.version, int(a))


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="0123456789.", max_size=16),
        st.text(alphabet="0123456789abcdefABCDEF.:%x \t\u0663\x00", max_size=24),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
        st.tuples(
            *[
                st.sampled_from(
                    ["0", "00", "01", "1", "255", "256", "099", "1e1", "+1", " 1", "", "\u0663"]
                )
            ]
            * 4
        ).map(".".join),
        st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
        st.integers(0, 2**32 - 1).map(lambda i: f"::ffff:{ipaddress.IPv4Address(i)}"),
    )
)
def test_parse_ip_agrees_with_ipaddress(text):
    assert parse_ip(text) == _reference_ip(text)


_v4 = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_v6 = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
_addr = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
    st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))),
)


@settings(max_examples=200, deadline=None)
@given(nets=st.lists(st.one_of(_v4, _v6), max_size=12), addrs=st.lists(_addr, max_size=10))
def test_cidr_set_equals_a_loop_over_networks(nets, addrs):
    cs = CidrSet(nets)
    probes = list(addrs)
    for n in nets:  # the edges of every network and just outside them
        lo, hi = int(n.network_address), int(n.broadcast_address)
        for x in (lo - 1, lo, hi, hi + 1):
            if 0 <= x < (2**32 if n.version == 4 else 2**128):
                probes.append(
                    str(
                        ipaddress.ip_address(x)
                        if n.version == 6 or x >= 2**32
                        else ipaddress.IPv4Address(x)
                    )
                )
    for a in probes:
        ip = ipaddress.ip_address(a)
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        assert (a in cs) == any(ip in n for n in nets), a


# -- Timestamp ------------------------------------------------------------------------------------


def _ts(text: str) -> Event:
    return ev(ts=text)


def test_between_start_inclusive_end_exclusive_utc(tmp_path):
    s = one(tmp_path, '{Timestamp: {between: ["08:00", "18:00"]}}')
    assert hit(s, _ts("2026-11-30T08:00:00Z"))
    assert hit(s, _ts("2026-11-30T17:59:59.9999999Z"))
    assert not hit(s, _ts("2026-11-30T18:00:00Z"))
    assert not hit(s, _ts("2026-11-30T07:59:59.9999999Z"))


def test_between_wraps_past_midnight(tmp_path):
    s = one(tmp_path, '{Timestamp: {between: ["22:00", "06:00"]}}')
    for t in ("22:00:00", "23:59:59.9999999", "00:00:00", "05:59:59"):
        assert hit(s, _ts(f"2026-11-30T{t}Z")), t
    for t in ("06:00:00", "12:00:00", "21:59:59.9999999"):
        assert not hit(s, _ts(f"2026-11-30T{t}Z")), t


def test_between_seconds_and_24_00(tmp_path):
    s = one(tmp_path, '{Timestamp: {between: ["18:30:15", "24:00"]}}')
    assert not hit(s, _ts("2026-11-30T18:30:14.9999999Z"))
    assert hit(s, _ts("2026-11-30T18:30:15Z"))
    assert hit(s, _ts("2026-11-30T23:59:59.9999999Z"))
    assert not hit(s, _ts("2026-12-01T00:00:00Z"))


def test_weekdays_use_the_local_date(tmp_path):
    s = one(tmp_path, "{Timestamp: {weekdays: [mon], timezone: Europe/Berlin}}")
    assert hit(s, _ts("2026-11-29T23:30:00Z"))  # Sunday UTC, Monday 00:30 in Berlin
    assert not hit(s, _ts("2026-11-30T23:30:00Z"))  # Monday UTC, Tuesday in Berlin
    utc = one(tmp_path, "{Timestamp: {weekdays: [Monday]}}")
    assert not hit(utc, _ts("2026-11-29T23:30:00Z"))
    assert hit(utc, _ts("2026-11-30T23:30:00Z"))


def test_weekday_ranges(tmp_path):
    s = one(tmp_path, "{Timestamp: {weekdays: [fri-mon]}}")
    days = {d: hit(s, _ts(f"2026-11-{d:02d}T12:00:00Z")) for d in range(23, 30)}  # Mon..Sun
    assert days == {23: True, 24: False, 25: False, 26: False, 27: True, 28: True, 29: True}
    s2 = one(tmp_path, "{Timestamp: {weekdays: mon-fri}}")
    assert [hit(s2, _ts(f"2026-11-{d:02d}T12:00:00Z")) for d in range(23, 30)] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_dst_spring_forward_berlin_2026_03_29(tmp_path):
    s = one(tmp_path, '{Timestamp: {between: ["08:00", "18:00"], timezone: Europe/Berlin}}')
    # Saturday 28 March: CET, UTC+1.
    assert hit(s, _ts("2026-03-28T07:00:00Z")) and not hit(s, _ts("2026-03-28T06:59:59Z"))
    assert hit(s, _ts("2026-03-28T16:59:59Z")) and not hit(s, _ts("2026-03-28T17:00:00Z"))
    # Sunday 29 March: clocks go 02:00 -> 03:00 at 01:00 UTC; CEST, UTC+2 for the working day.
    assert hit(s, _ts("2026-03-29T06:00:00Z")) and not hit(s, _ts("2026-03-29T05:59:59Z"))
    assert hit(s, _ts("2026-03-29T15:59:59Z")) and not hit(s, _ts("2026-03-29T16:00:00Z"))
    # The local hour 02:00-03:00 does not exist that night: nothing falls in it.
    gap = one(tmp_path, '{Timestamp: {between: ["02:00", "03:00"], timezone: Europe/Berlin}}')
    assert not any(
        hit(gap, ev(ts=f"2026-03-29T{h:02d}:{m:02d}:00Z"))
        for h in range(24)
        for m in range(0, 60, 5)
    )
    assert hit(gap, _ts("2026-03-28T01:30:00Z"))  # the night before: 02:30 CET


def test_dst_fall_back_berlin_2026_10_25(tmp_path):
    s = one(tmp_path, '{Timestamp: {between: ["08:00", "18:00"], timezone: Europe/Berlin}}')
    # Saturday 24 October: CEST, UTC+2. Sunday 25 October after 01:00 UTC: CET, UTC+1.
    assert hit(s, _ts("2026-10-24T06:00:00Z")) and not hit(s, _ts("2026-10-24T05:59:59Z"))
    assert hit(s, _ts("2026-10-25T07:00:00Z")) and not hit(s, _ts("2026-10-25T06:59:59Z"))
    assert hit(s, _ts("2026-10-25T16:59:59Z")) and not hit(s, _ts("2026-10-25T17:00:00Z"))
    # The local hour 02:00-03:00 happens twice: 00:00-01:00 UTC (CEST) and 01:00-02:00 (CET).
    twice = one(tmp_path, '{Timestamp: {between: ["02:00", "03:00"], timezone: Europe/Berlin}}')
    assert not hit(twice, _ts("2026-10-24T23:59:59Z"))
    assert hit(twice, _ts("2026-10-25T00:00:00Z"))
    assert hit(twice, _ts("2026-10-25T00:59:59Z"))
    assert hit(twice, _ts("2026-10-25T01:00:00Z"))
    assert hit(twice, _ts("2026-10-25T01:59:59Z"))
    assert not hit(twice, _ts("2026-10-25T02:00:00Z"))


def test_weekdays_and_hours_together_in_a_zone(tmp_path):
    s = one(
        tmp_path,
        '{InitiatingProcessAccountUpn: {in: ["alice@contoso.example"]}, Timestamp: '
        '{weekdays: [mon, tue, wed, thu, fri], between: ["08:00", "18:00"], '
        "timezone: Europe/Berlin}}",
    )
    alice = {"InitiatingProcessAccountUpn": "Alice@Contoso.example"}
    assert hit(s, ev(ts="2026-11-30T07:00:00Z", **alice))  # Monday 08:00 CET
    assert not hit(s, ev(ts="2026-11-30T06:59:59Z", **alice))
    assert not hit(s, ev(ts="2026-11-28T10:00:00Z", **alice))  # Saturday
    assert not hit(s, ev(ts="2026-11-30T10:00:00Z", InitiatingProcessAccountUpn="bob@x"))


def test_time_condition_on_another_datetime_column(tmp_path):
    s = one(tmp_path, '{InitiatingProcessCreationTime: {between: ["00:00", "01:00"]}}')
    assert hit(s, ev(InitiatingProcessCreationTime="2026-11-20T00:30:00Z"))
    assert not hit(s, ev(InitiatingProcessCreationTime="2026-11-20T01:30:00Z"))
    assert not hit(s, ev(InitiatingProcessCreationTime="yesterday"))
    assert not hit(s, ev(InitiatingProcessCreationTime=None))


def test_unquoted_times_and_yes_are_strings(tmp_path):
    """YAML 1.1 reads 18:00 as 1080 and yes as true; the exclusions file uses YAML 1.2."""
    s = load(
        tmp_path,
        "exclusions:\n  - name: x\n    when:\n"
        "      Timestamp: {between: [08:00, 18:00]}\n"
        "      DeviceName: {in: [yes, on, 010]}\n",
    )
    assert hit(s, ev(ts="2026-11-30T17:00:00Z", DeviceName="YES"))
    assert hit(s, ev(ts="2026-11-30T17:00:00Z", DeviceName="10"))
    assert not hit(s, ev(ts="2026-11-30T18:00:00Z", DeviceName="on"))


# -- combining ------------------------------------------------------------------------------------


def test_every_condition_must_hold_any_exclusion_and_first_name_wins(tmp_path):
    s = load(
        tmp_path,
        """
exclusions:
  - name: network-devices
    when:
      RemotePort: {in: [22, 443]}
      RemoteIP: {cidr: ["192.0.2.0/24"]}
  - name: port-22
    when:
      RemotePort: {in: [22]}
""",
    )
    assert s.first_match(RULE, ev(RemotePort=443, RemoteIP="192.0.2.1")) == "network-devices"
    assert s.first_match(RULE, ev(RemotePort=22, RemoteIP="192.0.2.1")) == "network-devices"
    assert s.first_match(RULE, ev(RemotePort=22, RemoteIP="198.51.100.1")) == "port-22"
    assert s.first_match(RULE, ev(RemotePort=443, RemoteIP="198.51.100.1")) is None
    assert s.first_match(RULE, ev(RemotePort=80, RemoteIP="192.0.2.1")) is None


def test_rules_scope(tmp_path):
    s = load(
        tmp_path,
        f"""
exclusions:
  - name: only-other
    rules: [{OTHER}]
    when: {{DeviceName: {{in: [pc-1]}}}}
  - name: every-rule
    when: {{DeviceName: {{in: [pc-2]}}}}
""",
    )
    assert s.first_match(RULE, ev(DeviceName="pc-1")) is None
    assert s.first_match(OTHER, ev(DeviceName="pc-1")) == "only-other"
    assert s.first_match(RULE, ev(DeviceName="pc-2")) == "every-rule"
    assert s.first_match("a-rule-loaded-later", ev(DeviceName="pc-2")) == "every-rule"
    assert s.first_match("a-rule-loaded-later", ev(DeviceName="pc-1")) is None


def test_disabled_exclusion_does_not_apply(tmp_path):
    s = one(tmp_path, "{DeviceName: {in: [pc-1]}}", extra="    enabled: false\n")
    assert not hit(s, ev())
    assert "1 disabled" in s.describe()


def test_empty_files(tmp_path):
    for text in ("", "exclusions:\n", "exclusions: []\n", "# nothing yet\n"):
        s = load(tmp_path, text)
        assert len(s) == 0 and s.first_match(RULE, ev()) is None


# -- list files -----------------------------------------------------------------------------------


def test_list_files_relative_to_the_exclusions_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    write(
        conf,
        "# helpdesk\n\n10.50.0.0/16   # floor\n  fd00:50::/32\n\t# indented comment\n",
        "lists/ranges.txt",
    )
    write(
        conf,
        "\ufeffAlice@Contoso.example\nC#dev@contoso.example # a # in a value is kept\n",
        "lists/admins.txt",
    )
    write(conf, "22\n443 # https\n", "ports.txt")
    path = write(
        conf,
        """
exclusions:
  - name: x
    when:
      LocalIP: {cidr: ["192.0.2.0/24"], cidr_file: lists/ranges.txt}
      InitiatingProcessAccountUpn: {in_file: [lists/admins.txt]}
      RemotePort: {in_file: ports.txt}
""",
    )
    monkeypatch.chdir(tmp_path)  # not the exclusions file's folder
    s = load_exclusions(Path("conf/exclusions.yaml"), [RULE], now=NOW)
    good = {"InitiatingProcessAccountUpn": "alice@contoso.example", "RemotePort": 443}
    for ip in ("10.50.1.1", "fd00:50::9", "192.0.2.200"):
        assert s.first_match(RULE, ev(LocalIP=ip, **good)) == "x"
    assert s.first_match(RULE, ev(LocalIP="10.51.0.1", **good)) is None
    assert (
        s.first_match(
            RULE,
            ev(
                LocalIP="10.50.0.1",
                RemotePort=22,
                InitiatingProcessAccountUpn="c#dev@contoso.example",
            ),
        )
        == "x"
    )
    assert (
        s.first_match(
            RULE,
            ev(
                LocalIP="10.50.0.1",
                RemotePort=80,
                InitiatingProcessAccountUpn="alice@contoso.example",
            ),
        )
        is None
    )
    assert {p.name for p, _ in s.files} == {
        "exclusions.yaml",
        "ranges.txt",
        "admins.txt",
        "ports.txt",
    }
    assert path.exists()


def test_list_file_values():
    assert list_file_values("a\n\n # c\nb # d\n\tc\t#e\nx#y\n") == [
        (1, "a"),
        (4, "b"),
        (5, "c"),
        (6, "x#y"),
    ]


def test_empty_list_file_is_allowed_and_matches_nothing(tmp_path, caplog):
    write(tmp_path, "# nobody yet\n", "admins.txt")
    with caplog.at_level(logging.WARNING, "rmm_stream"):
        s = one(tmp_path, "{InitiatingProcessAccountUpn: {in_file: admins.txt}}")
    assert not hit(s, ev(InitiatingProcessAccountUpn=""))
    assert "holds no values" in caplog.text


# -- expiry ---------------------------------------------------------------------------------------


def test_expires_applies_through_the_date_utc(tmp_path):
    text = (
        "exclusions:\n  - name: x\n    expires: 2027-06-30\n    when: {DeviceName: {in: [pc-1]}}\n"
    )
    last_day = load(tmp_path, text, now=parse_ticks("2027-06-30T23:59:59.9999999Z"))
    assert last_day.first_match(RULE, ev()) == "x" and last_day.expired == []
    after = load(tmp_path, text, now=parse_ticks("2027-07-01T00:00:00Z"))
    assert after.first_match(RULE, ev()) is None
    assert [e.name for e in after.expired] == ["x"]


def test_expired_is_reported_at_start(tmp_path, caplog):
    text = (
        "exclusions:\n"
        "  - {name: old, owner: a@x, expires: '2026-01-31', when: {DeviceName: {in: [a]}}}\n"
        "  - {name: older, expires: 2025-12-31, when: {DeviceName: {in: [b]}}}\n"
        "  - {name: current, expires: 2027-01-01, when: {DeviceName: {in: [c]}}}\n"
    )
    m = Metrics()
    with caplog.at_level(logging.INFO, "rmm_stream"):
        s = load(tmp_path, text, metrics=m)
    assert [e.name for e in s.expired] == ["old", "older"]
    assert m.registry.get_sample_value("rmm_stream_exclusions_expired") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'old' expired on 2026-01-31" in w and "a@x" in w for w in warnings)
    assert any("'older' expired on 2025-12-31" in w for w in warnings)
    assert s.first_match(RULE, ev(DeviceName="a")) is None
    assert s.first_match(RULE, ev(DeviceName="c")) == "current"


def test_holder_judges_expiry_again(tmp_path, caplog):
    path = write(
        tmp_path,
        "exclusions:\n  - name: x\n    expires: 2026-11-30\n    when: {DeviceName: {in: [pc-1]}}\n",
    )
    clock = [NOW]
    m = Metrics()
    h = ExclusionsHolder(path, [RULE], metrics=m, clock=lambda: clock[0])
    assert h.first_match(RULE, ev()) == "x"
    assert m.registry.get_sample_value("rmm_stream_exclusions_expired") == 0
    clock[0] = parse_ticks("2026-12-01T00:00:00Z")
    with caplog.at_level(logging.WARNING, "rmm_stream"):
        h.check_expiry()
    assert h.first_match(RULE, ev()) is None
    assert m.registry.get_sample_value("rmm_stream_exclusions_expired") == 1
    assert "'x' expired on 2026-11-30" in caplog.text


# -- errors ---------------------------------------------------------------------------------------

ERRORS = [
    # (YAML, expected fragments after "<file>: ")
    (
        "exclusions:\n  - name: hd\n    owner: a\n    whn: {}\n",
        ["exclusions[0] (hd): whn: unknown field", "did you mean 'when'?"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {LocalIP: {cidrs: [10.0.0.0/8]}}\n",
        ["exclusions[0] (hd): when.LocalIP.cidrs: unknown operator", "did you mean 'cidr'?"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {RemotePort: {cidr: [10.0.0.0/8]}}\n",
        ["exclusions[0] (hd): when.RemotePort.cidr: unknown operator", "number column"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {in: [a]}}\n",
        ["exclusions[0] (hd): when.Timestamp.in: unknown operator", "weekdays, between, timezone"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {DeviceName: {weekdays: [mon]}}\n",
        ["exclusions[0] (hd): when.DeviceName.weekdays:", "datetime columns"],
    ),
    (
        "exclusions:\n  - name: ok\n    when: {DeviceName: {in: [a]}}\n"
        "  - name: hd\n    when: {LocalIP: {cidr: ['10.50.0.0/33']}}\n",
        ["exclusions[1] (hd): when.LocalIP.cidr: invalid CIDR", "'10.50.0.0/33'"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {LocalIP: {cidr: ['10.50.1.0/16']}}\n",
        ["when.LocalIP.cidr: invalid CIDR", "host bits set", "10.50.0.0/16"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {LocalIP: {not_cidr: ['fd00::zz/8']}}\n",
        ["exclusions[0] (hd): when.LocalIP.not_cidr: invalid CIDR", "fd00::zz/8"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {LocalIP: {cidr: [-]}}\n",
        ["when.LocalIP.cidr: invalid CIDR"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['08:00', '18:00'], "
        "timezone: Europe/Berln}}\n",
        [
            "exclusions[0] (hd): when.Timestamp.timezone: unknown time zone 'Europe/Berln'",
            "did you mean 'Europe/Berlin'?",
        ],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {weekdays: [mon], timezone: CEST}}\n",
        ["when.Timestamp.timezone: unknown time zone 'CEST'", "abbreviation"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {weekdays: [mon], timezone: ../etc}}\n",
        ["when.Timestamp.timezone: unknown time zone '../etc'"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['8am', '18:00']}}\n",
        ["exclusions[0] (hd): when.Timestamp.between: malformed time '8am'", "HH:MM"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['08:00', '25:00']}}\n",
        ["when.Timestamp.between: malformed time '25:00'"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['08:60', '18:00']}}\n",
        ["when.Timestamp.between: malformed time '08:60'"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['24:00', '06:00']}}\n",
        ["when.Timestamp.between: malformed time '24:00'", "only end"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: [480, 1080]}}\n",
        ["when.Timestamp.between: malformed time 480"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['08:00']}}\n",
        ["when.Timestamp.between: must be [start, end]"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {between: ['08:00', '08:00']}}\n",
        ["when.Timestamp.between: start and end are equal"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {weekdays: [mon, funday]}}\n",
        ["when.Timestamp.weekdays: 'funday' is not a day"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {Timestamp: {timezone: Europe/Berlin}}\n",
        ["exclusions[0] (hd): when.Timestamp: needs weekdays and/or between"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {LocalIp: {cidr: [10.0.0.0/8]}}\n",
        ["exclusions[0] (hd): when.LocalIp: unknown column", "did you mean 'LocalIP'?"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {RemotePort: {in: [https]}}\n",
        ["when.RemotePort.in: 'https' is not an integer"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {DeviceName: {in: [true]}}\n",
        ["when.DeviceName.in: True", "strings"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {DeviceName: {in: []}}\n",
        ["when.DeviceName.in: needs a value"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {DeviceName: {startswith: ['']}}\n",
        ["when.DeviceName.startswith: an empty startswith value would match every event"],
    ),
    (
        "exclusions:\n  - name: hd\n    when: {DeviceName: [a]}\n",
        ["when.DeviceName: must map operators to values"],
    ),
    ("exclusions:\n  - name: hd\n", ["exclusions[0] (hd): when: missing"]),
    ("exclusions:\n  - name: hd\n    when: {}\n", ["exclusions[0] (hd): when: must map", "every"]),
    ("exclusions:\n  - when: {DeviceName: {in: [a]}}\n", ["exclusions[0]: name: missing"]),
    (
        "exclusions:\n  - name: IT helpdesk\n    when: {DeviceName: {in: [a]}}\n",
        ["exclusions[0] (IT helpdesk): name: 'IT helpdesk': use 1-64 letters"],
    ),
    (
        "exclusions:\n  - name: a\n    when: {DeviceName: {in: [a]}}\n"
        "  - name: a\n    when: {DeviceName: {in: [b]}}\n",
        ["exclusions[1] (a): name: 'a' already used by exclusions[0]"],
    ),
    (
        "exclusions:\n  - name: a\n    rules: [no-such-rule]\n    when: {DeviceName: {in: [a]}}\n",
        ["exclusions[0] (a): rules: no loaded rule has id 'no-such-rule'", RULE],
    ),
    (
        "exclusions:\n  - name: a\n    expires: 30.06.2027\n    when: {DeviceName: {in: [a]}}\n",
        ["exclusions[0] (a): expires: must be a date, e.g. 2027-06-30"],
    ),
    (
        "exclusions:\n  - name: a\n    expires: 2027-06-30T12:00:00Z\n"
        "    when: {DeviceName: {in: [a]}}\n",
        ["exclusions[0] (a): expires: a date without a time"],
    ),
    (
        "exclusions:\n  - name: a\n    enabled: maybe\n    when: {DeviceName: {in: [a]}}\n",
        ["exclusions[0] (a): enabled: must be true or false"],
    ),
    ("exclusions:\n  - just-a-string\n", ["exclusions[0]: an exclusion must be a mapping"]),
    ("exclusion:\n  - name: a\n", ["exclusion: unknown key"]),
    ("exclusions: {name: a}\n", ["exclusions: must be a list"]),
    ("- name: a\n", ["must be a mapping with the key 'exclusions'"]),
    ("exclusions:\n  - name: a\n    when: {DeviceName: {in: [a]\n", ["invalid YAML: line"]),
    (
        "exclusions:\n  - name: a\n    when:\n      LocalIP: {cidr: [10.0.0.0/8]}\n"
        "      LocalIP: {in: [x]}\n",
        ["invalid YAML: line 5, column 7: found key 'LocalIP' twice"],
    ),
    (
        "exclusions:\n  - name: a\n    when: {LocalIP: {cidr_file: missing.txt}}\n",
        ["exclusions[0] (a): when.LocalIP.cidr_file: cannot read list file missing.txt"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), ERRORS)
def test_error_messages_name_file_exclusion_and_key(tmp_path, text, fragments):
    with pytest.raises(ExclusionError) as ei:
        load(tmp_path, text, rule_ids=[RULE])
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path / 'exclusions.yaml'}: "), msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert "\n" not in msg


def test_error_in_a_list_file_names_file_and_line(tmp_path):
    write(tmp_path, "10.0.0.0/8\n# ok\n10.0.0.300/32\n", "ranges.txt")
    with pytest.raises(ExclusionError) as ei:
        one(tmp_path, "{LocalIP: {cidr_file: ranges.txt}}")
    msg = str(ei.value)
    assert "exclusions[0] (x): when.LocalIP.cidr_file: ranges.txt line 3: invalid CIDR" in msg
    assert "10.0.0.300/32" in msg
    write(tmp_path, "22\nssh\n", "ports.txt")
    with pytest.raises(
        ExclusionError, match=r"when.RemotePort.in_file: ports.txt line 2: 'ssh' is not an integer"
    ):
        one(tmp_path, "{RemotePort: {in_file: ports.txt}}")


def test_unreadable_file(tmp_path):
    with pytest.raises(ExclusionError, match="cannot read exclusions file"):
        load_exclusions(tmp_path / "nope.yaml", [RULE])
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ExclusionError, match="not UTF-8"):
        load_exclusions(tmp_path / "bin.yaml", [RULE])


def test_exclusion_error_is_a_usage_error():
    assert issubclass(ExclusionError, ValueError)
    assert issubclass(ExclusionError, USAGE_ERRORS)  # exit 2 with a one-line message


# -- reloading ------------------------------------------------------------------------------------

GOOD = "exclusions:\n  - name: {name}\n    when: {{DeviceName: {{in: [pc-1]}}}}\n"


def reloads(m: Metrics, result: str) -> float:
    return (
        m.registry.get_sample_value("rmm_stream_exclusions_reloads_total", {"result": result}) or 0
    )


def test_reload_swaps_and_refuses_a_bad_file(tmp_path, caplog):
    path = write(tmp_path, GOOD.format(name="first"))
    m = Metrics()
    h = ExclusionsHolder(path, [RULE], metrics=m, clock=lambda: NOW)
    assert h.first_match(RULE, ev()) == "first"
    path.write_text(GOOD.format(name="second"))
    assert h.reload() is True
    assert h.first_match(RULE, ev()) == "second"
    assert reloads(m, "ok") == 1
    path.write_text("exclusions:\n  - name: third\n    when: {LocalIP: {cidr: [10.0.0.0/33]}}\n")
    with caplog.at_level(logging.ERROR, "rmm_stream"):
        assert h.reload() is False
    assert h.first_match(RULE, ev()) == "second"  # the old set stays
    assert reloads(m, "error") == 1
    assert "reload refused" in caplog.text and "when.LocalIP.cidr" in caplog.text
    path.unlink()
    assert h.reload() is False and h.first_match(RULE, ev()) == "second"
    assert reloads(m, "error") == 2


def _configmap(root: Path, version: str, files: dict[str, str]) -> None:
    """Lay out files the way the kubelet projects a ConfigMap, and swap ..data atomically."""
    d = root / f"..{version}"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(d.name)
    os.replace(tmp, root / "..data")
    for name in files:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def test_watch_follows_a_configmap_symlink_swap(tmp_path):
    root = tmp_path / "etc"
    root.mkdir()
    _configmap(root, "2026_11_30_1", {"exclusions.yaml": GOOD.format(name="v1")})
    m = Metrics()
    h = ExclusionsHolder(root / "exclusions.yaml", [RULE], metrics=m, clock=lambda: NOW)
    assert not h.changed()

    async def go():
        task = asyncio.create_task(h.watch(0.01))
        try:
            await asyncio.sleep(0.05)
            assert h.first_match(RULE, ev()) == "v1" and reloads(m, "ok") == 0
            _configmap(root, "2026_11_30_2", {"exclusions.yaml": GOOD.format(name="v2")})
            for _ in range(200):
                await asyncio.sleep(0.01)
                if h.first_match(RULE, ev()) == "v2":
                    break
            assert h.first_match(RULE, ev()) == "v2"
            assert reloads(m, "ok") == 1
            await asyncio.sleep(0.05)
            assert reloads(m, "ok") == 1  # no change, no reload
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())


def test_a_changed_list_file_triggers_a_reload(tmp_path):
    write(tmp_path, "10.50.0.0/16\n", "ranges.txt")
    path = write(
        tmp_path, "exclusions:\n  - name: x\n    when: {LocalIP: {cidr_file: ranges.txt}}\n"
    )
    m = Metrics()
    h = ExclusionsHolder(path, [RULE], metrics=m, clock=lambda: NOW)
    assert h.first_match(RULE, ev(LocalIP="10.50.0.1")) == "x"
    assert set(h.watched) == {path, tmp_path / "ranges.txt"}
    write(tmp_path, "10.50.0.0/16\n10.60.0.0/16\n", "ranges.txt")
    assert h.changed()
    assert h.reload() and not h.changed()
    assert h.first_match(RULE, ev(LocalIP="10.60.0.1")) == "x"


def test_a_missing_list_file_is_retried_once_it_appears(tmp_path):
    path = write(tmp_path, GOOD.format(name="v1"))
    m = Metrics()
    h = ExclusionsHolder(path, [RULE], metrics=m, clock=lambda: NOW)
    path.write_text("exclusions:\n  - name: v2\n    when: {LocalIP: {cidr_file: new.txt}}\n")
    assert h.changed() and h.reload() is False
    assert not h.changed()  # nothing changed since the failed attempt: no retry loop
    write(tmp_path, "10.0.0.0/8\n", "new.txt")
    assert h.changed()
    assert h.reload() is True
    assert h.first_match(RULE, ev(LocalIP="10.1.1.1")) == "v2"


def test_sighup_reloads(tmp_path):
    path = write(tmp_path, GOOD.format(name="v1"))
    h = ExclusionsHolder(path, [RULE], clock=lambda: NOW)

    async def go():
        h.install_sighup()
        path.write_text(GOOD.format(name="v2"))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if h.first_match(RULE, ev()) == "v2":
                break
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    asyncio.run(go())
    assert h.first_match(RULE, ev()) == "v2"


def test_holder_refuses_a_bad_file_at_start(tmp_path):
    path = write(tmp_path, "exclusions:\n  - name: x\n    when: {Nope: {in: [a]}}\n")
    with pytest.raises(ExclusionError, match=r"when\.Nope: unknown column"):
        ExclusionsHolder(path, [RULE])


# -- stats ----------------------------------------------------------------------------------------


def test_stats_line_lists_excluded_per_rule_and_exclusion():
    st_ = Stats()
    st_.excluded[(RULE, "helpdesk")] += 3
    st_.excluded[(RULE, "patching")] += 1
    line = st_.line()
    assert f"excluded=4({RULE}/helpdesk=3,{RULE}/patching=1)" in line
    assert " excluded=0 " in Stats().line()


def test_date_expiry_boundary_helper():
    from stream.exclusions.model import Exclusion

    e = Exclusion("x", None, (), expires=dt.date(2027, 6, 30))
    assert not e.expired_at(parse_ticks("2027-06-30T23:59:59.9999999Z"))
    assert e.expired_at(parse_ticks("2027-07-01T00:00:00Z"))
