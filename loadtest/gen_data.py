#!/usr/bin/env python3
"""Generate a realistic Defender stream for benchmarks: JSON Lines, one Event Hubs message per line.

    python loadtest/gen_data.py --records 250000 --per-message 100 --match-rate 0.001 OUT

Records are ~2 KB DeviceNetworkEvents rows (with a few other tables mixed in) shaped like the real
stream: envelope, long command lines and paths, AdditionalFields as a JSON string. A fraction
--match-rate are Splashtop connections the seed rule matches; as many again are look-alikes
(notsplashtop.com, company SplashtopInc) that reach the decoder but must not match.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PROCS = [
    (
        "msedge.exe",
        "Microsoft Corporation",
        "c:\\program files (x86)\\microsoft\\edge\\application\\msedge.exe",
    ),
    ("svchost.exe", "Microsoft Corporation", "c:\\windows\\system32\\svchost.exe"),
    (
        "teams.exe",
        "Microsoft Corporation",
        "c:\\users\\d.okafor\\appdata\\local\\microsoft\\teams\\current\\teams.exe",
    ),
    ("chrome.exe", "Google LLC", "c:\\program files\\google\\chrome\\application\\chrome.exe"),
    (
        "OneDrive.exe",
        "Microsoft Corporation",
        "c:\\users\\d.okafor\\appdata\\local\\microsoft\\onedrive\\onedrive.exe",
    ),
]
URLS = [
    "login.microsoftonline.com",
    "www.bing.com",
    "outlook.office365.com",
    None,
    None,
    "https://portal.fabrikam.example/sign-in?next=%2F",
    "edge.microsoft.com",
    "clients4.google.com",
]


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}" + "1Z"


def network(rnd: random.Random, i: int, kind: str) -> dict:
    dev = rnd.randrange(2000)
    t = BASE - timedelta(seconds=rnd.uniform(0, 4 * 86400))
    proc, company, path = rnd.choice(PROCS)
    url = rnd.choice(URLS)
    if kind == "match":
        proc, company = "SRService.exe", "Splashtop Inc."
        path = "c:\\program files (x86)\\splashtop\\splashtop remote\\server\\srservice.exe"
        url = rnd.choice(["st2-v3-dc.relay.splashtop.com", "relay-eu.splashtop.eu"])
    elif kind == "near":
        proc, company = "updater.exe", rnd.choice(["SplashtopInc", "Splashtop Inc."])
        url = "cdn.notsplashtop.com"
    props = {
        "Timestamp": stamp(t),
        "DeviceId": f"{dev:040x}",
        "DeviceName": f"lt-{dev:04d}.fabrikam.example",
        "ActionType": rnd.choice(["ConnectionSuccess", "ConnectionFailed", "ConnectionAttempt"]),
        "RemoteIP": f"198.51.{rnd.randrange(256)}.{rnd.randrange(256)}",
        "RemotePort": 443,
        "RemoteIPType": "Public",
        "RemoteUrl": url,
        "LocalIP": f"10.20.{dev % 256}.{dev // 256}",
        "LocalPort": rnd.randrange(49152, 65535),
        "LocalIPType": "Private",
        "Protocol": "TcpV4",
        "InitiatingProcessFileName": proc,
        "InitiatingProcessFolderPath": path,
        "InitiatingProcessCommandLine": f'"{proc}" --type=utility --utility-sub-type=network.mojom.'
        f"NetworkService --lang=en-US --service-sandbox-type=none --mojo-platform-channel-handle="
        f"{rnd.randrange(10**6)} --field-trial-handle={rnd.randrange(10**9)},i,"
        f"{rnd.randrange(10**18)},{rnd.randrange(10**18)},262144 /prefetch:3",
        "InitiatingProcessVersionInfoCompanyName": company,
        "InitiatingProcessVersionInfoProductName": proc.split(".")[0].title(),
        "InitiatingProcessVersionInfoProductVersion": "131.0.2903.86",
        "InitiatingProcessVersionInfoInternalFileName": proc,
        "InitiatingProcessVersionInfoOriginalFileName": proc,
        "InitiatingProcessVersionInfoFileDescription": proc.split(".")[0].title(),
        "InitiatingProcessId": rnd.randrange(100, 30000),
        "InitiatingProcessParentId": 1234,
        "InitiatingProcessParentFileName": "explorer.exe",
        "InitiatingProcessCreationTime": stamp(t - timedelta(hours=2)),
        "InitiatingProcessParentCreationTime": stamp(t - timedelta(days=1)),
        "InitiatingProcessSHA1": f"{rnd.getrandbits(160):040x}",
        "InitiatingProcessSHA256": f"{rnd.getrandbits(256):064x}",
        "InitiatingProcessMD5": f"{rnd.getrandbits(128):032x}",
        "InitiatingProcessFileSize": rnd.randrange(10**5, 10**7),
        "InitiatingProcessAccountDomain": "fabrikam",
        "InitiatingProcessAccountName": "d.okafor",
        "InitiatingProcessAccountSid": "S-1-5-21-375308137-164487297-2828222098-1107",
        "InitiatingProcessAccountUpn": "d.okafor@fabrikam.example",
        "InitiatingProcessAccountObjectId": "5a3c2f1e-9b8d-4c7a-a6e5-d4c3b2a19f80",
        "InitiatingProcessIntegrityLevel": "Medium",
        "InitiatingProcessTokenElevation": "None",
        "InitiatingProcessSessionId": 1,
        "IsInitiatingProcessRemoteSession": False,
        "InitiatingProcessUniqueId": str(rnd.getrandbits(52)),
        "AppGuardContainerId": "",
        "AdditionalFields": json.dumps(
            {
                "Source Mac": "00:1a:2b:3c:4d:5e",
                "Tcp Flags": 2,
                "Packet Size": rnd.randrange(60, 1500),
            }
        ),
        "ReportId": 10**6 + i,
        "MachineGroup": "EMEA Laptops",
    }
    return {
        "time": stamp(t + timedelta(seconds=40)),
        "tenantId": "7c0a9e51-3b1f-4d52-9a55-0b8f2d6a1e01",
        "operationName": "Publish",
        "category": "AdvancedHunting-DeviceNetworkEvents",
        "_TimeReceivedBySvc": stamp(t + timedelta(seconds=20)),
        "properties": props,
        "Tenant": "DefaultTenant",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--records", type=int, default=250_000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--match-rate", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    matches = 0
    with a.out.open("w") as fh:
        for start in range(0, a.records, a.per_message):
            recs = []
            for i in range(start, min(start + a.per_message, a.records)):
                x = rnd.random()
                kind = "match" if x < a.match_rate else "near" if x < 2 * a.match_rate else "noise"
                matches += kind == "match"
                rec = network(rnd, i, kind)
                if rnd.random() < 0.05:
                    rec["category"] = "AdvancedHunting-DeviceProcessEvents"
                    if kind == "match":
                        matches -= 1
                recs.append(rec)
            fh.write(json.dumps({"records": recs}) + "\n")
    print(f"{a.out}: {a.records} records, {matches} matching, {a.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
