#!/usr/bin/env python3
"""Exclusions benchmark: matched events/s of `ExclusionSet.first_match`, as a ratio against a
naive evaluator measured in the same run.

    python loadtest/bench_exclusions.py [--events 100000] [--networks 2000] [--repeat 3]

Both evaluators read config/exclusions.example.yaml (and its list files) once, then judge the same
pre-decoded matched events (Event objects: what the pipeline hands to exclusions):
  compiled  stream.exclusions: CIDR sets merged into sorted integer ranges per IP version and
            searched with bisect (parsed addresses cached), set look-ups, cached ZoneInfo;
  naive     the same conditions written the obvious way: `ipaddress.ip_address(v)` per event and
            a loop over the `ipaddress.ip_network` objects, `ZoneInfo(name)` and list scans.
Two files: the example as shipped (a handful of networks) and the example with its helpdesk list
grown to --networks /24 networks (a large organisation's helpdesk ranges). The event mix is mostly
events that no exclusion removes (the worst case: every exclusion is tried). Read the ratios; each
figure is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.decode.events import Event  # noqa: E402
from stream.exclusions import load_exclusions  # noqa: E402
from stream.timeutil import parse_ticks  # noqa: E402

RULE = "7253fc17-ed4b-4c54-9612-7ad48274c294"
EXAMPLE = ROOT / "config" / "exclusions.example.yaml"
SAMPLES = ROOT / "samples" / "exclusions"
AS_OF = parse_ticks("2026-11-30T12:00:00Z")
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# -- the naive evaluator ------------------------------------------------------------------------


def _list(ops: dict[str, Any], op: str, base: Path) -> list[Any] | None:
    if op not in ops and op + "_file" not in ops:
        return None
    out = list(ops.get(op, []))
    if op + "_file" in ops:
        for line in (base / ops[op + "_file"]).read_text().splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


class Naive:
    def __init__(self, path: Path) -> None:
        data = yaml.safe_load(path.read_text())
        self.items = []
        for ex in data["exclusions"]:
            conds = []
            for column, ops in ex["when"].items():
                if column == "Timestamp":
                    conds.append((column, "time", ops))
                    continue
                for op in ("in", "cidr"):
                    vals = _list(ops, op, path.parent)
                    if vals is None:
                        continue
                    if op == "cidr":
                        vals = [ipaddress.ip_network(v) for v in vals]
                    conds.append((column, op, vals))
            self.items.append((ex["name"], conds))

    def first_match(self, rule_id: str, event: Event) -> str | None:
        for name, conds in self.items:
            if all(self._holds(c, event) for c in conds):
                return name
        return None

    @staticmethod
    def _holds(cond: tuple[str, str, Any], event: Event) -> bool:
        column, op, arg = cond
        v = event.props.get(column)
        if op == "in":
            if isinstance(v, int):
                return v in arg
            return (v or "").lower() in [str(a).lower() for a in arg]
        if op == "cidr":
            try:
                a = ipaddress.ip_address(v)
            except ValueError:
                return False
            if a.version == 6 and a.ipv4_mapped is not None:
                a = a.ipv4_mapped
            return any(a in n for n in arg)
        local = dt.datetime(1, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=event.ticks // 10)
        local = local.astimezone(ZoneInfo(arg.get("timezone", "UTC")))
        if "weekdays" in arg:
            days = set()
            for w in arg["weekdays"] if isinstance(arg["weekdays"], list) else [arg["weekdays"]]:
                a, _, b = w.partition("-")
                i = DAYS.index(a)
                days.add(i)
                while b and i != DAYS.index(b):
                    i = (i + 1) % 7
                    days.add(i)
            if local.weekday() not in days:
                return False
        if "between" in arg:
            s, e = (dt.time.fromisoformat(x) for x in arg["between"])
            t = local.time()
            return s <= t < e if s < e else (t >= s or t < e)
        return True


# -- data ---------------------------------------------------------------------------------------


def grown_example(folder: Path, networks: int) -> Path:
    """A copy of the example whose helpdesk list holds `networks` more /24 networks."""
    (folder / "config").mkdir()
    shutil.copy(EXAMPLE, folder / "config" / EXAMPLE.name)
    shutil.copytree(SAMPLES, folder / "samples" / "exclusions")
    rng = random.Random(7)
    lines = {f"10.{rng.randrange(64, 250)}.{rng.randrange(256)}.0/24" for _ in range(networks)}
    with open(folder / "samples" / "exclusions" / "helpdesk-ranges.txt", "a") as f:
        f.write("\n".join(sorted(lines)) + "\n")
    return folder / "config" / EXAMPLE.name


def events(n: int) -> list[Event]:
    rng = random.Random(42)
    out = []
    base = AS_OF - 5 * 86400 * 10**7
    for i in range(n):
        r = rng.random()
        p: dict[str, Any] = {
            "DeviceId": f"{rng.randrange(16**8):08x}",
            "DeviceName": f"pc-{rng.randrange(5000)}.contoso.example",
            "LocalIP": f"192.168.{rng.randrange(256)}.{rng.randrange(256)}",
            "RemoteIP": f"3.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "RemotePort": 443,
            "RemoteUrl": "st2-v3-dc.relay.splashtop.com",
            "InitiatingProcessFileName": "SRService.exe",
            "InitiatingProcessParentFileName": "services.exe",
            "InitiatingProcessVersionInfoCompanyName": "Splashtop Inc.",
            "InitiatingProcessAccountUpn": rng.choice(["alice@contoso.example", None, "x@y"]),
            "ReportId": i,
        }
        if r < 0.05:
            p["LocalIP"] = f"10.50.{rng.randrange(256)}.{rng.randrange(256)}"
        elif r < 0.08:
            p["LocalIP"] = f"::ffff:10.50.{rng.randrange(256)}.1"
        elif r < 0.10:
            p["LocalIP"] = rng.choice(["-", "", None, "fe80::1"])
        elif r < 0.12:
            p["InitiatingProcessFileName"] = "CcmExec.exe"
        elif r < 0.14:
            p["RemotePort"], p["RemoteIP"] = 22, f"192.0.2.{rng.randrange(256)}"
        ticks = base + rng.randrange(5 * 86400 * 10**7)
        out.append(Event(ticks, p, None, "DeviceNetworkEvents"))
    return out


def rate(fn: Any, evs: list[Event], repeat: int) -> tuple[float, list[str | None]]:
    best = float("inf")
    result: list[str | None] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = [fn(RULE, e) for e in evs]
        best = min(best, time.perf_counter() - t0)
    return len(evs) / best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--networks", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    evs = events(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        files = [
            ("example", EXAMPLE),
            (f"example+{args.networks} nets", grown_example(Path(tmp), args.networks)),
        ]
        print(f"{len(evs)} matched events, best of {args.repeat}")
        for label, path in files:
            compiled = load_exclusions(path, [RULE], now=AS_OF)
            naive = Naive(path)
            c_rate, c_res = rate(compiled.first_match, evs, args.repeat)
            n_rate, n_res = rate(naive.first_match, evs, args.repeat)
            assert c_res == n_res, "the two evaluators disagree"
            hits = sum(1 for r in c_res if r is not None)
            print(
                f"  {label:<22} compiled {c_rate:>10,.0f} events/s   naive {n_rate:>9,.0f} "
                f"events/s   ratio {c_rate / n_rate:5.1f}x   excluded {hits / len(evs):.1%}"
            )


if __name__ == "__main__":
    main()
