#!/usr/bin/env python3
"""Writes samples/defender-mixed.jsonl: realistic Defender streaming-API messages, made up by us.

Deterministic: rerun it and the file does not change. What is in it (as of 2026-11-30T12:00Z):
- noise: browser and OS connections, other tables (DeviceProcessEvents, DeviceNetworkInfo);
- Splashtop: laptop lt-0042 talks to two relay URLs (3 events, one message delivered twice),
  server srv-db-07 to splashtop.eu once; old traffic (8 days ago) outside the 5-day lookback;
- look-alikes that must NOT match: notsplashtop.com, splashtop.community.org, company
  "SplashtopInc";
- one truncated (bad) line.
"""

from __future__ import annotations

import json
from pathlib import Path

TENANT = "7c0a9e51-3b1f-4d52-9a55-0b8f2d6a1e01"
LAPTOP = ("4f1e9b7c2a0d8e6f5b3c1a9d7e5f3b1c9a7d5e3f", "lt-0042.fabrikam.example")
SERVER = ("a3c9e1f7b5d3a1c9e7f5b3d1a9c7e5f3b1d9a7c5", "srv-db-07.fabrikam.example")


def rec(table: str, ts: str, props: dict, received: str | None = None) -> dict:
    r = {
        "time": received or ts[:19] + ".9876543Z",
        "tenantId": TENANT,
        "operationName": "Publish",
        "category": f"AdvancedHunting-{table}",
        "properties": {"Timestamp": ts, "MachineGroup": "EMEA Laptops", **props},
        "Tenant": "DefaultTenant",
    }
    return r


def net(dev, ts, rid, url, proc, company, ip="198.51.100.23", port=443, action="ConnectionSuccess"):
    return rec(
        "DeviceNetworkEvents",
        ts,
        {
            "DeviceId": dev[0],
            "DeviceName": dev[1],
            "ReportId": rid,
            "ActionType": action,
            "RemoteIP": ip,
            "RemotePort": port,
            "RemoteUrl": url,
            "LocalIP": "10.20.30.40",
            "LocalPort": 61234,
            "Protocol": "TcpV4",
            "LocalIPType": "Private",
            "RemoteIPType": "Public",
            "InitiatingProcessFileName": proc,
            "InitiatingProcessFolderPath": f"c:\\program files\\{proc.lower()}",
            "InitiatingProcessVersionInfoCompanyName": company,
            "InitiatingProcessCommandLine": f'"{proc}"',
            "InitiatingProcessAccountName": "system",
            "InitiatingProcessAccountUpn": None,
            "InitiatingProcessId": 9120,
            "InitiatingProcessUniqueId": "1688849860263936",
            "AdditionalFields": None,
        },
    )


SPLASH = "Splashtop Inc."
messages = [
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T08:01:12.4Z",
                900001,
                "www.bing.com",
                "msedge.exe",
                "Microsoft Corporation",
            ),
            rec(
                "DeviceProcessEvents",
                "2026-11-30T08:01:13Z",
                {
                    "DeviceId": LAPTOP[0],
                    "DeviceName": LAPTOP[1],
                    "ReportId": 900002,
                    "FileName": "SRService.exe",
                    "ProcessCommandLine": "SRService.exe",
                    "InitiatingProcessVersionInfoCompanyName": SPLASH,
                },
            ),
        ]
    },
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T09:15:02.1234567Z",
                355896,
                "st2-v3-dc.relay.splashtop.com",
                "SRService.exe",
                SPLASH,
            )
        ]
    },
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T09:15:40.5Z",
                355901,
                "st2-v3-dc.relay.splashtop.com",
                "SRService.exe",
                SPLASH,
            ),
            net(LAPTOP, "2026-11-30T09:16:00Z", 355903, "notsplashtop.com", "curl.exe", SPLASH),
        ]
    },
    # the same message again: at-least-once delivery must not double the counts
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T09:15:40.5Z",
                355901,
                "st2-v3-dc.relay.splashtop.com",
                "SRService.exe",
                SPLASH,
            ),
            net(LAPTOP, "2026-11-30T09:16:00Z", 355903, "notsplashtop.com", "curl.exe", SPLASH),
        ]
    },
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T10:02:00.25Z",
                356002,
                "https://api.splashtop.com/v1/x",
                "strwinclt.exe",
                SPLASH,
            )
        ]
    },
    {
        "records": [
            net(
                SERVER,
                "2026-11-29T22:47:31Z",
                71234,
                "relay-eu.splashtop.eu",
                "SRService.exe",
                SPLASH,
                ip="203.0.113.9",
            ),
            net(
                SERVER,
                "2026-11-29T22:48:00Z",
                71235,
                "splashtop.community.org",
                "SRService.exe",
                SPLASH,
                ip="203.0.113.10",
            ),
            net(
                SERVER,
                "2026-11-29T22:49:00Z",
                71236,
                "relay-eu.splashtop.eu",
                "SRService.exe",
                "SplashtopInc",
                ip="203.0.113.9",
            ),
        ]
    },
    # eight days ago: outside the 5-day lookback
    {
        "records": [
            net(
                SERVER,
                "2026-11-22T03:00:00Z",
                70001,
                "relay-eu.splashtop.eu",
                "SRService.exe",
                SPLASH,
                ip="203.0.113.9",
            )
        ]
    },
    {
        "records": [
            rec(
                "DeviceNetworkInfo",
                "2026-11-30T09:00:00.0000001Z",
                {
                    "DeviceId": LAPTOP[0],
                    "DeviceName": LAPTOP[1],
                    "ReportId": 88,
                    "NetworkAdapterName": "Ethernet 2",
                    "MacAddress": "00-1A-2B-3C-4D-5E",
                    "IPAddresses": '[{"IPAddress":"10.20.30.40","SubnetPrefix":24}]',
                },
            )
        ]
    },
    {
        "records": [
            net(
                SERVER,
                "2026-11-30T11:30:00Z",
                71300,
                None,
                "svchost.exe",
                "Microsoft Corporation",
                ip="-",
                port=0,
                action="ConnectionAttempt",
            )
        ]
    },
]
lines = [json.dumps(m) for m in messages]
bad = json.dumps(
    {
        "records": [
            net(
                LAPTOP,
                "2026-11-30T11:59:00Z",
                356100,
                "st2-v3-dc.relay.splashtop.com",
                "SRService.exe",
                SPLASH,
            )
        ]
    }
)
lines.insert(6, bad[: len(bad) // 2])  # a truncated message: dead-lettered, the rest flows
out = Path(__file__).resolve().parent.parent / "samples" / "defender-mixed.jsonl"
out.write_text("\n".join(lines) + "\n")
print(f"wrote {out} ({len(lines)} lines)")
