"""The five seed false-positive scenarios end to end through `rmm-stream replay`, with the example
exclusions file (config/exclusions.example.yaml), checked against the brute-force evaluators."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from stream.cli import main
from tests import oracle
from tests.oracle_exclusions import filter_messages

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "exclusions.example.yaml"
RULES = ROOT / "config" / "rules"
RULE = "7253fc17-ed4b-4c54-9612-7ad48274c294"
TENANT = "7c0a9e51-3b1f-4d52-9a55-0b8f2d6a1e01"
AS_OF = "2026-11-30T12:00:00Z"
MONDAY = "2026-11-30T09:00:00.1234567Z"  # 10:00 in Berlin

_report = iter(range(355_000, 10**9))


def props(device: str, ts: str = MONDAY, **over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "Timestamp": ts,
        "DeviceId": hashlib.sha1(device.encode()).hexdigest(),
        "DeviceName": f"{device}.contoso.example",
        "ActionType": "ConnectionSuccess",
        "RemoteIP": "3.120.181.74",
        "RemotePort": 443,
        "RemoteUrl": "st2-v3-dc.relay.splashtop.com",
        "LocalIP": "192.168.20.17",
        "LocalPort": 50432,
        "Protocol": "Tcp",
        "LocalIPType": "Private",
        "RemoteIPType": "Public",
        "InitiatingProcessFileName": "SRService.exe",
        "InitiatingProcessFolderPath": "c:\\program files (x86)\\splashtop\\splashtop remote\\"
        "server\\srservice.exe",
        "InitiatingProcessVersionInfoCompanyName": "Splashtop Inc.",
        "InitiatingProcessVersionInfoProductName": "Splashtop Streamer",
        "InitiatingProcessParentFileName": "services.exe",
        "InitiatingProcessAccountDomain": "nt authority",
        "InitiatingProcessAccountName": "system",
        "InitiatingProcessAccountUpn": None,
        "ReportId": next(_report),
    }
    p.update(over)
    return p


def body(*rows: dict[str, Any]) -> dict[str, Any]:
    return {
        "records": [
            {
                "time": r["Timestamp"],
                "tenantId": TENANT,
                "operationName": "Publish",
                "category": "AdvancedHunting-DeviceNetworkEvents",
                "properties": r,
            }
            for r in rows
        ]
    }


# (device, overrides, the exclusion expected to remove it or None)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("control", {}, None),
    # 1. helpdesk ranges (inline and from samples/exclusions/helpdesk-ranges.txt) / admin devices
    ("hd-inline", {"LocalIP": "10.50.3.4"}, "helpdesk"),
    ("hd-file-vpn", {"LocalIP": "10.51.9.1"}, "helpdesk"),
    ("hd-mapped", {"LocalIP": "::ffff:10.50.200.1"}, "helpdesk"),
    ("hd-v6", {"LocalIP": "fd00:50:1::17"}, "helpdesk"),
    ("hd-miss", {"LocalIP": "10.52.0.1"}, None),
    ("hd-not-ip", {"LocalIP": "-"}, None),
    ("adm", {"DeviceName": "ADM-WS-01.contoso.example"}, "admin-workstations"),
    ("adm-miss", {"DeviceName": "adm-ws-03.contoso.example"}, None),
    # 2. patch management: the process itself, or the Splashtop process's parent
    ("patch", {"InitiatingProcessFileName": "ccmexec.exe"}, "patching"),
    ("patch-parent", {"InitiatingProcessParentFileName": "Ansible-Runner.exe"}, "patching-parent"),
    ("patch-miss", {"InitiatingProcessFileName": "CcmExec2.exe"}, None),
    # 3. a management port AND a network device
    ("netdev", {"RemotePort": 22, "RemoteIP": "192.0.2.10"}, "network-devices"),
    ("netdev-v6", {"RemotePort": 443, "RemoteIP": "2001:db8:0:1::1"}, "network-devices"),
    ("netdev-port-miss", {"RemotePort": 3389, "RemoteIP": "192.0.2.10"}, None),
    ("netdev-ip-miss", {"RemotePort": 22, "RemoteIP": "198.18.0.1"}, None),
    # 4. a cloud / VPS range AND a known cloud admin (samples/exclusions/cloud-admins.txt)
    (
        "cloud",
        {"RemoteIP": "198.51.100.23", "InitiatingProcessAccountUpn": "Carol@Contoso.example"},
        "cloud-admins",
    ),
    (
        "cloud-user-miss",
        {"RemoteIP": "198.51.100.23", "InitiatingProcessAccountUpn": "eve@x"},
        None,
    ),
    (
        "cloud-ip-miss",
        {"RemoteIP": "203.0.113.200", "InitiatingProcessAccountUpn": "carol@contoso.example"},
        None,
    ),
    # 5. a known employee in their remote hours (Europe/Berlin; a New York night shift)
    ("alice", {"InitiatingProcessAccountUpn": "alice@contoso.example"}, "remote-hours"),
    (
        "alice-sat",
        {
            "InitiatingProcessAccountUpn": "alice@contoso.example",
            "Timestamp": "2026-11-28T10:00:00.5Z",
        },
        None,
    ),
    (
        "alice-late",
        {
            "InitiatingProcessAccountUpn": "alice@contoso.example",
            "Timestamp": "2026-11-27T17:00:00Z",
        },
        None,
    ),  # Fri 18:00 Berlin: end exclusive
    (
        "alice-early",
        {
            "InitiatingProcessAccountUpn": "alice@contoso.example",
            "Timestamp": "2026-11-30T07:00:00Z",
        },
        "remote-hours",
    ),  # 08:00: inclusive
    (
        "bob-night",
        {"InitiatingProcessAccountUpn": "bob@contoso.example", "Timestamp": "2026-11-27T04:00:00Z"},
        "night-shift",
    ),  # Thu 23:00 New York
    (
        "bob-sunday",
        {"InitiatingProcessAccountUpn": "bob@contoso.example", "Timestamp": "2026-11-30T04:00:00Z"},
        None,
    ),  # Sun 23:00 New York
]


def write_input(tmp: Path) -> tuple[Path, list[bytes]]:
    rows = [props(dev, **over) for dev, over, _ in CASES]
    # Two cases per message, plus a message of another table and one that does not match.
    other = {
        "records": [
            {
                "time": MONDAY,
                "tenantId": TENANT,
                "operationName": "Publish",
                "category": "AdvancedHunting-DeviceProcessEvents",
                "properties": {"Timestamp": MONDAY, "ReportId": 1},
            }
        ]
    }
    nomatch = body(props("plain", RemoteUrl="www.example.com", LocalIP="10.50.0.1"))
    lines = [json.dumps(body(*rows[i : i + 2])).encode() for i in range(0, len(rows), 2)]
    lines += [json.dumps(other).encode(), json.dumps(nomatch).encode()]
    path = tmp / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def replay(tmp: Path, *extra: str, as_of: str = AS_OF) -> tuple[int, dict[str, Path]]:
    out = {k: tmp / f"{k}.jsonl" for k in ("alerts", "summary", "excluded")}
    rc = main(
        [
            "replay",
            "--rules",
            str(RULES),
            "--as-of",
            as_of,
            "--alerts",
            str(out["alerts"]),
            "--summary",
            str(out["summary"]),
            "--excluded",
            str(out["excluded"]),
            *extra,
        ]
    )
    return rc, out


def jsonl(p: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def test_five_seed_scenarios_end_to_end(tmp_path, capsys):
    events, lines = write_input(tmp_path)
    rc, out = replay(tmp_path, "--exclusions", str(EXAMPLE), str(events))
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = jsonl(out["summary"])
    excluded = jsonl(out["excluded"])
    names = {c[0]: c[2] for c in CASES}
    kept = {d for d, _, x in CASES if x is None}

    by_id = {props(d, **o)["DeviceId"]: d for d, o, _ in CASES}
    assert {by_id[r["DeviceId"]] for r in summary} == kept
    assert all(r["RuleId"] == RULE and r["Count"] == 1 for r in summary)
    got = {by_id[d["Record"]["DeviceId"]]: d["Exclusion"] for d in excluded}
    assert got == {d: x for d, x in names.items() if x is not None}
    for d in excluded:
        assert d["RuleId"] == RULE
        assert d["Source"].startswith(f"{events}:")
        assert d["Record"]["RemoteUrl"] == "st2-v3-dc.relay.splashtop.com"
    # Excluded events never enter the window: no alert for them either.
    alerted = {by_id[a["DeviceId"]] for a in jsonl(out["alerts"])}
    assert alerted <= kept and "control" in alerted

    # The final stats line lists the excluded counts per rule and exclusion.
    stats = [x for x in err.splitlines() if x.startswith("rmm-stream: messages=")][-1]
    counts: dict[str, int] = {}
    for x in names.values():
        if x:
            counts[x] = counts.get(x, 0) + 1
    detail = ",".join(f"{RULE}/{k}={v}" for k, v in sorted(counts.items()))
    assert f"excluded={sum(counts.values())}({detail})" in stats
    assert f"matched={len(CASES)}" in stats

    # And the brute-force evaluators agree.
    data = yaml.safe_load(EXAMPLE.read_text())
    filtered, ocounts = filter_messages(lines, data, RULE, oracle.ticks(AS_OF), EXAMPLE.parent)
    assert ocounts == counts
    assert [{k: v for k, v in r.items() if k != "RuleId"} for r in summary] == oracle.evaluate(
        filtered, oracle.ticks(AS_OF)
    )


def test_without_exclusions_everything_is_in_the_table(tmp_path, capsys):
    events, _ = write_input(tmp_path)
    rc, out = replay(tmp_path, str(events))
    assert rc == 0
    assert len(jsonl(out["summary"])) == len(CASES)
    assert jsonl(out["excluded"]) == []
    assert " excluded=0 " in capsys.readouterr().err


def test_exclusions_from_the_config_file(tmp_path, capsys):
    events, _ = write_input(tmp_path)
    conf = tmp_path / "config.yaml"
    conf.write_text(f"exclusions: {EXAMPLE}\n")
    rc, out = replay(tmp_path, "--config", str(conf), str(events))
    assert rc == 0, capsys.readouterr().err
    assert len(jsonl(out["excluded"])) == sum(1 for c in CASES if c[2])


def test_expired_exclusion_stops_and_is_reported(tmp_path, capsys):
    """cloud-admins expires 2027-03-31: replayed with now() on 2027-04-01 it no longer applies."""
    events, _ = write_input(tmp_path)
    # The same events, three months later: move now() and every event by the same amount.
    shifted = events.read_text().replace("2026-11-", "2027-03-").replace("2027-03-30", "2027-04-01")
    events.write_text(shifted)
    rc, out = replay(
        tmp_path, "--exclusions", str(EXAMPLE), str(events), as_of="2027-04-01T12:00:00Z"
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "exclusion 'cloud-admins' expired on 2027-03-31 and no longer applies" in err
    assert "cloud-platform@contoso.example" in err
    names = {d["Exclusion"] for d in jsonl(out["excluded"])}
    assert "cloud-admins" not in names and "helpdesk" in names
    cloud_id = props("cloud")["DeviceId"]
    assert cloud_id in {r["DeviceId"] for r in jsonl(out["summary"])}


def test_a_bad_exclusions_file_exits_2(tmp_path, capsys):
    events, _ = write_input(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "exclusions:\n  - name: helpdesk\n    when:\n      LocalIP: {cidr: ['10.50.0.0/33']}\n"
    )
    rc, out = replay(tmp_path, "--exclusions", str(bad), str(events))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines()[-1] == (
        f"rmm-stream: error: {bad}: exclusions[0] (helpdesk): when.LocalIP.cidr: invalid CIDR: "
        "'10.50.0.0/33' is not an IPv4 network: '33' is not a valid netmask"
    )
    assert not out["summary"].exists()


def test_example_copied_elsewhere_needs_its_list_files(tmp_path, capsys):
    """List files are resolved relative to the exclusions file, not the working directory."""
    events, _ = write_input(tmp_path)
    copy = tmp_path / "conf" / "exclusions.yaml"
    copy.parent.mkdir()
    shutil.copy(EXAMPLE, copy)
    rc, _ = replay(tmp_path, "--exclusions", str(copy), str(events))
    err = capsys.readouterr().err
    assert rc == 2
    assert "helpdesk-ranges.txt" in err and "when.LocalIP.cidr_file: cannot read list file" in err
    samples = tmp_path / "samples" / "exclusions"
    shutil.copytree(ROOT / "samples" / "exclusions", samples)
    rc, _ = replay(tmp_path, "--exclusions", str(copy), str(events))
    assert rc == 0, capsys.readouterr().err
